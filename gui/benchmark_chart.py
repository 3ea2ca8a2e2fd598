"""Latency against sequence length for every benchmark contender, drawn with Qt into a PNG (no plotting library)."""
from __future__ import annotations

import math
import os

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QApplication

from gui.style import MODEL_COLORS, MODEL_LABELS

STYLES = {("int8", "onnxruntime"): Qt.SolidLine, ("fp32", "onnxruntime"): Qt.DashLine, ("fp32", "transformers"): Qt.DotLine}


def nice_axis(largest: float, max_ticks: int = 6) -> tuple[float, float]:
    """(top, step) of a y axis from 0 that holds `largest`, in round steps (1, 2, 2.5 or 5 times a power of ten)."""
    magnitude = 10 ** math.floor(math.log10(largest / max_ticks))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if largest / (m * magnitude) <= max_ticks)
    return step * math.ceil(largest / step), step


def save_chart(report: dict, path: str, width: int = 980, height: int = 520) -> None:
    if QApplication.instance() is None:  # fonts need a Qt application; a headless run has no display
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        QApplication([])
    image = QImage(width, height, QImage.Format_ARGB32)
    image.fill(QColor("white"))
    p = QPainter(image)
    p.setRenderHint(QPainter.Antialiasing)
    plot = QRectF(70, 50, width - 390, height - 110)  # the right 320 px hold the legend
    series: dict[tuple, list] = {}
    for r in report["results"]:
        series.setdefault((r["model"], r["precision"], r["runtime"]), []).append((r["seq_len"], r["p50_ms"]))
    seqs = sorted({s for points in series.values() for s, _ in points})
    top, step = nice_axis(max(ms for points in series.values() for _, ms in points) * 1.05)
    p.setFont(QFont("DejaVu Sans", 11, QFont.Bold))
    p.drawText(QRectF(0, 4, width, 22), Qt.AlignCenter,
               f"{report['task']} ({report['encoder']} encoder size): p50 latency, batch 1, {report['threads']} threads")
    p.setFont(QFont("DejaVu Sans", 9))
    p.drawText(QRectF(0, 26, width, 18), Qt.AlignCenter, report["cpu"])  # its own line: a long CPU name fits
    p.setPen(QPen(QColor("#888"), 1))
    p.drawRect(plot)
    for k in range(round(top / step) + 1):
        y = plot.bottom() - plot.height() * k * step / top
        p.setPen(QPen(QColor("#e5e5e5"), 1))
        p.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
        p.setPen(QColor("#333"))
        p.drawText(QRectF(0, y - 8, 62, 16), Qt.AlignRight | Qt.AlignVCenter, f"{k * step:g}")

    def x_of(seq):
        return plot.left() + plot.width() * (seqs.index(seq) / max(len(seqs) - 1, 1))

    for seq in seqs:
        p.drawText(QRectF(x_of(seq) - 30, plot.bottom() + 6, 60, 16), Qt.AlignCenter, str(seq))
    p.drawText(QRectF(plot.left(), plot.bottom() + 24, plot.width(), 16), Qt.AlignCenter, "sequence length (tokens)")
    p.save()
    p.translate(14, plot.center().y())
    p.rotate(-90)
    p.drawText(QRectF(-60, -10, 120, 20), Qt.AlignCenter, "ms")
    p.restore()
    legend_y = plot.top()
    for (model, precision, runtime), points in sorted(series.items()):
        pen = QPen(QColor(MODEL_COLORS[model]), 2.5, STYLES[(precision, runtime)])
        p.setPen(pen)
        curve = QPainterPath()
        for i, (seq, ms) in enumerate(sorted(points)):
            pt = QPointF(x_of(seq), plot.bottom() - plot.height() * ms / top)
            curve.moveTo(pt) if i == 0 else curve.lineTo(pt)
            p.drawEllipse(pt, 3, 3)
        p.drawPath(curve)
        p.drawLine(QPointF(plot.right() + 20, legend_y + 8), QPointF(plot.right() + 60, legend_y + 8))
        p.setPen(QColor("#222"))
        p.drawText(QPointF(plot.right() + 68, legend_y + 12), f"{MODEL_LABELS[model]} {precision} ({runtime})")
        legend_y += 24
    p.end()
    if not image.save(str(path)):
        raise OSError(f"cannot write the chart to {path}")
