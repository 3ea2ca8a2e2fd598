"""The main window: header (model toggle, latency readout, chart), the four tabs, and the status bar."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QButtonGroup,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from engine.bundle import TASKS
from gui.latency import LatencyChart, LatencyHistory, LatencyReadout
from gui.style import MODEL_LABELS, MODEL_NAMES
from gui.tabs.batch import BatchTab
from gui.tabs.compare import CompareTab
from gui.tabs.entities import EntitiesTab
from gui.tabs.qa import QATab
from gui.tabs.sentiment import SentimentTab
from gui.units import ms
from gui.worker import EngineThread, Request

MODEL_COUNT = len(TASKS) * len(MODEL_NAMES)  # one bundle per (task, model)


class ModelToggle(QWidget):
    """SqueezeBERT | BERT, a two-segment exclusive switch."""

    changed = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.group = QButtonGroup(self)
        self.buttons = {}
        for model in MODEL_NAMES:
            button = QPushButton(MODEL_LABELS[model])
            button.setObjectName("toggle")
            button.setProperty("model", model)
            button.setCheckable(True)
            button.setToolTip(f"Run every tab with {MODEL_LABELS[model]}")
            self.group.addButton(button)
            layout.addWidget(button)
            self.buttons[model] = button
        self.buttons["squeezebert"].setChecked(True)
        self.group.buttonToggled.connect(lambda button, on: on and self.changed.emit(button.property("model")))

    @property
    def model(self) -> str:
        return next(m for m, b in self.buttons.items() if b.isChecked())

    def set_model(self, model: str) -> None:
        self.buttons[model].setChecked(True)


class MainWindow(QMainWindow):
    preload = Signal(object)  # [(task, model)], handled in the worker thread

    def __init__(self, store=None):
        super().__init__()
        self.setWindowTitle("SqueezeBERT Desktop")
        self.resize(1280, 800)
        self.history = LatencyHistory()
        self.toggle = ModelToggle()
        self.readout = LatencyReadout(self.history)
        self.chart = LatencyChart(self.history)
        header = QFrame()
        header.setObjectName("header")
        bar = QHBoxLayout(header)
        model_label = QLabel("Model")
        bar.addWidget(model_label)
        bar.addWidget(self.toggle)
        bar.addSpacing(16)
        bar.addWidget(self.readout, 1)
        bar.addWidget(self.chart)

        self.tabs = QTabWidget()
        self.sentiment, self.entities, self.qa, self.compare = SentimentTab(), EntitiesTab(), QATab(), CompareTab()
        self.task_tabs = {t.task: t for t in (self.sentiment, self.entities, self.qa)}
        for tab in (self.sentiment, self.entities, self.qa, self.compare):
            self.tabs.addTab(tab, tab.title)
            tab.analysis_requested.connect(lambda tab=tab: self.analyse(tab))
        self.batch = BatchTab()
        self.tabs.addTab(self.batch, self.batch.title)
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(8, 6, 8, 0)
        column.addWidget(header)
        column.addWidget(self.tabs, 1)
        self.setCentralWidget(central)

        self.models_label = QLabel("")
        self.statusBar().addPermanentWidget(self.models_label)
        self.loaded: dict[tuple[str, str], object] = {}
        self.load_errors: dict[tuple[str, str], str] = {}
        self.latest: dict[tuple[str, str], int] = {}  # newest request id per (tab, model slot)
        self.last_results: dict[str, object] = {}  # per tab, for the readout when switching tabs
        self.stale: set[str] = set()  # tabs whose shown result is from the other model
        self.closing = False

        self.engine = EngineThread(store)
        worker = self.engine.worker
        worker.started.connect(self._started)
        worker.finished.connect(self._finished)
        worker.failed.connect(self._failed)
        worker.model_loading.connect(self._model_loading)
        worker.model_loaded.connect(self._model_loaded)
        worker.model_failed.connect(self._model_failed)
        self.preload.connect(worker.preload)
        # thread-safe calls made in the UI thread (a queued call would wait behind the batch it should cancel)
        self.batch.run_requested.connect(worker.start_batch, Qt.DirectConnection)
        self.batch.cancel_requested.connect(worker.cancel_batch, Qt.DirectConnection)
        worker.batch_progress.connect(self.batch.on_progress)
        worker.batch_finished.connect(self.batch.on_finished)
        worker.batch_failed.connect(self.batch.on_failed)
        self.toggle.changed.connect(self._model_changed)
        self.tabs.currentChanged.connect(self._tab_changed)
        self._update_models_label()
        self.statusBar().showMessage("Loading models in the background…")
        # SqueezeBERT first (the default), then BERT, so the first analysis is never waiting on the other model.
        self.preload.emit([(t, m) for m in MODEL_NAMES for t in TASKS])

    # ---- requests
    @property
    def model(self) -> str:
        return self.toggle.model

    def analyse(self, tab) -> None:
        text, question = tab.inputs()
        if tab is self.compare:
            tab.begin()
            for model in MODEL_NAMES:
                request = Request("compare", tab.current_task, model, text, question, repeat=tab.REPEAT)
                self._submit(request, ("compare", model))
        else:
            self.stale.discard(tab.task)
            self._submit(Request(tab.task, tab.task, self.model, text, question), (tab.task, "active"))

    def _submit(self, request: Request, slot: tuple[str, str]) -> None:
        if self.closing:
            return
        self.latest[slot] = request.id
        self.engine.worker.submit(request)

    def _slot(self, request: Request) -> tuple[str, str]:
        return ("compare", request.model) if request.tab == "compare" else (request.tab, "active")

    def _is_current(self, request: Request) -> bool:
        """Only the newest request of a slot may show; for a task tab, only if made for the model now selected."""
        if self.latest.get(self._slot(request)) != request.id:
            return False
        return request.tab == "compare" or request.model == self.model

    @Slot(object)
    def _started(self, request: Request) -> None:
        if self._is_current(request) and request.tab != "compare":
            self.task_tabs[request.tab].show_busy(MODEL_LABELS[request.model])

    @Slot(object, object)
    def _finished(self, request: Request, result) -> None:
        if not self._is_current(request):
            return
        if result.model.architecture != request.model:  # never show a result under the wrong model's name
            self._failed(request, f"The {request.model} slot returned a {result.model.architecture} result.")
            return
        self.history.add(request.model, result.timing.total_ms)
        self.chart.update()
        if request.tab == "compare":
            self.compare.show_model_result(request.model, result)
        else:
            self.task_tabs[request.tab].show_result(result)
            self.last_results[request.tab] = result
        # the readout speaks for the toggled model only (Compare also runs the other one)
        if self.tabs.currentWidget() is self._tab_of(request) and request.model == self.model:
            self.readout.show_timing(request.model, result.timing)
            self.statusBar().showMessage(
                f"{MODEL_LABELS[request.model]} {request.task}: {ms(result.timing.total_ms)} ms", 4000
            )

    @Slot(object, str)
    def _failed(self, request: Request, message: str) -> None:
        if not self._is_current(request):
            return
        if request.tab == "compare":
            self.compare.show_model_error(request.model, message)
        else:
            self.task_tabs[request.tab].show_error(message)

    def _tab_of(self, request: Request):
        return self.compare if request.tab == "compare" else self.task_tabs[request.tab]

    # ---- toggle and tabs
    def _model_changed(self, model: str) -> None:
        self.stale = set(self.task_tabs)
        self._refresh_header()
        tab = self.tabs.currentWidget()
        if tab in self.task_tabs.values() and tab.has_input():
            self.analyse(tab)  # same input, the newly selected model

    def _tab_changed(self, index: int) -> None:
        tab = self.tabs.widget(index)
        self._refresh_header()
        if tab in self.task_tabs.values() and tab.task in self.stale and tab.has_input():
            self.analyse(tab)

    def _refresh_header(self) -> None:
        tab = self.tabs.currentWidget()
        if tab is self.batch:
            task = self.batch.task.currentData()
        else:
            task = tab.current_task if tab is self.compare else tab.task
        self.readout.show_model(self.loaded.get((task, self.model)))
        result = self.last_results.get(getattr(tab, "task", ""))
        if result is not None and result.model.architecture == self.model:
            self.readout.show_timing(self.model, result.timing)
        else:
            self.readout.show_stats(self.model)

    # ---- model loading
    def models_settled(self) -> bool:
        """Every bundle has either loaded or failed."""
        return len(self.loaded) + len(self.load_errors) == MODEL_COUNT

    @Slot(str, str)
    def _model_loading(self, task: str, model: str) -> None:
        n = len(self.loaded) + 1
        self.statusBar().showMessage(f"Loading {MODEL_LABELS[model]} {task} ({n}/{MODEL_COUNT})…")

    @Slot(str, str, object)
    def _model_loaded(self, task: str, model: str, summary) -> None:
        self.loaded[(task, model)] = summary
        self.load_errors.pop((task, model), None)
        self._update_models_label()
        self._refresh_header()
        if len(self.loaded) == MODEL_COUNT:
            self.statusBar().showMessage("All models loaded.", 5000)

    @Slot(str, str, str)
    def _model_failed(self, task: str, model: str, message: str) -> None:
        self.load_errors[(task, model)] = message
        self._update_models_label()
        self.statusBar().showMessage(f"{MODEL_LABELS[model]} {task} unavailable: {message}", 15000)

    def _update_models_label(self) -> None:
        total = MODEL_COUNT
        failed = f" · {len(self.load_errors)} unavailable" if self.load_errors else ""
        self.models_label.setText(f"Models loaded: {len(self.loaded)}/{total}{failed}")

    # ---- shutdown
    def closeEvent(self, event) -> None:
        self.closing = True
        for tab in (self.sentiment, self.entities, self.qa, self.compare):
            tab.debounce.stop()
        self.engine.shutdown()
        super().closeEvent(event)
