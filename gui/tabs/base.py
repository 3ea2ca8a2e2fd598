"""What every analysis tab shares: samples, open/drop a .txt, Ctrl+Enter, live analysis after a pause, copy JSON,
and one place for busy and error messages."""
from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.samples import load_samples

DEBOUNCE_MS = 450
MAX_FILE_BYTES = 5_000_000


def read_text_file(path: str) -> str:
    """A text file as str, undecodable bytes replaced; raises OSError/ValueError with a readable message."""
    p = Path(path)
    if p.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"{p.name} is larger than {MAX_FILE_BYTES // 1_000_000} MB")
    return p.read_bytes().decode("utf-8", errors="replace")


class AnalysisTab(QWidget):
    analysis_requested = Signal()  # the tab's inputs changed or the user asked: the window builds the request

    task = ""
    title = ""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.samples = load_samples(self.task)
        self.last_result = None
        self.sample_box = QComboBox()
        self.sample_box.addItem("Samples…")
        for s in self.samples:
            self.sample_box.addItem(s["title"])
        self.sample_box.activated.connect(self._sample_chosen)
        self.open_button = QPushButton("Open .txt…")
        self.open_button.clicked.connect(self._open_file)
        self.analyse_button = QPushButton("Analyse  (Ctrl+Enter)")
        self.analyse_button.setDefault(True)
        self.analyse_button.clicked.connect(self.request_now)
        self.copy_button = QPushButton("Copy JSON")
        self.copy_button.setEnabled(False)
        self.copy_button.clicked.connect(self.copy_json)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextSelectableByMouse)

        toolbar = QHBoxLayout()
        toolbar.addWidget(self.sample_box)
        toolbar.addWidget(self.open_button)
        toolbar.addStretch(1)
        toolbar.addWidget(self.copy_button)
        toolbar.addWidget(self.analyse_button)
        self.layout_ = QVBoxLayout(self)
        self.layout_.addLayout(toolbar)

        self.debounce = QTimer(self)
        self.debounce.setSingleShot(True)
        self.debounce.setInterval(DEBOUNCE_MS)
        self.debounce.timeout.connect(self.analysis_requested)
        for keys in ("Ctrl+Return", "Ctrl+Enter"):
            QShortcut(QKeySequence(keys), self, activated=self.request_now)
        self.setAcceptDrops(True)

    def make_editor(self, placeholder: str) -> QPlainTextEdit:
        """A text box that triggers live analysis when edited."""
        editor = QPlainTextEdit()
        editor.setPlaceholderText(placeholder)
        editor.textChanged.connect(self.input_changed)
        return editor

    # ---- inputs
    def inputs(self) -> tuple[str, str]:
        """(text or context, question)."""
        raise NotImplementedError

    def set_text(self, text: str) -> None:
        raise NotImplementedError

    def has_input(self) -> bool:
        return any(part.strip() for part in self.inputs())

    def load_sample(self, index: int) -> None:
        raise NotImplementedError

    def _sample_chosen(self, combo_index: int) -> None:
        if combo_index > 0:
            self.load_sample(combo_index - 1)
            self.request_now()

    def input_changed(self) -> None:
        self.clear_marks()
        self.debounce.start()

    def request_now(self) -> None:
        self.debounce.stop()
        self.analysis_requested.emit()

    # ---- files
    def _open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a text file", "", "Text files (*.txt);;All files (*)")
        if path:
            self.load_file(path)

    def load_file(self, path: str) -> None:
        try:
            text = read_text_file(path)
        except (OSError, ValueError) as exc:
            self.show_error(f"Could not open {Path(path).name}: {getattr(exc, 'strerror', None) or exc}")
            return
        self.set_text(text)
        self.request_now()

    def dragEnterEvent(self, event):
        if event.mimeData().hasUrls() or event.mimeData().hasText():
            event.acceptProposedAction()

    def dropEvent(self, event):
        mime = event.mimeData()
        files = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
        if files:
            self.load_file(files[0])
        elif mime.hasText():
            self.set_text(mime.text())
            self.request_now()
        event.acceptProposedAction()

    # ---- results
    def show_busy(self, model_label: str) -> None:
        self.message.setObjectName("busyMessage")
        self.message.setStyleSheet("")
        self.message.setText(f"Analysing with {model_label}…")

    def show_error(self, text: str) -> None:
        self.message.setObjectName("errorMessage")
        self.message.setStyleSheet("color: #c62828; font-weight: 600;")
        self.message.setText(text)

    def clear_message(self) -> None:
        self.message.setText("")

    def show_result(self, result) -> None:
        self.last_result = result
        self.copy_button.setEnabled(True)
        self.clear_message()
        self.render_result(result)

    def render_result(self, result) -> None:
        raise NotImplementedError

    def clear_marks(self) -> None:
        """Forget highlights that point into text the user has since changed."""

    def result_json(self) -> str:
        return json.dumps(self.last_result.to_dict(), ensure_ascii=False, indent=2) if self.last_result else ""

    def copy_json(self) -> None:
        if self.last_result is not None:
            QGuiApplication.clipboard().setText(self.result_json())


class SingleTextTab(AnalysisTab):
    """A tab whose whole input is one text box, `self.editor`; samples are {title, text}."""

    editor: QPlainTextEdit

    def inputs(self):
        return self.editor.toPlainText(), ""

    def set_text(self, text: str) -> None:
        self.editor.setPlainText(text)

    def load_sample(self, index: int) -> None:
        self.set_text(self.samples[index]["text"])
