import json

import numpy as np
import pytest

from conftest import TASK_HEADS, make_checkpoint
from engine.build.export import build_bundle
from engine.bundle import CLS_ONLY_SCHEME, load_bundle
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


def test_int8_graph_uses_integer_kernels_not_conv(tiny_bundles):
    import onnx

    for architecture in ("squeezebert", "bert"):
        graph = onnx.load(str(tiny_bundles[(architecture, "sentiment")] / "model.onnx")).graph
        ops = {n.op_type for n in graph.node}
        assert "Conv" not in ops and "ConvInteger" not in ops
        assert "GroupedQGemm" in ops  # the encoder's projections
        assert ops & {"MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}  # the heads'


def test_int8_weights_get_one_scale_per_group_and_column(tiny_bundles):
    import onnx
    from onnx import numpy_helper

    from engine.build.export import unpack_groups

    for architecture, groups in (("bert", 1), ("squeezebert", 4)):
        bundle = tiny_bundles[(architecture, "qa")]
        graph = onnx.load(str(bundle / "model.onnx")).graph
        values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        kernels = [n for n in graph.node if n.op_type == "GroupedQGemm"]
        assert len(kernels) == 4 * 2  # Q|K|V, attention output, FFN in, FFN out; two layers
        for node in kernels:
            packed, scale, colsum = (values[name] for name in node.input[3:6])
            weight = unpack_groups(packed).astype(np.int32)  # [G, K, N]
            grouped = node.name.split("/")[-2] != "attn_out"  # the attention output projection is dense
            assert weight.shape[0] == (groups if grouped else 1), node.name
            assert scale.shape == colsum.shape == (weight.shape[0] * weight.shape[2],)
            assert (np.abs(weight).max(axis=1) == 127).all(), node.name  # each group's column uses its full range
            np.testing.assert_array_equal(colsum, weight.sum(axis=1).reshape(-1))
        heads = [n.input[1] for n in graph.node if n.op_type == "MatMulInteger"]
        assert heads and all(values[name.replace("_quantized", "_scale")].size == values[name].shape[-1] for name in heads)
        scheme = json.loads((bundle / "manifest.json").read_text())["onnx"]["onnxruntime_quantization"]
        assert "per-column" in scheme and "GroupedQGemm" in scheme


@pytest.mark.parametrize("architecture", ["squeezebert", "bert"])
def test_int8_layers_are_native_kernels_with_no_layout_norm_or_bias_ops_around_them(tiny_bundles, architecture):
    import collections

    import onnx
    from onnx import helper

    graph = onnx.load(str(tiny_bundles[(architecture, "sentiment")] / "model.onnx")).graph
    ops = collections.Counter(n.op_type for n in graph.node)
    layers = 2
    assert ops["GroupedQGemm"] == 4 * layers
    assert ops["QuantizeRows"] == 4 * layers  # Q, K and V share one
    assert ops["DynamicQuantizeLinear"] == 2  # the pooler's and the classifier's, ORT's quantiser
    assert ops["MaskedAttention"] == layers
    # QuantizeRows applies the embeddings' LayerNorm and both of every layer's but the last layer's second, which
    # the head reads
    assert ops["LayerNormalization"] == 1
    norms = [n for n in graph.node if n.op_type == "QuantizeRows" and len(n.input) == 3]
    assert len(norms) == 2 * layers and all(len(n.output) == 4 for n in norms)
    # Q, K and V come out of their kernel head-major, the context out of attention token-major; the FFN-in kernel
    # applies GELU and splits Q | K | V
    assert not ops["Transpose"] and not ops["Softmax"] and not ops["Erf"] and not ops["Split"]
    kernels = {n.name.split("/")[-2]: n for n in graph.node if n.op_type == "GroupedQGemm" and "layers.0" in n.name}
    attributes = {name: {a.name: helper.get_attribute_value(a) for a in node.attribute} for name, node in kernels.items()}
    assert attributes["qkv"]["splits"] == 3 and attributes["qkv"]["heads"] == 4 and len(kernels["qkv"].output) == 3
    assert attributes["inter"]["gelu"] == 1
    assert len(kernels["attn_out"].input) == len(kernels["out"].input) == 8  # with the skip connection
    # no bias or residual Add over a projection's output is left: every Add is the mask's, the embeddings' or a head's
    projected = {o for node in kernels.values() for o in node.output}
    assert not [n for n in graph.node if n.op_type == "Add" and set(n.input) & projected]


def test_squeezebert_that_does_not_fit_the_kernel_gets_batched_matmuls_per_group_and_column(tmp_path, tiny_tokenizer_dir):
    """8 heads of 8: too narrow for the kernel's 16-column blocks, so the export falls back to ORT's batched int8
    MatMuls, re-quantised with one scale per group and output column."""
    import onnx
    from onnx import numpy_helper

    checkpoint = make_checkpoint(tmp_path / "ckpt", "squeezebert", "qa", tiny_tokenizer_dir, heads=8)
    manifest = build_bundle(checkpoint, tmp_path / "bundle", max_length=96)
    graph = onnx.load(str(tmp_path / "bundle" / "model.onnx")).graph
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    assert not [n for n in graph.node if n.op_type == "GroupedQGemm"]
    grouped = [n.input[1] for n in graph.node if n.op_type == "MatMulInteger" and values[n.input[1]].ndim >= 3]
    assert grouped
    for name in grouped:
        weight, scale = values[name], values[name.replace("_quantized", "_scale")]
        assert scale.shape == weight.shape[:-2] + (1, weight.shape[-1]), name
        assert (np.abs(weight.astype(np.int32)).max(axis=-2) == 127).all(), name
        assert not values[name.replace("_quantized", "_zero_point")].any()
    assert "per group and column" in manifest["onnx"]["onnxruntime_quantization"]
    assert manifest["parity"]["int8"]["argmax_agreement"] > 0.8


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


def quantised_native_export(folder, tokenizer_dir, architecture, task):
    """A tiny checkpoint's int8 graph as ORT's quantiser leaves it, before its embeddings are fused."""
    from engine.build.export import export_onnx, load_checkpoint, quantize_int8

    model = load_checkpoint(make_checkpoint(folder / "ckpt", architecture, task, tokenizer_dir))
    native_graph, int8 = folder / "native.onnx", folder / "int8.onnx"
    assert export_onnx(model, native_graph, native_int8=True)
    quantize_int8(native_graph, int8)
    return int8


@pytest.mark.parametrize("architecture, task", [("squeezebert", "qa"), ("bert", "sentiment")])
def test_fused_embeddings_give_the_replaced_graphs_outputs_bit_for_bit(tmp_path, tiny_tokenizer_dir, monkeypatch,
                                                                      architecture, task):
    import onnx

    from engine import native
    from engine.build.export import sample_batch
    from engine.build.fuse import fuse_embeddings

    path = quantised_native_export(tmp_path, tiny_tokenizer_dir, architecture, task)
    original, model = onnx.load(str(path)), onnx.load(str(path))
    assert fuse_embeddings(model)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count(native.EMBEDDINGS_OP) == 1 and "DequantizeLinear" not in ops and "Range" not in ops
    assert len(ops) <= len(original.graph.node) - 20
    assert not fuse_embeddings(model)  # nothing left to fuse
    # the op's own outputs too (the embeddings' sum and the mask), which the first quantisation would mostly hide
    embedded = next(n for n in model.graph.node if n.op_type == native.EMBEDDINGS_OP).output
    for m in (original, model):
        m.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in embedded)
    path, fused = tmp_path / "original.onnx", tmp_path / "fused.onnx"
    onnx.save(original, str(path))
    onnx.save(model, str(fused))
    vocab = model.graph.initializer[[t.name for t in model.graph.initializer].index("word_quantized")].dims[0]
    ids, mask, types = (t.numpy() for t in sample_batch(vocab, seed=5, batch=3, seq=40))
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    for code_path in ("portable", native.kernel_path()):  # plain C, and this CPU's vector path
        monkeypatch.setenv("SQB_NATIVE_PATH", code_path)
        want, got = OnnxSession(path).run(feeds), OnnxSession(fused).run(feeds)
        assert set(embedded) <= want.keys() == got.keys()
        assert all(np.array_equal(want[k], got[k]) for k in want), code_path


@pytest.mark.parametrize("architecture", ["squeezebert", "bert"])
def test_a_sentence_classifiers_last_layer_on_cls_alone_gives_the_same_logits_bit_for_bit(
        tmp_path, tiny_tokenizer_dir, monkeypatch, architecture):
    import onnx

    from engine import native
    from engine.build.export import sample_batch
    from engine.build.fuse import first_row_only, fuse_embeddings

    path = quantised_native_export(tmp_path, tiny_tokenizer_dir, architecture, "sentiment")
    whole = onnx.load(str(path))
    assert fuse_embeddings(whole)
    pruned = onnx.load_from_string(whole.SerializeToString())
    assert first_row_only(pruned)
    assert not first_row_only(pruned)  # rewritten once only
    nodes = list(pruned.graph.node)
    last = [n for n in nodes if n.op_type == native.ATTENTION_OP][-1]
    producer = {name: n for n in nodes for name in n.output}
    assert producer[last.input[0]].op_type == "Slice"  # the query: [CLS]'s row
    after = nodes[nodes.index(last) + 1:]
    gemms = [n for n in after if n.op_type == native.OP]
    assert len(gemms) == 3 and producer[gemms[0].input[7]].op_type == "Slice"  # attn_out's skip connection
    paths = {"whole": tmp_path / "whole.onnx", "pruned": tmp_path / "pruned.onnx"}
    onnx.save(whole, str(paths["whole"]))
    onnx.save(pruned, str(paths["pruned"]))
    vocab = next(t for t in whole.graph.initializer if t.name == "word_quantized").dims[0]
    for seed, (batch, seq) in enumerate([(3, 40), (1, 1), (2, 64)]):  # padding in every batch of several rows
        ids, mask, types = (t.numpy() for t in sample_batch(vocab, seed=seed, batch=batch, seq=seq))
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        for code_path in ("portable", native.kernel_path()):
            monkeypatch.setenv("SQB_NATIVE_PATH", code_path)
            want, got = (OnnxSession(paths[k]).run(feeds)["logits"] for k in ("whole", "pruned"))
            assert want.shape == (batch, 2)
            np.testing.assert_array_equal(got, want, err_msg=f"{code_path} batch {batch} seq {seq}")


def test_exports_record_which_bundles_run_the_last_layer_on_cls_alone(tiny_bundles):
    for (architecture, task), folder in tiny_bundles.items():  # build_bundle applies the rewrite where it fits
        assert load_bundle(folder, task).last_layer_on_cls_only == (task == "sentiment"), (architecture, task)


@pytest.mark.parametrize("task", ["entities", "qa"])
def test_token_heads_keep_every_row_of_the_last_layer(tmp_path, tiny_tokenizer_dir, task):
    import onnx

    from engine.build.fuse import first_row_only

    model = onnx.load(str(quantised_native_export(tmp_path, tiny_tokenizer_dir, "squeezebert", task)))
    before = model.SerializeToString()
    assert not first_row_only(model)
    assert model.SerializeToString() == before


def test_fused_embeddings_refuse_a_token_id_outside_the_vocabulary(tiny_bundles):
    import onnx

    from engine.errors import InferenceError

    path = tiny_bundles[("squeezebert", "sentiment")] / "model.onnx"
    assert "Embeddings" in {n.op_type for n in onnx.load(str(path)).graph.node}  # build_bundle fuses
    session = OnnxSession(path)
    ones = np.ones((1, 3), np.int64)
    with pytest.raises(InferenceError, match="outside the vocabulary"):
        session.run({"input_ids": np.array([[1, 10**6, 2]]), "attention_mask": ones, "token_type_ids": 0 * ones})
    with pytest.raises(InferenceError, match="outside the token type table"):
        session.run({"input_ids": ones, "attention_mask": ones, "token_type_ids": 2 * ones})


@pytest.mark.parametrize("architecture, task", [("bert", "entities"), ("squeezebert", "sentiment")])
def test_bundles_exported_before_the_rewrites_are_rewritten_in_place(tmp_path, tiny_tokenizer_dir, tiny_bundles,
                                                                      architecture, task):
    import shutil

    from engine.build.fuse import REWRITES, fuse_bundle, scheme_suffix

    folder = tmp_path / "bundle"
    shutil.copytree(tiny_bundles[(architecture, task)], folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    scheme = manifest["onnx"]["onnxruntime_quantization"]
    for _, name in REWRITES:  # as exports before the rewrites wrote it
        scheme = scheme.replace(scheme_suffix([name]), "")
    manifest["onnx"]["onnxruntime_quantization"] = scheme
    (folder / "manifest.json").write_text(json.dumps(manifest))
    shutil.copyfile(quantised_native_export(tmp_path, tiny_tokenizer_dir, architecture, task), folder / "model.onnx")
    assert fuse_bundle(folder)
    bundle = load_bundle(folder, task)  # checks the model's sha256 against the manifest
    applied = ["embeddings and mask in Embeddings"] + ([CLS_ONLY_SCHEME] if task == "sentiment" else [])
    assert bundle.manifest["onnx"]["onnxruntime_quantization"] == scheme + scheme_suffix(applied)
    assert bundle.last_layer_on_cls_only == (task == "sentiment")
    assert not fuse_bundle(folder)
