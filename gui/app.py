"""Application start-up and the offscreen screenshot renderer."""
from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QEventLoop, Qt, QTimer
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


def make_app(argv=None, theme: str = "system") -> QApplication:
    """The application with Fusion style; `theme` is "light", "dark", or "system" (follow the desktop)."""
    app = QApplication.instance() or QApplication(argv or sys.argv[:1])
    app.setApplicationName("SqueezeBERT Desktop")
    app.setStyle("Fusion")
    if theme == "dark" or (theme == "system" and app.styleHints().colorScheme() == Qt.ColorScheme.Dark):
        app.setPalette(dark_palette())
    app.setStyleSheet(STYLE_SHEET)
    return app


def run_app() -> int:
    from gui.main_window import MainWindow

    app = make_app()
    window = MainWindow()
    window.show()
    return app.exec()


def wait_until(predicate, timeout_ms: int = 30000) -> bool:
    """Run the event loop until `predicate()` holds or the time is up (polled every 20 ms)."""
    loop = QEventLoop()
    poll = QTimer()
    poll.timeout.connect(lambda: predicate() and loop.quit())
    poll.start(20)
    QTimer.singleShot(timeout_ms, loop.quit)
    if not predicate():
        loop.exec()
    poll.stop()
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
