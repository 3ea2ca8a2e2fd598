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
