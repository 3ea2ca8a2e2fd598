"""Whole files through one model: pick files, task, model and column, run with progress, cancel at any time."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.batch import count_rows
from gui.style import MODEL_LABELS, MODEL_NAMES
from gui.tabs.compare import TASK_TITLES
from gui.worker import BatchJob


def columns_of(path: str) -> list[str]:
    """Column names of a .csv header or the keys of a .jsonl file's first object ([] for .txt or unreadable)."""
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            if path.lower().endswith(".csv"):
                return next(csv.reader(f), [])
            if path.lower().endswith(".jsonl"):
                first = json.loads(f.readline() or "{}")
                return [k for k, v in first.items() if isinstance(v, str)] if isinstance(first, dict) else []
    except (OSError, ValueError):
        pass
    return []


class BatchTab(QWidget):
    run_requested = Signal(object)  # BatchJob
    cancel_requested = Signal()

    title = "Batch"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.job: BatchJob | None = None
        self.total: int | None = None
        self.files = QListWidget()
        self.files.setMaximumHeight(110)
        add = QPushButton("Add files…")
        add.clicked.connect(self._add_files)
        clear = QPushButton("Clear")
        clear.clicked.connect(self._clear)
        self.task = QComboBox()
        for task, title in TASK_TITLES.items():
            self.task.addItem(title, task)
        self.task.currentIndexChanged.connect(self._refresh)
        self.model = QComboBox()
        for model in MODEL_NAMES:
            self.model.addItem(MODEL_LABELS[model], model)
        self.column = QComboBox()
        self.column.setEditable(True)
        self.question_column = QComboBox()
        self.question_column.setEditable(True)
        self.output = QLineEdit()
        self.output.setPlaceholderText("results.csv, results.jsonl or results.json")
        choose = QPushButton("Save to…")
        choose.clicked.connect(self._choose_output)
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self._run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.progress = QProgressBar()
        self.progress.setFormat("%v rows")
        self.status = QLabel("Add .txt (one text per line), .csv or .jsonl files.")
        self.status.setWordWrap(True)

        file_row = QHBoxLayout()
        file_row.addWidget(add)
        file_row.addWidget(clear)
        file_row.addStretch(1)
        form = QFormLayout()
        form.addRow("Files", self.files)
        form.addRow("", _wrap(file_row))
        form.addRow("Task", self.task)
        form.addRow("Model", self.model)
        form.addRow("Text column", self.column)
        form.addRow("Question column", self.question_column)
        out_row = QHBoxLayout()
        out_row.addWidget(self.output, 1)
        out_row.addWidget(choose)
        form.addRow("Results", _wrap(out_row))
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.progress, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.setAcceptDrops(True)
        self._refresh()

    # ---- inputs
    def add_files(self, paths) -> None:
        for path in paths:
            if Path(path).suffix.lower() in (".txt", ".csv", ".jsonl") and path not in self.paths:
                self.files.addItem(path)
        self._refresh()

    def _add_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Files to analyse", "", "Text, CSV or JSON lines (*.txt *.csv *.jsonl)")
        self.add_files(paths)

    def _clear(self) -> None:
        self.files.clear()
        self._refresh()

    def dragEnterEvent(self, event):
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event):
        self.add_files([u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()])

    def _choose_output(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save results", "results.csv", "CSV (*.csv);;JSON lines (*.jsonl);;JSON (*.json)")
        if path:
            self.output.setText(path)

    @property
    def paths(self) -> list[str]:
        return [self.files.item(i).text() for i in range(self.files.count())]

    def _refresh(self) -> None:
        qa = self.task.currentData() == "qa"
        names = sorted({c for p in self.paths for c in columns_of(p)})
        for box, default in ((self.column, "context" if qa else "text"), (self.question_column, "question")):
            current = box.currentText()
            box.clear()
            box.addItems(names)
            box.setCurrentText(current if current in names else (default if default in names or not names else names[0]))
        self.question_column.setEnabled(qa)

    # ---- running
    def _run(self) -> None:
        if not self.paths:
            self.show_error("Add at least one file to analyse.")
            return
        if not self.output.text().strip():
            self.show_error("Choose where to save the results (.csv, .jsonl or .json).")
            return
        if str(Path(self.output.text()).resolve()) in {str(Path(p).resolve()) for p in self.paths}:
            self.show_error("The results file would overwrite an input file.")
            return
        self.job = BatchJob(
            task=self.task.currentData(), model=self.model.currentData(), inputs=tuple(self.paths),
            output=self.output.text().strip(), column=self.column.currentText() or None,
            question_column=self.question_column.currentText() or None,
        )
        counts = [count_rows(p) for p in self.paths]
        self.total = sum(counts) if all(c is not None for c in counts) else None
        self.progress.setRange(0, self.total or 0)
        self.progress.setValue(0)
        self.set_running(True)
        self.status.setStyleSheet("")
        self.status.setText(f"Analysing with {MODEL_LABELS[self.job.model]}…")
        self.run_requested.emit(self.job)

    def set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    @Slot(int, int, int)
    def on_progress(self, job_id: int, done: int, failed: int) -> None:
        if self.job is None or job_id != self.job.id:
            return
        if self.total:
            self.progress.setValue(min(done, self.total))
        self.status.setText(f"{done} rows done" + (f" of {self.total}" if self.total else "") + (f", {failed} failed" if failed else ""))

    @Slot(int, object)
    def on_finished(self, job_id: int, summary) -> None:
        if self.job is None or job_id != self.job.id:
            return
        self.set_running(False)
        verb = "Cancelled after" if summary.cancelled else "Finished:"
        failed = f" ({summary.failed} could not be analysed; see their error column)" if summary.failed else ""
        self.status.setText(f"{verb} {summary.rows} rows written to {self.job.output}{failed}.")

    def show_error(self, message: str) -> None:
        self.set_running(False)
        self.status.setStyleSheet("color: #c62828; font-weight: 600;")
        self.status.setText(message)

    @Slot(int, str)
    def on_failed(self, job_id: int, message: str) -> None:
        if self.job is not None and job_id == self.job.id:
            self.show_error(message)


def _wrap(layout) -> QWidget:
    w = QWidget()
    layout.setContentsMargins(0, 0, 0, 0)
    w.setLayout(layout)
    return w
