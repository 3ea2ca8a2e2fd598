"""Largest gap between UI timer ticks while long requests run on the engine thread, in a fresh app process.

  python scripts/stall_probe.py [--requests 6] [--json]

A 5 ms QTimer ticks on the UI thread while the window analyses long texts (sentiment and entities, ~20k
characters each, both models); any gap well above 5 ms is time the window could not respond.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QElapsedTimer, Qt, QTimer  # noqa: E402

from gui.app import make_app, wait_until  # noqa: E402
from gui.main_window import MainWindow  # noqa: E402

TEXT = "The tower in Paris was built by Gustave Eiffel's company for the World's Fair of 1889. " * 230


def probe(n_requests: int) -> dict:
    make_app()
    window = MainWindow()
    window.show()
    wait_until(lambda: window.models_label.text().startswith("Models loaded: 6/6"), 120000)
    gc.collect()
    gaps: list[int] = []
    clock = QElapsedTimer()
    clock.start()
    last = [clock.elapsed()]

    def tick():
        now = clock.elapsed()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setTimerType(Qt.PreciseTimer)
    timer.timeout.connect(tick)
    timer.start(5)
    for i in range(n_requests):
        tab = (window.sentiment, window.entities)[i % 2]
        window.toggle.set_model(("squeezebert", "bert")[(i // 2) % 2])
        tab.set_text(TEXT + str(i))
        tab.last_result = None
        tab.request_now()
        wait_until(lambda: tab.last_result is not None, 120000)
    timer.stop()
    window.close()
    ordered = sorted(gaps[2:])
    return {"ticks": len(gaps), "max_gap_ms": ordered[-1], "p99_gap_ms": ordered[int(0.99 * (len(ordered) - 1))],
            "requests": n_requests}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=6)
    args = parser.parse_args()
    print(json.dumps(probe(args.requests)))
