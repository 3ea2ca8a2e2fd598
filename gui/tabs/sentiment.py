from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QLabel, QProgressBar

from gui.style import MODEL_LABELS
from gui.tabs.base import SingleTextTab
from gui.units import ms


def model_line(result) -> str:
    name = MODEL_LABELS.get(result.model.architecture, result.model.architecture)
    return f"{name} {result.model.precision} · {ms(result.timing.total_ms)} ms · {result.timing.n_tokens} tokens"


class SentimentTab(SingleTextTab):
    task = "sentiment"
    title = "Sentiment"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.editor = self.make_editor("Type or paste a review, a message, a paragraph…")
        self.headline = QLabel("")
        self.headline.setObjectName("resultHeadline")
        self.detail = QLabel("")
        self.bars = {}
        grid = QGridLayout()
        for row, label in enumerate(("positive", "negative")):
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setTextVisible(True)
            bar.setFormat("")
            bar.setAlignment(Qt.AlignCenter)
            bar.setFixedHeight(26)
            bar.setStyleSheet(
                "QProgressBar { border: 1px solid palette(mid); border-radius: 4px; text-align: center; }"
                "QProgressBar::chunk { background: %s; border-radius: 3px; }" % ("#2e9e6a" if label == "positive" else "#c65353")
            )
            grid.addWidget(QLabel(label.capitalize()), row, 0)
            grid.addWidget(bar, row, 1)
            self.bars[label] = bar
        self.layout_.addWidget(self.editor, 2)
        self.layout_.addWidget(self.message)
        self.layout_.addWidget(self.headline)
        self.layout_.addLayout(grid)
        self.layout_.addWidget(self.detail)
        self.layout_.addStretch(1)

    def render_result(self, result) -> None:
        self.headline.setText(f"{result.label.capitalize()}  {100 * result.score:.1f}%")
        color = "#2e9e6a" if result.label == "positive" else "#c65353"
        self.headline.setStyleSheet(f"color: {color};")
        for label, bar in self.bars.items():
            p = result.scores.get(label, 0.0)
            bar.setValue(int(round(1000 * p)))
            bar.setFormat(f"{100 * p:.1f}%")
        windows = f" · {result.n_windows} windows, logits averaged" if result.n_windows > 1 else ""
        self.detail.setText(model_line(result) + windows)
