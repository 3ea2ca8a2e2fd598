"""App start-up figures, measured from the moment the process started:

  python scripts/startup_probe.py
  -> {"window_visible_s", "first_sentiment_result_s", "all_models_loaded_s", "rss_all_models_mb"}

The window is "visible" at its first paint; the first result is a sentiment request sent as soon as the window shows.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import psutil

START = psutil.Process().create_time()
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QObject, QEvent  # noqa: E402

from gui.app import make_app, wait_until  # noqa: E402
from gui.main_window import MainWindow  # noqa: E402


class FirstPaint(QObject):
    def __init__(self):
        super().__init__()
        self.at = None

    def eventFilter(self, obj, event):
        if event.type() == QEvent.Paint and self.at is None:
            self.at = time.time()
        return False


def main() -> int:
    app = make_app()
    window = MainWindow()
    painted = FirstPaint()
    window.installEventFilter(painted)
    window.show()
    wait_until(lambda: painted.at is not None, 10000)
    window.sentiment.set_text("A wonderful, moving film.")
    window.sentiment.request_now()
    wait_until(lambda: window.sentiment.last_result is not None, 30000)
    first_result = time.time()
    wait_until(lambda: window.models_label.text().startswith("Models loaded: 6/6"), 120000)
    loaded = time.time()
    report = {
        "window_visible_s": round(painted.at - START, 2),
        "first_sentiment_result_s": round(first_result - START, 2),
        "all_models_loaded_s": round(loaded - START, 2),
        "rss_all_models_mb": round(psutil.Process().memory_info().rss / 1e6, 1),
    }
    window.close()
    del app
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
