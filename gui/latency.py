"""Latency history per model, the readout beside the model toggle, and a small chart of recent requests."""
from __future__ import annotations

from collections import deque

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QGridLayout, QLabel, QSizePolicy, QWidget

from gui.style import MODEL_COLORS, MODEL_NAMES
from gui.units import ms


def percentile(values, q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil
    return float(ordered[int(rank) - 1])


class LatencyHistory:
    """The last `size` total latencies (ms) for each model."""

    def __init__(self, size: int = 50):
        self.size = size
        self._totals: dict[str, deque] = {}

    def add(self, model: str, total_ms: float) -> None:
        self._totals.setdefault(model, deque(maxlen=self.size)).append(float(total_ms))

    def values(self, model: str) -> list[float]:
        return list(self._totals.get(model, ()))

    def p50(self, model: str) -> float | None:
        v = self.values(model)
        return percentile(v, 50) if v else None

    def p95(self, model: str) -> float | None:
        v = self.values(model)
        return percentile(v, 95) if v else None


class LatencyChart(QWidget):
    """Recent total latency of each model as a line, newest on the right, on a shared scale."""

    def __init__(self, history: LatencyHistory, parent=None):
        super().__init__(parent)
        self.history = history
        self.setMinimumSize(220, 64)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.setToolTip("Total latency of recent requests (ms): SqueezeBERT and BERT")

    def paintEvent(self, event):
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        rect = self.rect().adjusted(4, 14, -4, -4)
        palette = self.palette()
        painter.fillRect(self.rect(), palette.base())
        painter.setPen(QPen(palette.mid().color(), 1))
        painter.drawRect(self.rect().adjusted(0, 0, -1, -1))
        series = {m: self.history.values(m) for m in MODEL_NAMES}
        peak = max((max(v) for v in series.values() if v), default=0.0)
        painter.setPen(palette.text().color())
        font = painter.font()
        font.setPointSizeF(max(font.pointSizeF() - 2, 7))
        painter.setFont(font)
        if peak <= 0:
            painter.drawText(rect, Qt.AlignCenter, "latency history")
            return
        painter.drawText(self.rect().adjusted(6, 1, -6, 0), Qt.AlignTop | Qt.AlignRight, f"max {peak:.0f} ms")
        n = self.history.size
        for model, values in series.items():
            if not values:
                continue
            path = QPainterPath()
            for i, v in enumerate(values):
                x = rect.left() + rect.width() * (n - len(values) + i) / max(n - 1, 1)
                y = rect.bottom() - rect.height() * v / peak
                path.moveTo(QPointF(x, y)) if i == 0 else path.lineTo(QPointF(x, y))
            painter.setPen(QPen(QColor(MODEL_COLORS[model]), 2))
            painter.drawPath(path)
            if len(values) == 1:
                painter.drawEllipse(path.currentPosition(), 2, 2)


class LatencyReadout(QWidget):
    """Last request: total and its split, tokens; running p50/p95 for the active model; the active model's card."""

    def __init__(self, history: LatencyHistory, parent=None):
        super().__init__(parent)
        self.history = history
        self.total = QLabel("— ms")
        self.total.setObjectName("latencyTotal")
        self.split = QLabel("tokenize — · model — · post — ")
        self.stats = QLabel("p50 — · p95 — · — tokens")
        self.card = QLabel("")
        self.card.setObjectName("modelCard")
        self.card.setTextFormat(Qt.RichText)
        for label in (self.split, self.stats, self.card):
            label.setObjectName(label.objectName() or "readoutDetail")
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setHorizontalSpacing(14)
        layout.setVerticalSpacing(0)
        layout.addWidget(self.total, 0, 0, 2, 1)
        layout.addWidget(self.split, 0, 1)
        layout.addWidget(self.stats, 1, 1)
        layout.addWidget(self.card, 0, 2, 2, 1)

    def show_timing(self, model: str, timing) -> None:
        self.total.setText(f"{ms(timing.total_ms)} ms")
        self.split.setText(
            f"tokenize {ms(timing.tokenize_ms)} · model {ms(timing.inference_ms)} · "
            f"post {ms(timing.postprocess_ms)} ms"
        )
        self.show_stats(model, timing.n_tokens)

    def show_stats(self, model: str, n_tokens: int | None = None) -> None:
        p50, p95 = self.history.p50(model), self.history.p95(model)
        tokens = f" · {n_tokens} tokens" if n_tokens is not None else ""
        if p50 is None:
            self.stats.setText(f"p50 — · p95 —{tokens}")
        else:
            n = len(self.history.values(model))
            self.stats.setText(f"p50 {ms(p50)} · p95 {ms(p95)} ms (last {n}){tokens}")

    def show_model(self, summary) -> None:
        if summary is None:
            self.card.setText("")
            return
        score = format_score(summary.task, summary.scores)
        self.card.setText(
            f"<b style='color:{MODEL_COLORS[summary.architecture]}'>{summary.display_name}</b> "
            f"{summary.precision} · {summary.parameters / 1e6:.1f} M params · {summary.size_mb:.0f} MB"
            + (f"<br>{score}" if score else "")
        )


SCORE_NAMES = {"sentiment": ("accuracy", "SST-2 accuracy"), "entities": ("f1", "CoNLL F1"), "qa": ("f1", "SQuAD F1")}


def format_score(task: str, scores: dict) -> str:
    """The manifest's validation score for display, e.g. 'SST-2 accuracy 90.1 (validation, int8)'."""
    key, name = SCORE_NAMES[task]
    value = (scores.get("validation_int8") or {}).get(key)
    return f"{name} {value:.1f} (validation, int8)" if value is not None else ""
