"""Application start-up, the start-up probe and the offscreen screenshot renderer."""
from __future__ import annotations

import gc
import os
import sys
import time
from pathlib import Path

from PySide6.QtCore import QEvent, QEventLoop, QObject, Qt, QTimer
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from gui.style import STYLE_SHEET


def dark_palette() -> QPalette:
    p = QPalette()
    colors = {
        QPalette.Window: "#2b2d30", QPalette.WindowText: "#e6e6e6", QPalette.Base: "#1f2023",
        QPalette.AlternateBase: "#2b2d30", QPalette.Text: "#e6e6e6", QPalette.Button: "#3a3c40",
        QPalette.ButtonText: "#e6e6e6", QPalette.Highlight: "#3d7bd9", QPalette.HighlightedText: "#ffffff",
        QPalette.ToolTipBase: "#3a3c40", QPalette.ToolTipText: "#e6e6e6", QPalette.PlaceholderText: "#8a8d93",
        QPalette.Mid: "#55585e", QPalette.Light: "#4a4d52", QPalette.Dark: "#1a1b1e",
    }
    for role, color in colors.items():
        p.setColor(role, QColor(color))
    p.setColor(QPalette.Disabled, QPalette.ButtonText, QColor("#7a7d83"))
    p.setColor(QPalette.Disabled, QPalette.Text, QColor("#7a7d83"))
    return p


class MainThreadGarbageCollector(QObject):
    """Python's cyclic garbage collector runs in whichever thread happens to allocate, the engine thread included.
    A Qt object collected there cannot unregister its timers from the UI thread, which then fires them at freed
    memory (a segfault at the next tick). So automatic collection is off while the app runs, and this timer in the
    UI thread collects each generation once its count passes the usual threshold."""

    def __init__(self, parent: QObject, interval_ms: int = 500):
        super().__init__(parent)
        self.thresholds = gc.get_threshold()
        self.was_enabled = gc.isenabled()
        gc.disable()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.collect)
        self.timer.start(interval_ms)

    def collect(self) -> None:
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > self.thresholds[generation]:
                gc.collect(generation)
                return

    def stop(self) -> None:
        self.timer.stop()
        if self.was_enabled:
            gc.enable()


def make_app(argv=None, theme: str = "system") -> QApplication:
    """The application with Fusion style; `theme` is "light", "dark", or "system" (follow the desktop)."""
    app = QApplication.instance() or QApplication(argv or sys.argv[:1])
    app.setApplicationName("SqueezeBERT Desktop")
    app.setStyle("Fusion")
    if theme == "dark" or (theme == "system" and app.styleHints().colorScheme() == Qt.ColorScheme.Dark):
        app.setPalette(dark_palette())
    app.setStyleSheet(STYLE_SHEET)
    if app.findChild(MainThreadGarbageCollector) is None:
        MainThreadGarbageCollector(app)
    return app


def run_app() -> int:
    from gui.main_window import MainWindow

    app = make_app()
    window = MainWindow()
    window.show()
    return app.exec()


class FirstPaint(QObject):
    """Event filter noting when its widget is first painted."""

    def __init__(self):
        super().__init__()
        self.at: float | None = None

    def eventFilter(self, obj, event):
        if event.type() == QEvent.Paint and self.at is None:
            self.at = time.time()
        return False


def process_start_time() -> float:
    """When this process started (epoch seconds). On Linux psutil's create_time adds the start tick to the boot time
    from /proc/stat, which is whole seconds, so it can be up to 1 s early (0.95 s on one of our hosts); /proc/uptime
    gives the boot time to 10 ms."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return time.time() - uptime + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):  # not Linux: the platform's own creation time is precise
        import psutil

        return psutil.Process().create_time()


def startup_probe() -> dict:
    """Seconds from process start to the window's first paint and to the first sentiment result (sent as soon as
    the window shows), to all six models loaded, and resident memory then."""
    import psutil

    from gui.main_window import MainWindow

    started = process_start_time()
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
    wait_until(window.models_settled, 120000)
    loaded = time.time()
    report = {
        "window_visible_s": round(painted.at - started, 2) if painted.at else None,
        "first_sentiment_result_s": round(first_result - started, 2) if window.sentiment.last_result else None,
        "all_models_loaded_s": round(loaded - started, 2),
        "models_loaded": window.models_label.text(),
        "rss_mb": round(psutil.Process().memory_info().rss / 1e6, 1),
    }
    window.close()
    app.processEvents()
    return report


def wait_until(predicate, timeout_ms: int = 30000) -> bool:
    """Run the event loop until `predicate()` holds or the time is up (polled every 20 ms)."""
    loop = QEventLoop()
    poll = QTimer()
    poll.timeout.connect(lambda: predicate() and loop.quit())
    poll.start(20)
    deadline = QTimer()  # owned and stopped here: a singleShot would outlive `loop` and fire at it later
    deadline.setSingleShot(True)
    deadline.timeout.connect(loop.quit)
    deadline.start(timeout_ms)
    if not predicate():
        loop.exec()
    poll.stop()
    deadline.stop()
    return predicate()


def screenshot(tab: str, out: str, compare_model: str = "squeezebert", theme: str = "light") -> Path:
    """Render the window with `tab`'s first sample analysed and save it as a PNG."""
    from gui.main_window import MainWindow

    make_app(theme=theme)
    window = MainWindow()
    window.toggle.set_model(compare_model)
    window.show()
    widget = {"sentiment": window.sentiment, "entities": window.entities, "qa": window.qa, "compare": window.compare}[tab]
    window.tabs.setCurrentWidget(widget)
    widget.load_sample(0)
    widget.request_now()
    if tab == "compare":
        wait_until(lambda: len(widget.results) == 2 or "failed" in widget.timings["bert"].text())
    else:
        wait_until(lambda: widget.last_result is not None or widget.message.objectName() == "errorMessage")
    wait_until(lambda: False, 300)  # let the last layout and paint settle
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(path))
    window.close()
    return path
