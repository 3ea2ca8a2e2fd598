"""The one session factory: the graph fusions it leaves out."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import make_checkpoint
from engine import native
from engine.bundle import load_bundle
from engine.pipelines import SentimentPipeline
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


def test_a_bundle_on_the_kernels_leaves_onnx_runtime_one_thread_and_the_kernels_the_rest(tiny_bundles, stock_bert):
    """engine.native's ops run on threads of their own; ORT's pool, left a head and a LayerNorm, gets one thread so
    that its threads do not spin on the cores the kernels need. A bundle in ORT's own ops keeps them all."""
    kernels, stock = load_bundle(tiny_bundles[("squeezebert", "sentiment")]), load_bundle(stock_bert.parent)
    assert kernels.runs_on_kernels and not stock.runs_on_kernels
    for bundle, ort_threads in ((kernels, 1), (stock, 3)):
        options = SentimentPipeline(bundle, threads=3).session._session.get_session_options()
        assert options.intra_op_num_threads == ort_threads
        assert options.get_session_config_entry(native.THREADS_KEY) == "3"
