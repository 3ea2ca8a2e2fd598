"""Loads every bundled model and checks each gives a sensible answer on a built-in example."""
from __future__ import annotations

from engine.bundle import MODELS, TASKS
from engine.errors import EngineError
from engine.pipelines import load_pipeline

POSITIVE = "A wonderful, moving film with brilliant performances. I loved every minute of it."
NEGATIVE = "A dull, lifeless mess. The plot is boring and the acting is terrible."
ENTITY_TEXT = "Angela Merkel met Emmanuel Macron in Paris on Monday to discuss the European Union budget."
QA_CONTEXT = (
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France. It was designed by the company of the "
    "engineer Gustave Eiffel and completed in 1889 for the World's Fair."
)
QA_QUESTION = "When was the Eiffel Tower completed?"


def check(task: str, model: str) -> dict:
    """One model: {"ok", "detail", "ms"}; never raises for a bad bundle or a wrong answer."""
    try:
        pipeline = load_pipeline(task, model)
        if task == "sentiment":
            pos, neg = pipeline(POSITIVE), pipeline(NEGATIVE)
            ok = pos.label == "positive" and neg.label == "negative"
            return {"ok": ok, "detail": f"{pos.label} / {neg.label}", "ms": pos.timing.total_ms}
        if task == "entities":
            result = pipeline(ENTITY_TEXT)
            found = {(e.word, e.entity_group) for e in result.entities}
            ok = ("Paris", "LOC") in found and any(t == "PER" for _, t in found)
            return {"ok": ok, "detail": sorted(found), "ms": result.timing.total_ms}
        result = pipeline(QA_QUESTION, QA_CONTEXT)
        ok = "1889" in result.answer and result.answer == QA_CONTEXT[result.start : result.end]
        return {"ok": ok, "detail": result.answer, "ms": result.timing.total_ms}
    except EngineError as exc:
        return {"ok": False, "detail": str(exc), "ms": None}


def self_test() -> dict:
    results = {f"{model}-{task}": check(task, model) for model in MODELS for task in TASKS}
    return {"ok": all(r["ok"] for r in results.values()), "models": results}
