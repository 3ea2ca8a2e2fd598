"""The engine worker: one QObject living in a QThread that owns every ONNX Runtime session.

The UI talks to it only through `submit()` and typed signals. Requests are keyed by (tab, model): a newer request
replaces an older one still waiting under the same key, so typing fast never builds a queue, and every result
carries the id of the request it answers so the window can drop stale ones.
"""
from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass, field
from itertools import count

import time

from PySide6.QtCore import QCoreApplication, QObject, Qt, QThread, Signal, Slot

from engine.api import Cancelled, EngineError, ModelStore
from engine.batch import BatchSummary, RowWriter, analyse_row, rows_of_files

_ids = count(1)


@dataclass(frozen=True)
class Request:
    tab: str
    task: str
    model: str  # "squeezebert" | "bert"
    text: str
    question: str = ""
    repeat: int = 1  # run this many times and report the run with the median latency (a fairer timing)
    id: int = field(default_factory=lambda: next(_ids))

    @property
    def key(self) -> tuple[str, str]:
        return (self.tab, self.model)


@dataclass(frozen=True)
class BatchJob:
    task: str
    model: str
    inputs: tuple[str, ...]
    output: str
    column: str | None = None
    question_column: str | None = None
    id: int = field(default_factory=lambda: next(_ids))


BATCH_SLICE_SECONDS = 0.05  # then let queued interactive requests run before the next slice


class EngineWorker(QObject):
    started = Signal(object)  # Request
    finished = Signal(object, object)  # Request, result
    failed = Signal(object, str)  # Request, message for the user
    model_loading = Signal(str, str)  # task, model
    model_loaded = Signal(str, str, object)  # task, model, ModelSummary
    model_failed = Signal(str, str, str)  # task, model, message
    batch_progress = Signal(int, int, int)  # job id, rows done, rows failed
    batch_finished = Signal(int, object)  # job id, BatchSummary
    batch_failed = Signal(int, str)  # job id, message
    _wake = Signal()
    _batch_start = Signal(object)
    _batch_next = Signal()

    def __init__(self, store: ModelStore | None = None):
        super().__init__()
        self._store = store or ModelStore()
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], Request] = {}
        self._running: Request | None = None
        self._cancel = threading.Event()  # set to abandon the request being run
        self._stopping = False
        self._wake.connect(self._drain)
        self._batch = None  # (job, rows iterator, writer, summary, pipeline) while a batch runs
        self._batch_cancel = threading.Event()
        self._batch_start.connect(self._begin_batch)
        self._batch_next.connect(self._batch_slice, Qt.QueuedConnection)  # queued even from its own thread

    # ---- called from the UI thread
    def submit(self, request: Request) -> None:
        with self._lock:
            if self._stopping:
                return
            self._pending[request.key] = request
            if self._running is not None and self._running.key == request.key:
                self._cancel.set()  # the running one is superseded: stop it between window batches
        self._wake.emit()

    def start_batch(self, job: BatchJob) -> None:
        self._batch_cancel.clear()
        self._batch_start.emit(job)

    def cancel_batch(self) -> None:
        self._batch_cancel.set()

    def stop(self) -> None:
        """Drop everything queued; the request being run finishes and nothing more starts."""
        with self._lock:
            self._stopping = True
            self._pending.clear()
            self._cancel.set()
        self._batch_cancel.set()

    # ---- run in the worker thread
    @Slot(object)
    def preload(self, keys: list) -> None:
        for task, model in keys:
            if self._stopping:
                return
            try:
                self._load(task, model)
            except EngineError:
                continue  # reported through model_failed; the other models still load

    def _load(self, task: str, model: str):
        if not self._store.is_loaded(task, model):
            self.model_loading.emit(task, model)
        try:
            pipeline = self._store.get(task, model)
        except EngineError as exc:
            self.model_failed.emit(task, model, str(exc))
            raise
        self.model_loaded.emit(task, model, self._store.summary(task, model))
        return pipeline

    @Slot()
    def _drain(self) -> None:
        while True:
            with self._lock:
                if self._stopping or not self._pending:
                    return
                request = self._pending.pop(next(iter(self._pending)))
                self._running = request
                self._cancel.clear()
            try:
                self._run(request)
            finally:
                with self._lock:
                    self._running = None

    @Slot(object)
    def _begin_batch(self, job: BatchJob) -> None:
        if self._batch is not None:
            self.batch_failed.emit(job.id, "A batch is already running.")
            return
        try:
            pipeline = self._load(job.task, job.model)
            rows = rows_of_files(list(job.inputs), job.column, job.question_column if job.task == "qa" else None)
            first = next(rows, None)  # a missing column or a bad file type fails here, before the output exists
            writer = RowWriter(job.output)
        except EngineError as exc:
            self.batch_failed.emit(job.id, str(exc))
            return
        chained = iter(([first] if first is not None else []))
        self._batch = (job, _chain(chained, rows), writer, BatchSummary(), pipeline)
        self._batch_next.emit()

    @Slot()
    def _batch_slice(self) -> None:
        if self._batch is None:
            return
        job, rows, writer, summary, pipeline = self._batch
        deadline = time.perf_counter() + BATCH_SLICE_SECONDS
        try:
            while time.perf_counter() < deadline:
                if self._batch_cancel.is_set():
                    summary.cancelled = True
                    return self._end_batch()
                row = next(rows, None)
                if row is None:
                    return self._end_batch()
                record = analyse_row(pipeline, row)
                writer.write(record)
                summary.rows += 1
                summary.failed += bool(record["error"])
        except (EngineError, OSError) as exc:  # a file that turns unreadable mid-way, a full disk
            writer.close()
            self._batch = None
            self.batch_failed.emit(job.id, f"Batch stopped after {summary.rows} rows: {exc}")
            return
        self.batch_progress.emit(job.id, summary.rows, summary.failed)
        self._batch_next.emit()

    def abandon_batch(self) -> None:
        """Close a batch's output as it stands (called once the thread has stopped): the file stays valid."""
        if self._batch is not None:
            self._batch[2].close()
            self._batch = None

    def _end_batch(self) -> None:
        job, _, writer, summary, _ = self._batch
        writer.close()
        self._batch = None
        self.batch_progress.emit(job.id, summary.rows, summary.failed)
        self.batch_finished.emit(job.id, summary)

    def _run(self, request: Request) -> None:
        self.started.emit(request)
        try:
            pipeline = self._load(request.task, request.model)
            runs = []
            for _ in range(max(1, request.repeat)):
                if request.task == "qa":
                    runs.append(pipeline(request.question, request.text, cancel=self._cancel))
                else:
                    runs.append(pipeline(request.text, cancel=self._cancel))
            result = sorted(runs, key=lambda r: r.timing.total_ms)[len(runs) // 2]
        except Cancelled:
            return  # superseded or closing: nobody is waiting for this one
        except EngineError as exc:
            self.failed.emit(request, str(exc))
            return
        except Exception as exc:  # a bug must reach the user as a message, never kill the thread
            traceback.print_exc()
            self.failed.emit(request, f"Unexpected engine error: {exc.__class__.__name__}: {exc}")
            return
        self.finished.emit(request, result)


def _chain(*iterators):
    for it in iterators:
        yield from it


class EngineThread:
    """Owns the QThread and the worker in it; `shutdown()` returns within a bounded time.

    Qt aborts the process if a running QThread is destroyed, so the thread is also stopped when the application
    quits and when this object is dropped without an explicit shutdown.
    """

    def __init__(self, store: ModelStore | None = None):
        self.thread = QThread()
        self.thread.setObjectName("engine")
        self.worker = EngineWorker(store)
        self.worker.moveToThread(self.thread)
        self.thread.start()
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    def shutdown(self, timeout_ms: int = 1500) -> bool:
        if not self.thread.isRunning():
            return True
        self.worker.stop()
        self.thread.quit()
        stopped = self.thread.wait(timeout_ms)
        if not stopped:  # a single long model call still running: it stops at its next window batch
            stopped = self.thread.wait(10000)
        if stopped:
            self.worker.abandon_batch()
        return stopped

    def __del__(self):
        try:
            self.shutdown()
        except RuntimeError:  # the C++ objects are already gone at interpreter exit
            pass
