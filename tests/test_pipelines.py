import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT
from engine.pipelines import InputError, load_pipeline

@pytest.fixture(scope="module")
def pipelines(tiny_bundles):
    return {task: load_pipeline(task, tiny_bundles[("squeezebert", task)]) for task in ("sentiment", "entities", "qa")}


def test_every_result_has_its_latency_split_and_model(pipelines):
    results = [
        pipelines["sentiment"]("a good film"),
        pipelines["entities"]("John Smith visited Paris"),
        pipelines["qa"]("where is the tower?", "the tower is in paris"),
    ]
    for r in results:
        t = r.timing
        assert t.n_tokens > 0 and t.total_ms >= t.tokenize_ms + t.inference_ms + t.postprocess_ms - 0.01
        assert r.model.architecture == "squeezebert" and r.model.precision == "int8"


def test_long_texts_are_windowed_not_truncated(pipelines):
    text = "the film was good and the tower is in paris . " * 200  # ~2,000 tokens, windows of 64
    sentiment = pipelines["sentiment"](text)
    assert sentiment.n_windows > 30 and sentiment.timing.n_tokens > 2000
    assert sum(sentiment.scores.values()) == pytest.approx(1.0)
    entities = pipelines["entities"](text)
    starts = [e.start for e in entities.entities]
    assert starts == sorted(set(starts))
    qa = pipelines["qa"]("where is the tower?", text)
    assert qa.n_windows > 1 and qa.answer == text[qa.start : qa.end]


@pytest.mark.parametrize("bad", ["", "   \n\t", "x" * 200_001])
def test_bad_input_raises_a_clear_message(pipelines, bad):
    with pytest.raises(InputError):
        pipelines["sentiment"](bad)
    with pytest.raises(InputError):
        pipelines["qa"]("question?", bad)


def test_running_every_task_never_imports_torch_or_transformers(tiny_bundles):
    paths = {task: str(tiny_bundles[("squeezebert", task)]) for task in ("sentiment", "entities", "qa")}
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from engine.pipelines import load_pipeline
        paths = {paths!r}
        load_pipeline('sentiment', paths['sentiment'])('good')
        load_pipeline('entities', paths['entities'])('John in Paris')
        load_pipeline('qa', paths['qa'])('where?', 'in paris')
        bad = [m for m in ('torch', 'transformers') if m in sys.modules]
        print('IMPORTED', bad)
        sys.exit(1 if bad else 0)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
