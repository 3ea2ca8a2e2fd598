from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem

from gui.style import ALTERNATIVE_COLOR, ANSWER_COLOR
from gui.tabs.base import AnalysisTab
from gui.tabs.entities import highlight
from gui.tabs.sentiment import model_line


class QATab(AnalysisTab):
    task = "qa"
    title = "Q&&A"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.context = self.make_editor("Paste a passage. Then ask a question whose answer is in it.")
        self.question = QLineEdit()
        self.question.setPlaceholderText("Ask a question about the passage…")
        self.question.textChanged.connect(self.input_changed)
        self.question.returnPressed.connect(self.request_now)
        self.suggested = QComboBox()
        self.suggested.setToolTip("Suggested questions for this passage")
        self.suggested.activated.connect(self._suggestion_chosen)
        self.suggested.setVisible(False)
        ask = QHBoxLayout()
        ask.addWidget(QLabel("Question"))
        ask.addWidget(self.question, 1)
        ask.addWidget(self.suggested)
        self.answer = QLabel("")
        self.answer.setObjectName("resultHeadline")
        self.answer.setWordWrap(True)
        self.answer.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.detail = QLabel("")
        self.alternatives = QListWidget()
        self.alternatives.setMaximumHeight(120)
        self.alternatives.currentRowChanged.connect(self._alternative_selected)
        self.layout_.addWidget(self.context, 3)
        self.layout_.addLayout(ask)
        self.layout_.addWidget(self.message)
        self.layout_.addWidget(self.answer)
        self.layout_.addWidget(self.detail)
        self.layout_.addWidget(QLabel("Other candidates"))
        self.layout_.addWidget(self.alternatives)

    def inputs(self):
        return self.context.toPlainText(), self.question.text()

    def set_text(self, text: str) -> None:
        self.context.setPlainText(text)
        self.suggested.setVisible(False)

    def load_sample(self, index: int) -> None:
        sample = self.samples[index]
        self.context.setPlainText(sample["context"])
        self.suggested.clear()
        self.suggested.addItems(sample["questions"])
        self.suggested.setVisible(True)
        self.question.setText(sample["questions"][0])

    def _suggestion_chosen(self, index: int) -> None:
        self.question.setText(self.suggested.itemText(index))
        self.request_now()

    def clear_marks(self) -> None:
        self.context.setExtraSelections([])

    def render_result(self, result) -> None:
        context = self.context.toPlainText()
        if result.answer:
            self.answer.setText(f"“{result.answer}”")
        else:
            self.answer.setText("No answer found in this passage.")
        self.detail.setText(f"score {result.score:.2f} · " + model_line(result))
        self.alternatives.blockSignals(True)
        self.alternatives.clear()
        for alt in result.alternatives:
            item = QListWidgetItem(f"{alt.answer}    ({alt.score:.2f})")
            self.alternatives.addItem(item)
        self.alternatives.blockSignals(False)
        self._mark(context, None)

    def _mark(self, context: str, alternative) -> None:
        r = self.last_result
        if r is None or context[r.start : r.end] != r.answer:
            return
        spans = [(r.start, r.end, ANSWER_COLOR)] if r.answer else []
        if alternative is not None:
            spans.append((alternative.start, alternative.end, ALTERNATIVE_COLOR))
        highlight(self.context, spans, context)

    def _alternative_selected(self, row: int) -> None:
        if self.last_result is not None and 0 <= row < len(self.last_result.alternatives):
            self._mark(self.context.toPlainText(), self.last_result.alternatives[row])
