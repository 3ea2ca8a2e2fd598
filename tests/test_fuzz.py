"""Property-based fuzzing of all three pipelines. CI runs 600 inputs per task; the full run is 10,000 inputs:

  FUZZ_EXAMPLES=3334 python -m pytest tests/test_fuzz.py

Inputs mix random Unicode (any category, controls and NUL included), mixed scripts, text decoded from random bytes
with surrogateescape (lone surrogates, as a file read carelessly would give), whitespace-only strings and long
repetitions. Whatever comes in, a pipeline returns a result or an InputError, and every offset is valid.
"""
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.pipelines import MAX_CHARS, InputError, load_pipeline

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "600"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

SCRIPTS = st.sampled_from(["Paris", "東京", "Zürich", "مرحبا", "שלום", "Привет", "नमस्ते", "😀👍🏽", "e\u0301", "\u202eRTL\u202c",
                           "\x00", "\t\n\r", "\ufeff", "\u200b", "ﬁ", "Ⅻ", "ǅ", "İ"])
mixed = st.lists(SCRIPTS | st.text(max_size=12), max_size=40).map(" ".join)
from_bytes = st.binary(max_size=300).map(lambda b: b.decode("utf-8", errors="surrogateescape"))
huge = st.tuples(st.text(min_size=1, max_size=10), st.integers(500, 3000)).map(lambda t: (t[0] + " ") * t[1])
TEXT = st.one_of(st.text(max_size=300), mixed, from_bytes, st.sampled_from(["", " ", "\n\n", "\x00" * 5]), huge)


@pytest.fixture(scope="module")
def pipelines(tiny_bundles):
    return {task: load_pipeline(task, tiny_bundles[("squeezebert", task)]) for task in ("sentiment", "entities", "qa")}


def usable(text: str) -> bool:
    return bool(text.strip()) and len(text) <= MAX_CHARS


@FUZZ
@given(text=TEXT)
def test_fuzz_sentiment(pipelines, text):
    try:
        result = pipelines["sentiment"](text)
    except InputError:
        assert not usable(text)
        return
    assert result.label in result.scores and abs(sum(result.scores.values()) - 1) < 1e-6


@FUZZ
@given(text=TEXT)
def test_fuzz_entities(pipelines, text):
    try:
        result = pipelines["entities"](text)
    except InputError:
        assert not usable(text)
        return
    end = 0
    for e in result.entities:
        assert end <= e.start < e.end <= len(text) and e.word == text[e.start : e.end]
        end = e.end


@FUZZ
@given(question=st.one_of(mixed, from_bytes, st.text(max_size=80)), context=TEXT)
def test_fuzz_qa(pipelines, question, context):
    try:
        result = pipelines["qa"](question, context)
    except InputError:
        assert not usable(question) or not usable(context)
        return
    for answer in (result, *result.alternatives):
        assert 0 <= answer.start <= answer.end <= len(context)
        assert answer.answer == context[answer.start : answer.end]
