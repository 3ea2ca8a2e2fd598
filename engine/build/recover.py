"""Rebuild a Hugging Face checkpoint from a bundle: the inverse of export, with int8 weights dequantised.

  python -m engine.build.recover assets/models/bert-qa --out runs/bert-qa/best

Training runs live in git-ignored runs/; when a run's checkpoint is gone, the shipped bundle still holds every
weight (int8 ones as scale * (q - zero_point)), so a teacher or a student initialisation can be recovered from it
instead of retraining. A recovered int8 model scores like the int8 bundle, not like the fp32 model it came from.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import torch
import transformers
from onnx import numpy_helper

from engine.build.export import unpack_groups
from engine.build.squeeze import PAPER_GROUPS, squeezebert_config


def onnx_weights(model_path: Path) -> dict[str, np.ndarray]:
    """Initialisers by their export name, int8 ones dequantised (scale and zero point per tensor or per column;
    a GroupedQGemm projection's packed weights as "<name>.grouped", [G, K, N], with its "<name>.bias")."""
    raw = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(model_path)).graph.initializer}
    weights = {}
    packed = {name[: -len(".packed")] for name in raw if name.endswith(".packed")}
    for name, value in raw.items():
        base, _, field = name.rpartition(".")
        if base in packed:
            if field == "packed":
                groups, columns = value.shape[0], value.shape[1] * 16
                scale = raw[base + ".scale"].reshape(groups, 1, columns)
                weights[base + ".grouped"] = unpack_groups(value).astype(np.float32) * scale
            elif field == "bias":
                weights[name] = value.astype(np.float32)
        elif name.endswith("_quantized"):
            base = name[: -len("_quantized")]
            zero = raw[base + "_zero_point"].astype(np.float32)
            weights[base] = (value.astype(np.float32) - zero) * raw[base + "_scale"].astype(np.float32)
        elif not name.endswith(("_scale", "_zero_point")):
            weights[name] = value.astype(np.float32)
    return weights


def model_config(manifest: dict, w: dict[str, np.ndarray]):
    c = manifest["config"]
    labels = manifest["labels"]
    kwargs = {"num_labels": len(labels), "id2label": dict(enumerate(labels))} if labels else {}
    bert = transformers.BertConfig(
        vocab_size=c["vocab_size"], hidden_size=c["hidden_size"], num_hidden_layers=c["num_hidden_layers"],
        num_attention_heads=c["num_attention_heads"], intermediate_size=c["intermediate_size"],
        max_position_embeddings=w["position"].shape[0], type_vocab_size=w["token_type"].shape[0], **kwargs,
    )
    if manifest["architecture"] == "bert":
        return bert
    config = squeezebert_config(bert, groups=c["q_groups"])
    for key in PAPER_GROUPS:
        setattr(config, key, c[key])
    return config


def _linear(w, name):
    """An export MatMul weight [in, out] (one block) back to a torch Linear weight [out, in]."""
    return w[name + ".weights.0"].T


def _grouped(per_group: np.ndarray) -> np.ndarray:
    """[G, in/G, out/G] per-group MatMul weights back to a grouped Conv1d weight [out, in/G, 1]."""
    return np.concatenate([block.T for block in per_group], 0)[..., None]


def native_projections(w, p) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """A NativeLayer's six projections as (per-group weights [G, in/G, out/G], bias), or None for another layout.
    Q, K and V share one GroupedQGemm: each group's columns are Q | K | V."""
    if p + "qkv.grouped" not in w:
        return None
    qkv, qkv_bias = w[p + "qkv.grouped"], w[p + "qkv.bias"]
    groups = qkv.shape[0]
    split = np.split(qkv, 3, axis=2)
    split_bias = np.split(qkv_bias.reshape(groups, -1), 3, axis=1)
    projections = {name: (weight, bias.reshape(-1)) for name, weight, bias in zip("qkv", split, split_bias)}
    for name in ("attn_out", "inter", "out"):
        projections[name] = (w[p + name + ".grouped"], w[p + name + ".bias"])
    return projections


def bert_layer(w, i) -> dict[str, np.ndarray]:
    p, s = f"layers.{i}.", f"bert.encoder.layer.{i}."
    out = {}
    native = native_projections(w, p)
    for src, dst in (("q", "attention.self.query"), ("k", "attention.self.key"), ("v", "attention.self.value"),
                     ("attn_out", "attention.output.dense"), ("inter", "intermediate.dense"), ("out", "output.dense")):
        if native:
            out[s + dst + ".weight"], out[s + dst + ".bias"] = native[src][0][0].T, native[src][1]
            continue
        out[s + dst + ".weight"] = _linear(w, p + src)
        out[s + dst + ".bias"] = w[p + src + ".bias"]
    for src, dst in (("ln1", "attention.output.LayerNorm"), ("ln2", "output.LayerNorm")):
        out[s + dst + ".weight"], out[s + dst + ".bias"] = w[p + src + ".0"], w[p + src + ".1"]
    return out


def squeezebert_layer(w, i, config) -> dict[str, np.ndarray]:
    """The int8 export (NativeLayer) keeps every projection as it is. The fp32 one (GroupedExportLayer) moves Q's and
    V's biases and drops K's, which softmax ignores: K's comes back as zeros, which computes the same function."""
    p, s = f"layers.{i}.", f"transformer.encoder.layers.{i}."
    out = {}
    native = native_projections(w, p)
    if native:
        for src, dst in (("q", "attention.query"), ("k", "attention.key"), ("v", "attention.value"),
                         ("attn_out", "post_attention.conv1d"), ("inter", "intermediate.conv1d"),
                         ("out", "output.conv1d")):
            out[s + dst + ".weight"], out[s + dst + ".bias"] = _grouped(native[src][0]), native[src][1]
    elif p + "wq" not in w:
        raise ValueError("only the paper's grouping (one group count for q, k, v and the FFN) can be recovered")
    else:
        out.update(grouped_export_layer(w, p, s, config))
    for src, dst in (("ln1", "post_attention.layernorm"), ("ln2", "output.layernorm")):
        out[s + dst + ".weight"], out[s + dst + ".bias"] = w[p + src + ".0"], w[p + src + ".1"]
    return out


def grouped_export_layer(w, p, s, config) -> dict[str, np.ndarray]:
    """GroupedExportLayer's projections (the fp32 bundles' layout)."""
    out = {}
    groups, hidden = config.q_groups, config.hidden_size
    for src, name in (("wq", "query"), ("wk", "key"), ("wv", "value")):
        per_head = w[p + src]  # [G, heads/G, in/G, d]
        out[s + f"attention.{name}.weight"] = _grouped(per_head.transpose(0, 2, 1, 3).reshape(groups, hidden // groups, -1))
    d = hidden // config.num_attention_heads
    out[s + "attention.query.bias"] = w[p + "q_bias"].reshape(-1) * np.float32(np.sqrt(d))
    out[s + "attention.key.bias"] = np.zeros(hidden, np.float32)
    out[s + "attention.value.bias"] = w[p + "v_bias"]
    out[s + "post_attention.conv1d.weight"] = _linear(w, p + "attn_out")[..., None]
    out[s + "post_attention.conv1d.bias"] = w[p + "attn_out.bias"]
    out[s + "intermediate.conv1d.weight"] = _grouped(w[p + "inter"])
    out[s + "intermediate.conv1d.bias"] = w[p + "inter_bias"].reshape(-1)
    out[s + "output.conv1d.weight"] = _grouped(w[p + "out"])
    out[s + "output.conv1d.bias"] = w[p + "out_bias"]
    return out


def state_dict(manifest: dict, w: dict[str, np.ndarray], config) -> dict[str, np.ndarray]:
    squeeze = manifest["architecture"] == "squeezebert"
    base = "transformer." if squeeze else "bert."
    sd = {
        base + "embeddings.word_embeddings.weight": w["word"],
        base + "embeddings.position_embeddings.weight": w["position"],
        base + "embeddings.token_type_embeddings.weight": w["token_type"],
        base + "embeddings.LayerNorm.weight": w["emb_ln.0"],
        base + "embeddings.LayerNorm.bias": w["emb_ln.1"],
    }
    for i in range(config.num_hidden_layers):
        sd.update(squeezebert_layer(w, i, config) if squeeze else bert_layer(w, i))
    head = {"sentiment": "classifier", "entities": "classifier", "qa": "qa_outputs"}[manifest["task"]]
    sd[head + ".weight"], sd[head + ".bias"] = _linear(w, "head"), w["head.bias"]
    if manifest["task"] == "sentiment":
        sd[base + "pooler.dense.weight"], sd[base + "pooler.dense.bias"] = _linear(w, "pooler"), w["pooler.bias"]
    return sd


def recover_checkpoint(bundle: str | Path, out: str | Path) -> Path:
    """Write a transformers checkpoint (config, weights, tokenizer.json) equivalent to the bundle's model."""
    bundle, out = Path(bundle), Path(out)
    manifest = json.loads((bundle / "manifest.json").read_text())
    weights = onnx_weights(bundle / "model.onnx")
    config = model_config(manifest, weights)
    config.architectures = [manifest["head"]]
    model = getattr(transformers, manifest["head"])(config)
    try:
        sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state_dict(manifest, weights, config).items()}
    except KeyError as exc:
        # the ONNX exporter stores identical tensors once (an untrained model's zero biases, say)
        raise ValueError(f"{bundle}: weight {exc} is not in the graph under its export name") from None
    missing, unexpected = model.load_state_dict(sd, strict=False)
    # position_ids are buffers; SqueezeBERT token/QA heads carry a pooler that the export drops as unused
    missing = [m for m in missing if not m.endswith("position_ids") and ".pooler." not in "." + m]
    if missing or unexpected:
        raise ValueError(f"{bundle}: weight mapping incomplete: missing {missing}, unexpected {unexpected}")
    model.save_pretrained(out)
    (out / "tokenizer.json").write_bytes((bundle / "tokenizer.json").read_bytes())
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="bundle folder (manifest.json, model.onnx, tokenizer.json)")
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    args = p.parse_args(argv)
    try:
        print(recover_checkpoint(args.bundle, args.out))
    except (ValueError, KeyError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
