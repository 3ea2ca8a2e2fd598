"""Scores a pipeline on a standard data file, end to end through the same code the app uses."""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from engine import datasets as ds
from engine.metrics import accuracy, entity_scores, squad_scores
from engine.pipelines import Pipeline

Progress = Callable[[int, int], None]


def stderr_progress(done: int, total: int, started=[None]) -> None:  # noqa: B006 - keeps the start time
    if done == 0 or started[0] is None:
        started[0] = time.time()
    if done == total or done % 200 == 0:
        rate = done / max(time.time() - started[0], 1e-9)
        print(f"\r{done}/{total} ({rate:.0f}/s)", end="\n" if done == total else "", file=sys.stderr, flush=True)


def evaluate(pipeline: Pipeline, data: str | Path, limit: int | None = None, progress: Progress | None = None) -> dict:
    """{"n": examples scored, "metrics": {...}} in percent."""
    task = pipeline.task
    reader = {"sentiment": ds.read_sst2, "entities": ds.read_conll, "qa": ds.read_squad}[task]
    examples = reader(data)[: limit or None]
    progress = progress or (lambda done, total: None)
    progress(0, len(examples))
    if task == "sentiment":
        labels = pipeline.bundle.labels
        predicted = []
        for i, ex in enumerate(examples):
            predicted.append(labels.index(pipeline(ex.text).label) if ex.text.strip() else -1)
            progress(i + 1, len(examples))
        metrics = {"accuracy": accuracy(predicted, [ex.label for ex in examples])}
    elif task == "entities":
        predicted_tags = []
        for i, sentence in enumerate(examples):
            text, spans = ds.sentence_text(sentence.tokens)
            entities = pipeline(text).entities if text.strip() else []
            predicted_tags.append(ds.tags_from_entities(spans, [(e.start, e.end, e.entity_group) for e in entities]))
            progress(i + 1, len(examples))
        metrics = entity_scores(predicted_tags, [s.tags for s in examples])
    else:
        answers = []
        for i, ex in enumerate(examples):
            answers.append(pipeline(ex.question, ex.context).answer)
            progress(i + 1, len(examples))
        metrics = squad_scores(answers, [ex.answers for ex in examples])
    return {"n": len(examples), "metrics": {k: round(v, 2) for k, v in metrics.items()}}
