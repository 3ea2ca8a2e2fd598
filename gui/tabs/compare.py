"""One input through SqueezeBERT and BERT: both answers side by side, both latencies, and the speedup."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QGridLayout, QHBoxLayout, QLabel, QLineEdit

from engine.samples import load_samples
from gui.style import ENTITY_NAMES, MODEL_COLORS, MODEL_LABELS, MODEL_NAMES
from gui.tabs.base import AnalysisTab
from gui.units import ms

TASK_TITLES = {"sentiment": "Sentiment", "entities": "Entities", "qa": "Q&A"}


def describe(result) -> str:
    """A short rich-text rendering of any task's result."""
    if result.task == "sentiment":
        return f"<span style='font-size:16pt; font-weight:600'>{result.label.capitalize()}</span> {100 * result.score:.1f}%"
    if result.task == "entities":
        if not result.entities:
            return "No entities found."
        return "<br>".join(f"<b>{e.word}</b> · {ENTITY_NAMES.get(e.entity_group, e.entity_group)} {e.score:.2f}" for e in result.entities[:12])
    return f"<span style='font-size:14pt; font-weight:600'>“{result.answer}”</span> score {result.score:.2f}" if result.answer else "No answer found."


def speedup_text(squeeze_ms: float, bert_ms: float) -> str:
    if squeeze_ms <= 0 or bert_ms <= 0:
        return ""
    ratio = bert_ms / squeeze_ms
    if ratio >= 1:
        return f"SqueezeBERT {ratio:.1f}x faster  ({ms(squeeze_ms)} ms vs {ms(bert_ms)} ms)"
    return f"SqueezeBERT {1 / ratio:.1f}x slower  ({ms(squeeze_ms)} ms vs {ms(bert_ms)} ms)"


class CompareTab(AnalysisTab):
    task = "compare"
    title = "Compare"
    REPEAT = 5  # each model's time is the median of this many runs of the same input

    def __init__(self, parent=None):
        super().__init__(parent)
        self.samples = [dict(s, task=t) for t in ("sentiment", "entities", "qa") for s in load_samples(t)]
        self.sample_box.clear()
        self.sample_box.addItem("Samples…")
        for s in self.samples:
            self.sample_box.addItem(f"{TASK_TITLES[s['task']]}: {s['title']}")
        self.task_box = QComboBox()
        for task, title in TASK_TITLES.items():
            self.task_box.addItem(title, task)
        self.task_box.currentIndexChanged.connect(self._task_changed)
        self.editor = self.make_editor("One input, both models.")
        self.question = QLineEdit()
        self.question.setPlaceholderText("Question (Q&A only)")
        self.question.textChanged.connect(self.input_changed)
        self.question.returnPressed.connect(self.request_now)
        row = QHBoxLayout()
        row.addWidget(QLabel("Task"))
        row.addWidget(self.task_box)
        row.addWidget(self.question, 1)
        row.addStretch(0)
        self.speedup = QLabel("")
        self.speedup.setObjectName("speedup")
        self.speedup.setWordWrap(True)
        self.speedup.setAlignment(Qt.AlignCenter)
        grid = QGridLayout()
        self.panes, self.timings = {}, {}
        for col, model in enumerate(MODEL_NAMES):
            title = QLabel(f"<b style='color:{MODEL_COLORS[model]}; font-size:13pt'>{MODEL_LABELS[model]}</b>")
            timing = QLabel("—")
            pane = QLabel("")
            pane.setWordWrap(True)
            pane.setAlignment(Qt.AlignTop | Qt.AlignLeft)
            pane.setTextInteractionFlags(Qt.TextSelectableByMouse)
            pane.setMinimumHeight(120)
            grid.addWidget(title, 0, col)
            grid.addWidget(timing, 1, col)
            grid.addWidget(pane, 2, col)
            self.panes[model], self.timings[model] = pane, timing
        grid.setRowStretch(2, 1)  # the outputs take the spare height; title and timing stay together above them
        self.layout_.addLayout(row)
        self.layout_.addWidget(self.editor, 2)
        self.layout_.addWidget(self.message)
        self.layout_.addWidget(self.speedup)
        self.layout_.addLayout(grid, 2)
        self.results: dict[str, object] = {}
        self._task_changed()

    @property
    def current_task(self) -> str:
        return self.task_box.currentData()

    def _task_changed(self, *_):
        self.question.setVisible(self.current_task == "qa")
        self.input_changed()

    def inputs(self):
        return self.editor.toPlainText(), self.question.text()

    def set_text(self, text: str) -> None:
        self.editor.setPlainText(text)

    def load_sample(self, index: int) -> None:
        sample = self.samples[index]
        self.task_box.setCurrentIndex(list(TASK_TITLES).index(sample["task"]))
        self.editor.setPlainText(sample.get("text") or sample["context"])
        if sample["task"] == "qa":
            self.question.setText(sample["questions"][0])

    def begin(self) -> None:
        """A new comparison: forget the previous pair so the speedup is only ever computed from one input."""
        self.results = {}
        self.speedup.setText("")
        for model in MODEL_NAMES:
            self.timings[model].setText("running…")

    def show_model_result(self, model: str, result) -> None:
        self.results[model] = result
        self.last_result = None
        self.copy_button.setEnabled(True)
        self.clear_message()
        t = result.timing
        self.timings[model].setText(
            f"<b>{ms(t.total_ms)} ms</b> (tokenize {ms(t.tokenize_ms)} · model {ms(t.inference_ms)} · "
            f"post {ms(t.postprocess_ms)}) · {result.model.precision}"
        )
        self.panes[model].setText(describe(result))
        if all(m in self.results for m in MODEL_NAMES):
            self.speedup.setText(
                speedup_text(self.results["squeezebert"].timing.total_ms, self.results["bert"].timing.total_ms)
                + f"<br><span style='font-size:10pt; font-weight:400'>median of {self.REPEAT} runs each, same input, same thread</span>"
            )

    def show_model_error(self, model: str, text: str) -> None:
        self.timings[model].setText("failed")
        self.panes[model].setText(f"<span style='color:#c62828'>{text}</span>")

    def result_json(self) -> str:
        import json

        return json.dumps({m: r.to_dict() for m, r in self.results.items()}, ensure_ascii=False, indent=2)

    def copy_json(self) -> None:
        from PySide6.QtGui import QGuiApplication

        if self.results:
            QGuiApplication.clipboard().setText(self.result_json())
