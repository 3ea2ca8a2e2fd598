"""The profiler's split of kernel time into projections, attention and the rest."""
import numpy as np
import pytest

from engine.profile import node_kind, profile_models, summarise


def test_node_kind_tells_weights_from_activations():
    weights = {"W"}
    assert node_kind("DynamicQuantizeMatMul", ["x", "W_quantized"], weights) == "projections"
    assert node_kind("MatMul", ["x", "W"], weights) == "projections"
    assert node_kind("GroupedQGemm", ["xq", "xs", "xz", "W.packed"], weights) == "projections"
    assert node_kind("FusedMatMul", ["q", "k"], weights) == "attention"  # QK^T: two activations
    assert node_kind("Softmax", ["scores"], weights) == "attention"
    assert node_kind("MaskedAttention", ["q", "k", "v", "mask"], weights) == "attention"
    assert node_kind("QuantizeRows", ["x", "ln.weight", "ln.bias"], weights) == "other"  # LayerNorm + quantise
    assert node_kind("Add", ["x", "W"], weights) == "other"  # a bias add is element-wise work


def event(name, ts, dur, op=None):
    if op is None:
        return {"cat": "Session", "name": name, "ts": ts, "dur": dur}
    return {"cat": "Node", "name": name + "_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}


def test_summarise_leaves_out_warm_up_and_averages_per_run():
    events = [event("model_run", 0, 100), event("mm", 10, 90, "MatMul"),  # warm-up: slow first call
              event("model_run", 200, 30), event("mm", 205, 20, "MatMul"), event("add", 226, 4, "Add"),
              event("model_run", 300, 30), event("mm", 305, 10, "MatMul"), event("add", 316, 2, "Add")]
    summary = summarise(events, {"mm": "projections", "add": "other"}, skip_runs=1)
    assert summary["runs"] == 2
    assert summary["by_kind_ms"] == {"projections": 0.015, "attention": 0.0, "other": 0.003}
    assert summary["kernel_ms"] == 0.018
    assert [(o["op"], o["nodes"]) for o in summary["by_op"]] == [("MatMul", 1), ("Add", 1)]
    with pytest.raises(ValueError):
        summarise(events, {}, skip_runs=3)


def test_summarise_leaves_out_the_first_calls_of_each_block():
    """Blocks of 3 calls after one warm-up call, the first of each block (just after another model's) left out."""
    events = []
    for k, dur in enumerate([50, 40, 10, 10, 40, 10, 10]):
        events += [event("model_run", 100 * k, dur + 2), event("mm", 100 * k + 1, dur, "MatMul")]
    summary = summarise(events, {"mm": "projections"}, skip_runs=1, block=3, settle=1)
    assert summary["runs"] == 4 and summary["by_kind_ms"]["projections"] == 0.01


def test_profiles_of_int8_bundles_taken_in_turn_account_for_their_kernels(tiny_bundles):
    ids = np.array([[2, 7, 8, 9, 10, 11, 3]], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    models = {arch: (tiny_bundles[(arch, "sentiment")] / "model.onnx", feeds) for arch in ("squeezebert", "bert")}
    summaries = profile_models(models, runs=3, threads=1, warmup=2)
    assert list(summaries) == ["squeezebert", "bert"]
    for summary in summaries.values():  # each session's own events: its 3 runs, not the other's
        kinds = summary["by_kind_ms"]
        assert summary["runs"] == 3
        assert kinds["projections"] > 0 and kinds["attention"] > 0 and kinds["other"] > 0
        assert sum(kinds.values()) == pytest.approx(summary["kernel_ms"], abs=0.002)
        ops = {o["op"] for o in summary["by_op"]}
        assert {"GroupedQGemm", "MaskedAttention"} <= ops  # the encoder's (engine.native)
        assert ops & {"DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulInteger"}  # the head's


def test_profile_without_models_says_so(tmp_path, monkeypatch):
    import engine.bundle
    import engine.profile
    from engine.errors import BundleError

    monkeypatch.setattr(engine.bundle, "models_dir", lambda: tmp_path)
    monkeypatch.setattr(engine.profile, "model_paths", lambda task, notes, encoder: {})
    with pytest.raises(BundleError, match="no qa models"):
        engine.profile.profile_task("qa", 32, 1, 1)
