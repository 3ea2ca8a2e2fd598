import json
import shutil

import pytest

from engine.bundle import BundleError, load_bundle
from engine.pipelines import load_pipeline


def copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_corrupt_model_file_is_named(tmp_path, tiny_bundles):
    bundle = copy(tiny_bundles[("squeezebert", "sentiment")], tmp_path / "b")
    data = bytearray((bundle / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"corrupt.*model\.onnx"):
        load_bundle(bundle)


def test_truncated_model_and_missing_tokenizer(tmp_path, tiny_bundles):
    bundle = copy(tiny_bundles[("bert", "entities")], tmp_path / "b")
    (bundle / "model.onnx").write_bytes((bundle / "model.onnx").read_bytes()[:1000])
    with pytest.raises(BundleError, match="model.onnx"):
        load_bundle(bundle)
    other = copy(tiny_bundles[("bert", "qa")], tmp_path / "c")
    (other / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match=r"missing.*tokenizer\.json"):
        load_bundle(other)


def test_wrong_task_and_bad_manifest(tmp_path, tiny_bundles):
    with pytest.raises(BundleError, match="'qa' task, not 'sentiment'"):
        load_pipeline("sentiment", tiny_bundles[("bert", "qa")])
    bundle = copy(tiny_bundles[("bert", "sentiment")], tmp_path / "b")
    (bundle / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="manifest"):
        load_bundle(bundle)
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "nowhere")


def test_a_broken_bundle_does_not_take_the_others_down(models_dir):
    (models_dir / "squeezebert-entities" / "model.onnx").write_bytes(b"junk")
    with pytest.raises(BundleError):
        load_pipeline("entities", "squeezebert")
    assert load_pipeline("entities", "bert")("John lives in Paris").model.architecture == "bert"
    assert load_pipeline("sentiment", "squeezebert")("good film").label in ("negative", "positive")


def test_manifest_must_list_required_files(tmp_path, tiny_bundles):
    bundle = copy(tiny_bundles[("bert", "sentiment")], tmp_path / "b")
    manifest = json.loads((bundle / "manifest.json").read_text())
    del manifest["files"]["tokenizer.json"]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="does not list tokenizer.json"):
        load_bundle(bundle)


def test_a_model_that_fails_to_start_is_reported_not_raised(models_dir, monkeypatch):
    import engine.pipelines
    from engine.api import ModelStore
    from engine.errors import InferenceError

    def explode(self, text, cancel=None):
        raise RuntimeError("bad graph")

    store = ModelStore()
    with monkeypatch.context() as patch:
        patch.setattr(engine.pipelines.SentimentPipeline, "__call__", explode)
        with pytest.raises(InferenceError, match="squeezebert-sentiment failed to start: RuntimeError: bad graph"):
            store.get("sentiment", "squeezebert")
    assert store.get("sentiment", "squeezebert")("fine").label  # not cached as failed: a later load works
