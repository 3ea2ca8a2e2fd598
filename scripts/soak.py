"""Soak test: many consecutive requests through the engine worker thread, watching resident memory.

  python scripts/soak.py --requests 10000 [--json]

Requests cycle through the three tasks and both models with texts of varied length and script. Memory is sampled
after a warm-up (the first 5% of requests, when sessions and arenas settle) and at the end; the growth between the
two is what a long session would leak.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import psutil  # noqa: E402
from PySide6.QtCore import QCoreApplication, QEventLoop, QObject, QTimer, Slot  # noqa: E402

from gui.worker import EngineThread, Request  # noqa: E402

TEXTS = [
    "A wonderful film.",
    "Angela Merkel met Emmanuel Macron in Paris to discuss the European Union budget.",
    "The plot is thin, the pacing slow, and yet the final scene is breathtaking. " * 8,
    "مرحبا بالعالم — 東京 and Zürich, naïve café 😀 " * 5,
    "The Eiffel Tower was completed in 1889 for the World's Fair held in Paris. " * 30,
]


class Answers(QObject):
    """Counts the worker's answers in this (the main) thread. Its slots are a QObject's, so Qt queues each answer
    to this thread's event loop: a plain function would run in the worker's thread, and an answer that came before
    loop.exec() started would quit nothing, leaving the loop to wait out its guard timer."""

    def __init__(self, loop: QEventLoop):
        super().__init__()
        self.loop, self.n, self.errors = loop, 0, 0

    @Slot(object, object)
    def finished(self, request, result):
        self.n += 1
        self.loop.quit()

    @Slot(object, str)
    def failed(self, request, message):
        self.n += 1
        self.errors += 1
        print(f"request {request.id} failed: {message}", file=sys.stderr)
        self.loop.quit()


def soak(n_requests: int, seed: int = 0) -> dict:
    app = QCoreApplication.instance() or QCoreApplication([])
    engine = EngineThread()
    rng = random.Random(seed)
    process = psutil.Process()
    loop = QEventLoop()
    done = Answers(loop)
    timeout = QTimer()  # one guard timer, restarted per request (a new single-shot each time would pile up)
    timeout.setSingleShot(True)
    timeout.timeout.connect(loop.quit)
    engine.worker.finished.connect(done.finished)
    engine.worker.failed.connect(done.failed)
    warmup = max(1, n_requests // 20)
    samples = []
    started = time.time()
    baseline = None
    for i in range(n_requests):
        task = ("sentiment", "entities", "qa")[i % 3]
        model = ("squeezebert", "bert")[(i // 3) % 2]
        text = rng.choice(TEXTS)
        engine.worker.submit(Request(f"soak-{i % 2}", task, model, text, "Where is the tower?" if task == "qa" else ""))
        timeout.start(30000)
        loop.exec()
        timeout.stop()
        if i + 1 == warmup:
            baseline = process.memory_info().rss
        if (i + 1) % max(1, n_requests // 20) == 0:
            samples.append({"requests": i + 1, "rss_mb": round(process.memory_info().rss / 1e6, 1)})
    final = process.memory_info().rss
    engine.shutdown()
    del app
    return {
        "requests": n_requests, "completed": done.n, "errors": done.errors,
        "seconds": round(time.time() - started, 1),
        "rss_after_warmup_mb": round(baseline / 1e6, 1), "rss_final_mb": round(final / 1e6, 1),
        "growth_percent": round(100 * (final - baseline) / baseline, 2), "samples": samples,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = soak(args.requests)
    if not args.json:
        for s in report["samples"]:
            print(f"{s['requests']:6d} requests: {s['rss_mb']} MB")
    print(json.dumps({k: v for k, v in report.items() if k != "samples" or args.json}))
    return 0 if report["errors"] == 0 and report["completed"] == report["requests"] else 1


if __name__ == "__main__":
    sys.exit(main())
