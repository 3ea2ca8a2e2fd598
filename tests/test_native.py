"""The GroupedQGemm kernel (engine/native) against a numpy reference, on both of its code paths."""
import math

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine import native
from engine.build.export import pack_groups, unpack_groups
from engine.errors import InferenceError
from engine.session import OnnxSession, session_options

pytestmark = pytest.mark.skipif(native.library() is None, reason="kernel library not built")


def erf(x):
    return np.vectorize(math.erf)(x)


def op_model(weight, scale, bias, heads=0, gelu=0, splits=1, residual=False, rank=3):
    """QuantizeRows on X, then one GroupedQGemm (weight [G, K, N] int8); the quantised rows are outputs too."""
    groups, k, n = weight.shape
    inputs = ["xq", "xs", "xz", "B", "scale", "colsum", "bias"] + (["R"] if residual else [])
    outputs = [f"Y{i}" for i in range(splits)]
    initialisers = [numpy_helper.from_array(pack_groups(weight), "B"), numpy_helper.from_array(scale, "scale"),
                    numpy_helper.from_array(weight.astype(np.int32).sum(1).reshape(-1).astype(np.int32), "colsum"),
                    numpy_helper.from_array(bias, "bias")]
    nodes = [helper.make_node(native.QUANTIZE_OP, ["X"], ["xq", "xs", "xz"], domain=native.DOMAIN),
             helper.make_node(native.OP, inputs, outputs, domain=native.DOMAIN, heads=heads, gelu=gelu, splits=splits)]
    shape = ["b", "s", groups * k][-rank:]
    graph_inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, shape)]
    if residual:
        graph_inputs.append(helper.make_tensor_value_info("R", TensorProto.FLOAT, None))
    graph_outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs] + [
        helper.make_tensor_value_info(name, kind, None)
        for name, kind in (("xq", TensorProto.UINT8), ("xs", TensorProto.FLOAT), ("xz", TensorProto.UINT8))]
    return opset_model(helper.make_graph(nodes, "g", graph_inputs, graph_outputs, initialisers))


def opset_model(graph) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(native.DOMAIN, 1)])
    return model.SerializeToString()


def quantized_rows(y):
    """ONNX's DynamicQuantizeLinear rule applied to each row (last axis) on its own: values, scale, zero point."""
    low = np.minimum(y.min(axis=-1, keepdims=True, initial=0), 0)
    high = np.maximum(y.max(axis=-1, keepdims=True, initial=0), 0)
    step = (high - low) / 255
    step[step == 0] = 1.0  # an all-zero row
    zero = np.clip(np.round(-low / step), 0, 255)
    return np.clip(np.round(y / step) + zero, 0, 255), step, zero


def reference(q, step, zero, weight, scale, bias, heads=0, gelu=0, splits=1, residual=None):
    """What GroupedQGemm computes from quantised rows (q, step, zero: one step and zero point per row), in float64."""
    groups, k, n = weight.shape
    a = (q.astype(np.float64) - zero) * step
    y = np.einsum("...gk,gkn->...gn", a.reshape(*q.shape[:-1], groups, k), weight.astype(np.float64))
    y = y * scale.reshape(groups, n) + bias.reshape(groups, n)
    if gelu:
        y = 0.5 * y * (1 + erf(y / math.sqrt(2)))
    width = groups * n // splits
    outs = [part.reshape(*q.shape[:-1], width) for part in np.split(y, splits, axis=-1)]
    if heads:
        outs = [o.reshape(*q.shape[:-1], heads, width // heads).swapaxes(-2, -3) for o in outs]
    if residual is not None:
        outs = [o + residual for o in outs]
    return outs


CASES = [  # groups, K, N (per group, all splits), heads, gelu, splits, residual, x shape
    (4, 96, 288, 12, 0, 3, False, (1, 128)),   # SqueezeBERT's Q | K | V, head-major
    (4, 96, 384, 0, 1, 1, False, (1, 37)),     # FFN in, GELU, rows not a multiple of 8
    (4, 384, 96, 0, 0, 1, True, (2, 19)),      # FFN out with the skip connection, batch 2
    (1, 64, 48, 1, 0, 3, False, (3, 5)),       # dense, one 16-wide head, a 48-column tile spanning Q, K and V
    (2, 8, 32, 0, 1, 1, True, (1, 1)),         # one token
    (4, 16, 16, 0, 0, 1, False, (7,)),         # 2-D input
    (4, 16, 16, 0, 0, 1, False, (1, 0)),       # no tokens
]


PATHS = ["portable", "avx2", "avx512-vnni", "avx512-bf16"]  # slowest first; bf16 changes attention only


@pytest.fixture(params=PATHS)
def code_path(request, monkeypatch):
    if PATHS.index(request.param) > PATHS.index(native.kernel_path()):
        pytest.skip(f"this CPU has no {request.param}")
    monkeypatch.setenv("SQB_NATIVE_PATH", request.param)
    assert native.kernel_path() == request.param
    return request.param


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:3])) + f"-h{c[3]}g{c[4]}s{c[5]}r{int(c[6])}")
def test_kernel_matches_reference(case, code_path):
    groups, k, n, heads, gelu, splits, with_residual, rows = case
    rng = np.random.default_rng(k * n + len(rows))
    weight = rng.integers(-127, 128, (groups, k, n), dtype=np.int8)
    scale = (rng.random(groups * n) * 0.004 + 0.001).astype(np.float32)
    bias = rng.standard_normal(groups * n).astype(np.float32)
    x = (rng.standard_normal((*rows, groups * k)) * 2).astype(np.float32)
    residual = rng.standard_normal((*rows, groups * n // splits)).astype(np.float32) if with_residual else None
    session = ort.InferenceSession(op_model(weight, scale, bias, heads, gelu, splits, with_residual, rank=x.ndim),
                                   session_options(2), providers=["CPUExecutionProvider"])
    feeds = {"X": x, **({"R": residual} if with_residual else {})}
    *got, q, step, zero = session.run(None, feeds)
    assert q.shape == x.shape and step.shape == zero.shape == (*rows, 1)
    want = reference(q, step.astype(np.float64), zero.astype(np.float64), weight, scale, bias, heads, gelu, splits,
                     residual)
    assert len(got) == splits
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-4 * max(1.0, float(np.abs(w).max(initial=0))))


def test_packing_round_trips():
    weight = np.random.default_rng(0).integers(-127, 128, (3, 8, 32), dtype=np.int8)
    packed = pack_groups(weight)
    assert packed.shape == (3, 2, 2, 16, 4)
    assert packed[1, 1, 0, 5, 2] == weight[1, 2, 16 + 5]  # group 1, row 4*0 + 2, column 16*1 + 5
    np.testing.assert_array_equal(unpack_groups(packed), weight)


def test_bad_shapes_are_refused_with_a_message():
    weight = np.ones((4, 16, 32), np.int8)
    model = op_model(weight, np.ones(128, np.float32), np.zeros(128, np.float32), heads=3)  # 128 / 3 heads
    session = ort.InferenceSession(model, session_options(1), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="head size must be a multiple of 16"):
        session.run(None, {"X": np.ones((1, 4, 64), np.float32)})


def test_a_bundle_that_needs_the_kernel_says_so_when_it_is_not_built(tiny_bundles, monkeypatch):
    model = tiny_bundles[("squeezebert", "sentiment")] / "model.onnx"
    monkeypatch.setattr(native, "library", lambda: None)
    with pytest.raises(InferenceError, match="not built"):
        OnnxSession(model)


def test_kernel_path_names_this_cpus_path():
    assert native.kernel_path() in PATHS


def attention_model(scale):
    names = ["Q", "K", "V", "M"]
    graph = helper.make_graph(
        [helper.make_node(native.ATTENTION_OP, names, ["Y"], domain=native.DOMAIN, scale=scale)], "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    return opset_model(graph)


@pytest.mark.parametrize("batch, heads, seq, head_size", [(1, 12, 128, 32), (2, 3, 37, 64), (1, 2, 1, 16),
                                                          (3, 1, 19, 8)])
def test_attention_matches_reference(batch, heads, seq, head_size, code_path):
    rng = np.random.default_rng(seq)
    q, k, v = (rng.standard_normal((batch, heads, seq, head_size)).astype(np.float32) * 2 for _ in range(3))
    keep = np.ones((batch, seq), np.float32)
    keep[-1, seq // 2 + 1:] = 0  # padding in the last row of the batch
    mask = ((1 - keep) * -10000.0).reshape(batch, 1, 1, seq)
    scale = 1 / math.sqrt(head_size)
    session = ort.InferenceSession(attention_model(scale), session_options(2), providers=["CPUExecutionProvider"])
    got = session.run(None, {"Q": q, "K": k, "V": v, "M": mask})[0]
    scores = np.einsum("bhid,bhjd->bhij", q.astype(np.float64), k) * scale + mask
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    want = np.einsum("bhij,bhjd->bihd", weights, v).reshape(batch, seq, heads * head_size)
    if code_path == "avx512-bf16" and head_size in (32, 64):  # Q, K, V and the weights rounded to 8 bits
        error = np.abs(got - want)
        assert error.max() < 0.15 and error.mean() < 0.01, (error.max(), error.mean())
    else:
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("queries", [1, 3])
def test_attention_for_the_first_query_rows_equals_those_rows_of_the_whole(queries, code_path):
    """Q with fewer rows than K and V: the first tokens' context alone, bit for bit what the whole op gives them
    (engine.build.fuse runs a classifier's last layer on [CLS] alone on the strength of it)."""
    batch, heads, seq, head_size = 2, 4, 45, 32
    rng = np.random.default_rng(queries)
    q, k, v = (rng.standard_normal((batch, heads, seq, head_size)).astype(np.float32) * 2 for _ in range(3))
    mask = np.zeros((batch, 1, 1, seq), np.float32)
    mask[1, ..., 30:] = -10000.0
    session = ort.InferenceSession(attention_model(0.125), session_options(2), providers=["CPUExecutionProvider"])
    whole = session.run(None, {"Q": q, "K": k, "V": v, "M": mask})[0]
    first = session.run(None, {"Q": np.ascontiguousarray(q[:, :, :queries]), "K": k, "V": v, "M": mask})[0]
    assert first.shape == (batch, queries, heads * head_size)
    np.testing.assert_array_equal(first, whole[:, :queries])
    with pytest.raises(Exception, match="fewer rows"):
        session.run(None, {"Q": np.concatenate([q, q], axis=2), "K": k, "V": v, "M": mask})


def rows_model(layer_norm: bool, epsilon=1e-12, normalised_output=True):
    inputs = ["X", "gamma", "beta"] if layer_norm else ["X"]
    outputs = ["q", "scale", "zero"] + (["Y"] if layer_norm and normalised_output else [])
    kinds = [TensorProto.UINT8, TensorProto.FLOAT, TensorProto.UINT8, TensorProto.FLOAT]
    graph = helper.make_graph(
        [helper.make_node(native.QUANTIZE_OP, inputs, outputs, domain=native.DOMAIN, epsilon=epsilon)], "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in inputs],
        [helper.make_tensor_value_info(n, kind, None) for n, kind in zip(outputs, kinds)])
    return opset_model(graph)


@pytest.mark.parametrize("layer_norm", [False, True], ids=["quantise", "layernorm-quantise"])
@pytest.mark.parametrize("shape", [(1, 128, 384), (2, 37, 1536), (5, 16), (1, 0, 64)])
def test_quantize_rows_matches_reference(shape, layer_norm, code_path):
    rng = np.random.default_rng(shape[-2])
    x = (rng.standard_normal(shape) * 3 + 0.5).astype(np.float32)
    if x.size:
        x[..., 0, :] = np.abs(x[..., 0, :])  # an all-positive row: zero point 0
        x[..., -1, :] = 0.0                   # an all-zero row
        x[..., 1, :] *= 1e-3                  # variance near epsilon: the LayerNorm must use the attribute's
    gamma = (rng.random(shape[-1]) + 0.5).astype(np.float32)
    beta = rng.standard_normal(shape[-1]).astype(np.float32)
    session = ort.InferenceSession(rows_model(layer_norm, epsilon=1e-5), session_options(2),
                                   providers=["CPUExecutionProvider"])
    feeds = {"X": x, **({"gamma": gamma, "beta": beta} if layer_norm else {})}
    q, step, zero, *normalised = session.run(None, feeds)
    y = x.astype(np.float64)
    if layer_norm:
        y = (y - y.mean(-1, keepdims=True)) / np.sqrt(y.var(-1, keepdims=True) + 1e-5) * gamma + beta
        np.testing.assert_allclose(normalised[0], y, rtol=1e-5, atol=1e-5)
    want_q, want_step, want_zero = quantized_rows(y)
    assert q.dtype == zero.dtype == np.uint8 and q.shape == shape and step.shape == (*shape[:-1], 1)
    np.testing.assert_allclose(step, want_step, rtol=1e-5)
    np.testing.assert_array_equal(zero, want_zero)
    assert np.abs(q.astype(int) - want_q).max(initial=0) <= 1  # rounding y / step at a tie may go either way
    assert (q != want_q).mean() < 1e-3 if q.size else True
    if x.size and not layer_norm:
        assert zero[..., 0, 0].max() == 0 and (q[..., -1, :] == zero[..., -1, :]).all()


def test_quantize_rows_refuses_a_width_the_kernel_cannot_take():
    session = ort.InferenceSession(rows_model(False), session_options(1), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="multiple of 16"):
        session.run(None, {"X": np.ones((2, 20), np.float32)})


def test_quantize_rows_needs_the_layernorm_output_it_computes():
    session = ort.InferenceSession(rows_model(True, normalised_output=False), session_options(1),
                                   providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="LayerNorm needs its output"):
        session.run(None, {"X": np.ones((2, 16), np.float32), "gamma": np.ones(16, np.float32),
                           "beta": np.zeros(16, np.float32)})
