"""The one session factory: the graph fusions it leaves out."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import make_checkpoint
from engine.session import OnnxSession, inference_session, session_options


def default_session(path, options):
    """A session as ORT makes it by default, every fusion on."""
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def optimised_ops(model_path, make_session, out_dir) -> set[str]:
    """The op types of the graph a session made by `make_session` runs, after its optimisations."""
    options = session_options(1)
    options.optimized_model_filepath = str(out_dir / f"{make_session.__name__}-optimised.onnx")
    make_session(str(model_path), options)
    return {node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node}


@pytest.fixture(scope="module")
def stock_bert(tmp_path_factory, tiny_tokenizer_dir):
    """A BERT int8 bundle in ORT's own ops: 8 heads of 8 do not fit the GroupedQGemm kernel, whose bundles add the
    skip connections inside it, where no fusion can reach them."""
    from engine.build.export import build_bundle

    root = tmp_path_factory.mktemp("stock-bert")
    build_bundle(make_checkpoint(root / "ckpt", "bert", "sentiment", tiny_tokenizer_dir, heads=8), root / "bundle")
    return root / "bundle" / "model.onnx"


def test_sessions_keep_layer_norm_unfused_in_bert(stock_bert, tmp_path):
    """ORT's SkipLayerNormalization ran slower than the ops it fuses on this project's CPUs (docs/benchmarks.md)."""
    model = stock_bert
    plain = optimised_ops(model, default_session, tmp_path)
    assert "SkipLayerNormalization" in plain  # what ORT does by default: the test below can fail
    ours = optimised_ops(model, inference_session, tmp_path)
    assert "SkipLayerNormalization" not in ours and "LayerNormalization" in ours


def test_unfused_session_gives_the_same_outputs(tiny_bundles):
    model = tiny_bundles[("bert", "sentiment")] / "model.onnx"
    ids = np.array([[2, 7, 8, 9, 10, 11, 3]], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    plain = default_session(str(model), session_options(1))
    expected = plain.run(None, {i.name: feeds[i.name] for i in plain.get_inputs()})[0]
    got = next(iter(OnnxSession(model, threads=1).run(feeds).values()))
    np.testing.assert_allclose(got, expected, atol=0.05)

