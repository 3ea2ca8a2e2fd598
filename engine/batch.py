"""Batch analysis of whole files, streamed row by row: memory does not grow with the file.

Inputs: .txt (one text per line), .csv (a chosen column; QA: question and context columns), .jsonl (a chosen field).
Outputs: .csv, .jsonl or .json (an array), one row per input row, written and flushed as it is produced, so an
interrupted run leaves a valid file with everything done so far. A row that cannot be analysed (empty, undecodable bytes, too long) is
written with an `error` field, never dropped.
"""
from __future__ import annotations

import csv
import json
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.errors import Cancelled, DataFormatError, EngineError
from engine.pipelines import Pipeline

INPUT_SUFFIXES = (".txt", ".csv", ".jsonl")
OUTPUT_SUFFIXES = (".csv", ".jsonl", ".json")
OUTPUT_FIELDS = ["file", "row", "text", "question", "label", "score", "entities", "answer", "start", "end",
                 "model", "precision", "total_ms", "n_tokens", "error"]
csv.field_size_limit(sys.maxsize)


@dataclass(frozen=True)
class BatchRow:
    row: int  # 1-based position in the input (data rows; a CSV header is not counted)
    text: str
    question: str = ""
    error: str = ""  # set when the row could not even be read
    file: str = ""  # the input file's name, when a run reads several


def _decode(raw: bytes) -> tuple[str, str]:
    try:
        return raw.decode("utf-8"), ""
    except UnicodeDecodeError as exc:
        return raw.decode("utf-8", errors="replace"), f"undecodable bytes (not UTF-8) at byte {exc.start}"


def read_rows(path: str | Path, column: str | None = None, question_column: str | None = None) -> Iterator[BatchRow]:
    """Rows of an input file, lazily. `column` names the text (QA: context) column of a .csv or field of a .jsonl."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in INPUT_SUFFIXES:
        raise DataFormatError(f"{path.name}: batch input must be .txt, .csv or .jsonl")
    if not path.is_file():
        raise DataFormatError(f"input file not found: {path}")
    if suffix == ".txt":
        if question_column:
            raise DataFormatError("question answering needs a .csv or .jsonl with question and context columns")
        with open(path, "rb") as f:
            for n, raw in enumerate(f, start=1):
                text, error = _decode(raw.rstrip(b"\r\n"))
                yield BatchRow(n, text, error=error)
    elif suffix == ".csv":
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            for name in (column, question_column):
                if name and name not in fields:
                    raise DataFormatError(f"{path.name}: no column {name!r} (columns: {', '.join(fields) or 'none'})")
            for n, record in enumerate(reader, start=1):
                yield _row_from_fields(n, record.get(column) or "", record.get(question_column) or "" if question_column else "")
    else:
        with open(path, "rb") as f:
            for n, raw in enumerate(f, start=1):
                line, error = _decode(raw)
                if error:
                    yield BatchRow(n, line.strip(), error=error)
                    continue
                try:
                    record = json.loads(line)
                    text = record[column]
                    question = record[question_column] if question_column else ""
                    if not isinstance(text, str) or not isinstance(question, str):
                        raise TypeError("not a string")
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    yield BatchRow(n, line.strip()[:200], error=f"unreadable JSON line ({exc.__class__.__name__}: {exc})")
                    continue
                yield BatchRow(n, text, question)


def _row_from_fields(n: int, text: str, question: str) -> BatchRow:
    """CSV fields read with surrogateescape: a lone surrogate means the bytes were not UTF-8."""
    for value in (text, question):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return BatchRow(n, text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
                            question.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
                            error="undecodable bytes (not UTF-8)")
    return BatchRow(n, text, question)


def result_fields(result) -> dict:
    fields = {"model": result.model.architecture, "precision": result.model.precision,
              "total_ms": result.timing.total_ms, "n_tokens": result.timing.n_tokens}
    if result.task == "sentiment":
        fields.update(label=result.label, score=round(result.score, 6))
    elif result.task == "entities":
        fields["entities"] = [{"entity_group": e.entity_group, "word": e.word, "start": e.start, "end": e.end,
                               "score": round(e.score, 6)} for e in result.entities]
    else:
        fields.update(answer=result.answer, score=round(result.score, 6), start=result.start, end=result.end)
    return fields


class RowWriter:
    """CSV, JSONL or JSON-array output, one complete row per write, flushed; closing a JSON array at any point
    leaves a valid file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in OUTPUT_SUFFIXES:
            raise DataFormatError(f"{self.path.name}: batch output must be .csv, .jsonl or .json")
        try:
            self._file = open(self.path, "w", encoding="utf-8", newline="")
        except OSError as exc:
            raise DataFormatError(f"cannot write {self.path}: {exc.strerror}") from None
        self._csv = None
        self._array = suffix == ".json"
        self._rows = 0
        if suffix == ".csv":
            self._csv = csv.DictWriter(self._file, fieldnames=OUTPUT_FIELDS, extrasaction="ignore")
            self._csv.writeheader()
        elif self._array:
            self._file.write("[")
        self._file.flush()

    def write(self, record: dict) -> None:
        if self._csv is not None:
            row = dict(record)
            if "entities" in row:
                row["entities"] = json.dumps(row["entities"], ensure_ascii=False)
            self._csv.writerow(row)
        elif self._array:
            self._file.write(("," if self._rows else "") + "\n" + json.dumps(record, ensure_ascii=False))
        else:
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._rows += 1
        self._file.flush()

    def close(self) -> None:
        if self._file.closed:
            return
        if self._array:
            self._file.write("\n]\n")
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass
class BatchSummary:
    rows: int = 0
    failed: int = 0
    cancelled: bool = False


def analyse_row(pipeline: Pipeline, row: BatchRow) -> dict:
    record = {"file": row.file, "row": row.row, "text": row.text} if row.file else {"row": row.row, "text": row.text}
    if pipeline.task == "qa":
        record["question"] = row.question
    if row.error:
        return {**record, "error": row.error}
    try:
        result = pipeline(row.question, row.text) if pipeline.task == "qa" else pipeline(row.text)
    except Cancelled:
        raise
    except EngineError as exc:
        return {**record, "error": str(exc)}
    return {**record, **result_fields(result), "error": ""}


def run_batch(
    pipeline: Pipeline,
    rows: Iterator[BatchRow],
    writer: RowWriter,
    progress: Callable[[int], None] | None = None,
    cancel: threading.Event | None = None,
) -> BatchSummary:
    """Analyse and write row by row until the input ends or `cancel` is set."""
    summary = BatchSummary()
    for row in rows:
        if cancel is not None and cancel.is_set():
            summary.cancelled = True
            break
        record = analyse_row(pipeline, row)
        writer.write(record)
        summary.rows += 1
        summary.failed += bool(record["error"])
        if progress:
            progress(summary.rows)
    return summary


def rows_of_files(paths: list[str], column: str | None, question_column: str | None) -> Iterator[BatchRow]:
    """Rows of several files in turn, each tagged with its file's name."""
    from dataclasses import replace

    for path in paths:
        name = Path(path).name
        text_column = None if path.lower().endswith(".txt") else column
        for row in read_rows(path, text_column, question_column):
            yield replace(row, file=name)


def count_rows(path: str | Path) -> int | None:
    """Rows in an input file, for a progress bar (a quick scan; None if unknown)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            lines = sum(1 for _ in f)
    except OSError:
        return None
    return max(lines - 1, 0) if path.suffix.lower() == ".csv" else lines
