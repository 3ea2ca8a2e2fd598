"""A checkpoint recovered from a bundle is the model that was exported (exactly for fp32, to int8 rounding else)."""
import numpy as np
import pytest
import torch
import transformers

from conftest import TASK_HEADS, make_checkpoint
from engine.build.export import build_bundle, sample_batch, torch_logits
from engine.build.recover import recover_checkpoint


def distinct_weights(folder):
    """Fresh random values in every tensor: the ONNX exporter would store an untrained model's equal biases once."""
    model = load(folder)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    model.save_pretrained(folder)
    return folder


def load(folder):
    config = transformers.AutoConfig.from_pretrained(folder)
    return getattr(transformers, config.architectures[0]).from_pretrained(folder).eval()


# SqueezeBERT with 1 head per group (4 heads) and 2 (8 heads), whose per-head weights interleave differently
@pytest.mark.parametrize("architecture, heads", [("squeezebert", 4), ("squeezebert", 8), ("bert", 4)])
@pytest.mark.parametrize("task", list(TASK_HEADS))
def test_fp32_bundle_recovers_the_exact_model(tmp_path, tiny_tokenizer_dir, architecture, heads, task):
    checkpoint = make_checkpoint(tmp_path / "ckpt", architecture, task, tiny_tokenizer_dir, seed=3, heads=heads)
    original = distinct_weights(checkpoint)
    build_bundle(original, tmp_path / "bundle", precision="fp32")
    recovered = load(recover_checkpoint(tmp_path / "bundle", tmp_path / "recovered"))
    original = load(original)
    assert type(recovered) is type(original)
    assert recovered.config.id2label == original.config.id2label
    ids, mask, types = sample_batch(original.config.vocab_size, seed=5)
    for want, got in zip(torch_logits(original, ids, mask, types), torch_logits(recovered, ids, mask, types)):
        np.testing.assert_allclose(got, want, atol=1e-5)


# SqueezeBERT's batched-MatMul export drops it (softmax ignores it); the fp32 test above checks the function without
# it. The GroupedQGemm export keeps it.
DROPPED_BIASES = ("attention.key.bias",)


# 4 heads of 16: GroupedQGemm kernels; SqueezeBERT with 8 heads of 8: ORT's batched int8 MatMuls
@pytest.mark.parametrize("architecture, heads", [("squeezebert", 4), ("squeezebert", 8), ("bert", 4)])
def test_int8_bundle_recovers_weights_within_one_quantisation_step(tmp_path, tiny_tokenizer_dir, architecture, heads):
    original = distinct_weights(make_checkpoint(tmp_path / "ckpt", architecture, "qa", tiny_tokenizer_dir, seed=4,
                                                heads=heads))
    manifest = build_bundle(original, tmp_path / "bundle", precision="int8")
    assert ("GroupedQGemm" in manifest["onnx"]["onnxruntime_quantization"]) == (heads == 4)
    dropped = DROPPED_BIASES if heads == 8 else ()
    recovered = load(recover_checkpoint(tmp_path / "bundle", tmp_path / "recovered")).state_dict()
    for name, want in load(original).state_dict().items():
        if ".pooler." in name or name.endswith("position_ids") or (dropped and name.endswith(dropped)):
            continue
        step = float(want.abs().max()) * 2 / 255  # a per-tensor step bounds the per-column ones too
        assert torch.max(torch.abs(recovered[name] - want)) <= step + 1e-6, name
