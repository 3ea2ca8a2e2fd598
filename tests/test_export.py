import json

import numpy as np
import pytest

from conftest import TASK_HEADS, make_checkpoint
from engine.build.export import build_bundle
from engine.bundle import load_bundle
from engine.session import OnnxSession


@pytest.mark.parametrize("architecture", ["squeezebert", "bert"])
@pytest.mark.parametrize("task", list(TASK_HEADS))
def test_tiny_checkpoints_export_quantise_and_match(tiny_bundles, architecture, task):
    bundle = load_bundle(tiny_bundles[(architecture, task)], task)
    m = bundle.manifest
    assert m["architecture"] == architecture and m["precision"] == "int8"
    assert m["parity"]["fp32"]["argmax_agreement"] == 1.0
    assert m["parity"]["fp32"]["max_abs_logit_diff"] < 1e-3
    assert m["parity"]["int8"]["n_compared"] > 0 and np.isfinite(m["parity"]["int8"]["max_abs_logit_diff"])
    assert m["parameters"] > 0 and set(m["files"]) == {"model.onnx", "tokenizer.json"}
    if architecture == "squeezebert":
        assert m["config"]["q_groups"] == 4 and m["config"]["post_attention_groups"] == 1
    # dynamic batch and sequence axes
    session = OnnxSession(bundle.model_file, threads=1)
    for batch, seq in ((1, 5), (3, 17)):
        ids = np.full((batch, seq), 7, dtype=np.int64)
        out = session.run({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)})
        first = next(iter(out.values()))
        assert first.shape[0] == batch
        if task != "sentiment":
            assert first.shape[1] == seq


def test_int8_graph_uses_integer_matmuls_not_conv(tiny_bundles):
    import onnx

    for architecture in ("squeezebert", "bert"):
        graph = onnx.load(str(tiny_bundles[(architecture, "sentiment")] / "model.onnx")).graph
        ops = {n.op_type for n in graph.node}
        assert "Conv" not in ops and "ConvInteger" not in ops
        assert ops & {"MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}


def test_bert_weights_get_per_column_scales_squeezebert_group_weights_per_group_and_column(tiny_bundles):
    import onnx
    from onnx import numpy_helper

    for architecture in ("bert", "squeezebert"):
        bundle = tiny_bundles[(architecture, "qa")]
        graph = onnx.load(str(bundle / "model.onnx")).graph
        values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        matmul_weights = [n.input[1] for n in graph.node if n.op_type == "MatMulInteger"]
        assert matmul_weights
        grouped = [name for name in matmul_weights if values[name].ndim >= 3]  # per group, or per group and head
        assert bool(grouped) == (architecture == "squeezebert")
        for name in matmul_weights:
            weight, scale = values[name], values[name.replace("_quantized", "_scale")]
            if architecture == "bert":
                assert scale.size == weight.shape[-1], name
            elif weight.ndim >= 3:
                assert scale.shape == weight.shape[:-2] + (1, weight.shape[-1]), name
                assert (np.abs(weight.astype(np.int32)).max(axis=-2) == 127).all(), name  # each column's full range
                assert not values[name.replace("_quantized", "_zero_point")].any()
            else:
                assert scale.size == 1, name
        scheme = json.loads((bundle / "manifest.json").read_text())["onnx"]["onnxruntime_quantization"]
        assert ("per-column" in scheme) == (architecture == "bert")
        assert ("per group and column" in scheme) == (architecture == "squeezebert")


def test_checkpoint_with_only_vocab_txt_gets_a_tokenizer(tmp_path, tiny_tokenizer_dir):
    ckpt = make_checkpoint(tmp_path / "ckpt", "squeezebert", "sentiment", tiny_tokenizer_dir)
    (ckpt / "tokenizer.json").unlink()
    (ckpt / "vocab.txt").write_bytes((tiny_tokenizer_dir / "vocab.txt").read_bytes())
    manifest = build_bundle(ckpt, tmp_path / "bundle", precision="fp32")
    assert manifest["precision"] == "fp32" and "int8" not in manifest["parity"]
    tokenizer = json.loads((tmp_path / "bundle" / "tokenizer.json").read_text())
    assert tokenizer["truncation"] is None and tokenizer["padding"] is None


def test_unsupported_checkpoint_is_refused(tmp_path):
    import transformers

    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    transformers.BertForMaskedLM(config).save_pretrained(tmp_path / "mlm")
    with pytest.raises(ValueError, match="BertForMaskedLM"):
        build_bundle(tmp_path / "mlm", tmp_path / "out")


def test_squeezebert_graph_quantises_each_input_once_and_keeps_one_per_group_bias(tiny_bundles):
    import collections

    import onnx

    graph = onnx.load(str(tiny_bundles[("squeezebert", "sentiment")] / "model.onnx")).graph
    ops = collections.Counter(n.op_type for n in graph.node)
    # per layer: Q, K, V, attention output, FFN in, FFN out; then pooler and classifier
    assert ops["MatMulInteger"] == 6 * 2 + 2
    assert ops["DynamicQuantizeLinear"] == 4 * 2 + 2  # Q, K and V share their input's
    assert ops["Split"] == 0
    # per layer: into groups, K^T, heads back to tokens, FFN into and out of groups; none to pick out the heads
    assert ops["Transpose"] == 5 * 2
    ranks = {t.name: len(t.dims) for t in graph.initializer}
    # the exporter stores equal tensors (an untrained model's zero biases) once, the others as Identity of it
    ranks.update({n.output[0]: ranks[n.input[0]] for n in graph.node if n.op_type == "Identity" and n.input[0] in ranks})
    per_group_bias_adds = [n for n in graph.node if n.op_type == "Add" and any(ranks.get(i, 0) >= 3 for i in n.input)]
    assert len(per_group_bias_adds) == 2  # per layer, the FFN input's, before GELU; Q's, K's and V's are moved


def randomise_biases(model, seed: int = 3) -> None:
    """Fresh checkpoints have zero biases and LayerNorm shifts, which would hide a slip in how the export lays
    them out (fused Q/K/V, per group)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


# SqueezeBERT with 1 and 2 heads per group (batched per group and head), and with heads that span groups (the
# plain layer); BERT
@pytest.mark.parametrize("architecture, heads", [("squeezebert", 4), ("squeezebert", 8), ("squeezebert", 2),
                                                 ("bert", 4)])
def test_export_matches_torch_on_large_logits(tmp_path, tiny_tokenizer_dir, architecture, heads):
    """With a wide initialisation the logits are large, so a layout slip cannot hide under the tolerance."""
    import torch
    import transformers

    from engine.build.export import export_onnx, parity
    from engine.build.squeeze import squeezebert_config

    torch.manual_seed(1)
    config = transformers.BertConfig(vocab_size=120, hidden_size=48, num_hidden_layers=2, num_attention_heads=heads,
                                     intermediate_size=96, initializer_range=0.4, num_labels=9)
    if architecture == "squeezebert":
        config = squeezebert_config(config, 4)
    prefix = "Bert" if architecture == "bert" else "SqueezeBert"
    model = getattr(transformers, prefix + "ForTokenClassification")(config).eval()
    randomise_biases(model)
    export_onnx(model, tmp_path / "m.onnx")
    with torch.no_grad():
        scale = float(model(input_ids=torch.randint(5, 120, (1, 16))).logits.abs().max())
    report = parity(model, tmp_path / "m.onnx")
    assert scale > 1.0
    assert report["argmax_agreement"] == 1.0 and report["max_abs_logit_diff"] < 1e-4 * max(scale, 1.0) * 10


@pytest.mark.parametrize("architecture", ["squeezebert", "bert"])
def test_keep_fp32_leaves_the_ffn_output_projections_unquantised(tmp_path, tiny_tokenizer_dir, architecture):
    import onnx

    checkpoint = make_checkpoint(tmp_path / "ckpt", architecture, "qa", tiny_tokenizer_dir)
    manifest = build_bundle(checkpoint, tmp_path / "bundle", max_length=96, keep_fp32=["ffn-output"])
    graph = onnx.load(str(tmp_path / "bundle" / "model.onnx")).graph
    initialisers = {t.name for t in graph.initializer}
    float_weights = [n.input[1] for n in graph.node if n.op_type == "MatMul" and n.input[1] in initialisers]
    int8_weights = [n.input[1] for n in graph.node if n.op_type == "MatMulInteger"]
    layers = manifest["config"]["num_hidden_layers"]
    assert sorted(float_weights) == sorted(
        f"layers.{i}.out" + ("" if architecture == "squeezebert" else ".weights.0") for i in range(layers))
    assert not any(".out" in name for name in int8_weights)
    for i in range(layers):  # the layer's other projections stay int8
        for projection in ("attn_out", "inter"):
            assert any(name.startswith(f"layers.{i}.{projection}") for name in int8_weights), (i, projection)
    assert f"kept fp32: ffn-output ({layers} MatMuls)" in manifest["onnx"]["onnxruntime_quantization"]
    assert manifest["parity"]["int8"]["argmax_agreement"] > 0.9
