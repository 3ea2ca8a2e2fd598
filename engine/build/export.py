"""Turn a local Hugging Face checkpoint (BertFor* or SqueezeBertFor*) into a verified int8 ONNX bundle.

  python -m engine.build.export CHECKPOINT_DIR --out assets/models/squeezebert-sentiment

The graph is not traced from the transformers module: both architectures are re-expressed in one small
sequence-major encoder whose grouped 1x1 convolutions become one MatMul per group. That keeps every projection a
MatMul with a constant weight, which ONNX Runtime quantises to its int8 MatMul kernels (grouped ConvInteger is a
slow path and has rejected signed weights), and it removes SqueezeBERT's NCW transposes. That is the fp32 graph.
The int8 graph's encoder layers are engine.native's ops instead (NativeLayer: every projection one GroupedQGemm,
attention one MaskedAttention, LayerNorms and activation quantisation QuantizeRows), for both architectures; ONNX
Runtime's quantiser does the embeddings and the head; then the quantised embeddings become one Embeddings op and a
sentence classifier's last layer runs on [CLS] alone after its keys and values (engine.build.fuse). Parity against
the original torch model is checked on every export and written to the manifest.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
import transformers
from onnx import numpy_helper
from tokenizers import Tokenizer
from torch import nn

from engine import native
from engine.build import fuse
from engine.bundle import KERNELS_SCHEME, sha256_of

TASK_OF_HEAD = {
    "ForSequenceClassification": "sentiment",
    "ForTokenClassification": "entities",
    "ForQuestionAnswering": "qa",
}
OUTPUTS = {"sentiment": ["logits"], "entities": ["logits"], "qa": ["start_logits", "end_logits"]}
DEFAULT_MAX_LENGTH = {"sentiment": 128, "entities": 128, "qa": 256}
OPSET = 17


def task_of(model) -> str:
    for suffix, task in TASK_OF_HEAD.items():
        if type(model).__name__.endswith(suffix):
            return task
    raise ValueError(f"{type(model).__name__} is not a supported head ({', '.join(TASK_OF_HEAD)})")


class GroupedLinear(nn.Module):
    """y = x W + b with W block-diagonal in `groups` blocks, one MatMul per block (groups 1: one plain MatMul)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, groups: int):
        super().__init__()
        out_features = weight.shape[0]
        self.groups = groups
        self.in_per_group = weight.shape[1]  # a grouped conv weight is [out, in/groups]
        per = out_features // groups
        self.weights = nn.ParameterList(
            [nn.Parameter(weight[g * per : (g + 1) * per].t().contiguous()) for g in range(groups)]
        )
        self.bias = nn.Parameter(bias.clone())

    def forward(self, x):
        if self.groups == 1:
            return torch.matmul(x, self.weights[0]) + self.bias
        parts = x.split(self.in_per_group, dim=-1)
        return torch.cat([torch.matmul(p, w) for p, w in zip(parts, self.weights)], dim=-1) + self.bias


class ExportLayer(nn.Module):
    def __init__(self, q, k, v, attn_out, ln1, inter, out, ln2, heads, eps):
        super().__init__()
        self.q, self.k, self.v, self.attn_out, self.inter, self.out = q, k, v, attn_out, inter, out
        self.ln1, self.ln2 = ln1, ln2
        self.heads, self.eps = heads, eps
        self.hidden = int(ln1[0].shape[0])  # a Python int: shapes must be static constants in the traced graph

    def forward(self, h, additive_mask):
        batch, seq = h.shape[0], h.shape[1]
        hidden = self.hidden
        d = hidden // self.heads
        q = self.q(h).view(batch, seq, self.heads, d).transpose(1, 2)
        k = self.k(h).view(batch, seq, self.heads, d).permute(0, 2, 3, 1)
        v = self.v(h).view(batch, seq, self.heads, d).transpose(1, 2)
        scores = torch.matmul(q, k) / math.sqrt(d) + additive_mask
        context = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(batch, seq, hidden)
        a = F.layer_norm(self.attn_out(context) + h, (hidden,), *self.ln1, eps=self.eps)
        i = self.inter(a)
        i = i * 0.5 * (1.0 + torch.erf(i / math.sqrt(2.0)))  # exact GELU, as BERT; ORT fuses it
        return F.layer_norm(self.out(i) + a, (hidden,), *self.ln2, eps=self.eps)


class GroupedExportLayer(nn.Module):
    """A SqueezeBERT layer with every grouped 1x1 conv as one batched MatMul over groups.

    Q, K and V are batched per group and head, [groups, heads/groups, in/groups, head size]: their outputs are
    already head-major, [batch, heads, tokens, head size], so the heads need no transpose (it cost 4% of SqueezeBERT
    int8's time at seq 128), and ONNX Runtime quantises their shared input once, as it does for BERT. The FFN stays
    in group-major layout [groups, tokens, channels] between its two grouped layers, whose blocks line up (group g
    of the first feeds group g of the second).

    ONNX Runtime's int8 MatMuls take only a 1-D bias, so a per-group bias is an Add of its own over the whole
    activation. Q's, K's and V's are moved exactly: K's adds a constant to each query's scores, which softmax
    drops; Q's becomes a per-key score term q_bias . k, one tiny MatMul joined to the mask; V's passes through the
    softmax (each row sums to 1) and is added to the context in token-major layout, where it is 1-D.
    Folding a bias on into the next projection shifts that projection's dynamically quantised int8 input: the FFN
    output's into ln1's shift cost the QA student 0.26 held-out F1 (63.67 -> 63.41); V's into attn_out's bias
    measured 63.72 -> 63.67, within noise, but its 1-D add is cheap, so both stay.
    """

    def __init__(self, q, k, v, attn_out, ln1, inter, out, ln2, heads, eps, groups):
        super().__init__()
        self.groups, self.heads, self.eps = groups, heads, eps
        self.hidden = int(ln1[0].shape[0])
        per_group = lambda w: torch.stack(list(w.weights))  # noqa: E731  [G, in/G, out/G]
        d, heads_per_group = self.hidden // heads, heads // groups
        # group g's output columns are heads g*hpg .. (g+1)*hpg-1, d each: split them out per head
        per_head = lambda w: per_group(w).view(groups, -1, heads_per_group, d)  # noqa: E731  [G, in/G, hpg, d]
        self.wq, self.wk, self.wv = (nn.Parameter(per_head(w).permute(0, 2, 1, 3).contiguous()) for w in (q, k, v))
        self.q_bias = nn.Parameter(q.bias.view(1, heads, 1, d) / math.sqrt(d))  # the bias moves: class docstring
        self.v_bias = nn.Parameter(v.bias.clone())
        self.attn_out, self.ln1, self.ln2 = attn_out, ln1, ln2
        self.inter, self.out = nn.Parameter(per_group(inter)), nn.Parameter(per_group(out))
        self.inter_bias = nn.Parameter(inter.bias.view(groups, 1, -1).clone())
        self.out_bias = nn.Parameter(out.bias.clone())

    def to_groups(self, h):
        """[B, S, C] -> [G, B*S, C/G]"""
        return h.reshape(-1, self.groups, self.hidden // self.groups).transpose(0, 1)

    def forward(self, h, additive_mask):
        batch, seq = h.shape[0], h.shape[1]
        g, hidden, heads = self.groups, self.hidden, self.heads
        d = hidden // heads
        x = h.view(batch, seq, g, hidden // g).transpose(1, 2).unsqueeze(2)  # [B, G, 1, S, C/G]
        q, k, v = (torch.matmul(x, w).reshape(batch, heads, seq, d) for w in (self.wq, self.wk, self.wv))
        k_t = k.transpose(-1, -2)
        scores = torch.matmul(q, k_t) / math.sqrt(d) + (torch.matmul(self.q_bias, k_t) + additive_mask)
        context = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(batch, seq, hidden) + self.v_bias
        a = F.layer_norm(self.attn_out(context) + h, (hidden,), *self.ln1, eps=self.eps)
        i = torch.matmul(self.to_groups(a), self.inter) + self.inter_bias  # [G, B*S, I/G]
        i = i * 0.5 * (1.0 + torch.erf(i / math.sqrt(2.0)))
        o = torch.matmul(i, self.out).transpose(0, 1).reshape(batch, seq, hidden) + self.out_bias
        return F.layer_norm(o + a, (hidden,), *self.ln2, eps=self.eps)


# ------------------------------------------------------------ int8 layers on engine.native's kernels (both models)
class QuantizeRows(torch.autograd.Function):
    """engine/native's QuantizeRows: each row (last axis) quantised to uint8 by DynamicQuantizeLinear's rule over its
    own range, with its scale and zero point ([..., 1]); given a LayerNorm's `norm` (weight, bias), the row is
    normalised first and the normalised rows come out last."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        y = F.layer_norm(x, (x.shape[-1],), weight, bias, eps=eps) if weight is not None else x
        low = torch.clamp(y.amin(-1, keepdim=True), max=0.0)
        high = torch.clamp(y.amax(-1, keepdim=True), min=0.0)
        scale = (high - low) / 255.0
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero row
        zero_point = torch.clamp(torch.round(-low / scale), 0, 255)
        quantized = torch.clamp(torch.round(y / scale) + zero_point, 0, 255)
        rows = quantized.to(torch.uint8), scale, zero_point.to(torch.uint8)
        return (*rows, y) if weight is not None else rows

    @staticmethod
    def symbolic(g, x, weight, bias, eps):
        if weight is None or weight.node().mustBeNone():
            return g.op(f"{native.DOMAIN}::{native.QUANTIZE_OP}", x, outputs=3)
        return g.op(f"{native.DOMAIN}::{native.QUANTIZE_OP}", x, weight, bias, epsilon_f=eps, outputs=4)


def quantize_rows(x, norm=None, eps: float = 1e-12):
    """QuantizeRows.apply, with `norm` (LayerNorm weight, bias) or None: (uint8, scale, zero point) or, with a norm,
    ((uint8, scale, zero point), normalised x)."""
    if norm is None:
        return QuantizeRows.apply(x, None, None, eps)
    *rows, y = QuantizeRows.apply(x, norm[0], norm[1], eps)
    return tuple(rows), y


class GroupedQGemm(torch.autograd.Function):
    """engine/native/grouped_qgemm.c's op: one int8 GEMM per group over token-major activations, dequantised,
    biased, activated (`gelu`) and added to `residual` (or None), written token-major ([..., G*N]) or head-major
    ([batch, heads, seq, d]) when `heads` is given; with `splits` 3, each group's columns are Q | K | V and come out
    as three tensors."""

    @staticmethod
    def forward(ctx, quantized, scale, zero_point, packed, column_scale, column_sum, bias, residual, heads, gelu, splits):
        groups, k, n = packed.shape[0], packed.shape[2] * 4, packed.shape[1] * 16
        weight = unpack_groups(packed).float()  # [G, K, N]
        a = ((quantized.float() - zero_point.float()) * scale).unflatten(-1, (groups, k))  # one scale a row
        y = torch.einsum("...gk,gkn->...gn", a, weight) * column_scale.view(groups, n) + bias.view(groups, n)
        if gelu:
            y = y * 0.5 * (1.0 + torch.erf(y / math.sqrt(2.0)))
        outputs = [part.flatten(-2) for part in y.unflatten(-1, (splits, -1)).unbind(-2)]  # each [..., G * N/splits]
        if heads:
            outputs = [o.unflatten(-1, (heads, -1)).transpose(1, 2) for o in outputs]
        if residual is not None:
            outputs = [o + residual for o in outputs]
        return tuple(outputs) if splits > 1 else outputs[0]

    @staticmethod
    def symbolic(g, quantized, scale, zero_point, packed, column_scale, column_sum, bias, residual, heads, gelu, splits):
        inputs = [quantized, scale, zero_point, packed, column_scale, column_sum, bias]
        if residual is not None and not residual.node().mustBeNone():
            inputs.append(residual)
        return g.op(f"{native.DOMAIN}::{native.OP}", *inputs, heads_i=heads, gelu_i=int(gelu), splits_i=splits,
                    outputs=splits)


class MaskedAttention(torch.autograd.Function):
    """engine/native's attention op: softmax(q k^T * scale + mask) v for head-major q, k, v [batch, heads, seq, d]
    and an additive mask [batch, 1, 1, seq], written token-major [batch, seq, heads * d]."""

    @staticmethod
    def forward(ctx, q, k, v, mask, scale):
        weights = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * scale + mask, dim=-1)
        return torch.matmul(weights, v).transpose(1, 2).flatten(2)

    @staticmethod
    def symbolic(g, q, k, v, mask, scale):
        return g.op(f"{native.DOMAIN}::{native.ATTENTION_OP}", q, k, v, mask, scale_f=scale)


def pack_groups(weight):
    """[G, K, N] -> [G, N/16, K/4, 16, 4], for torch tensors and numpy arrays: the blocks GroupedQGemm's kernel
    loads, 16 columns x 4 rows each."""
    groups, k, n = weight.shape
    order = (0, 3, 1, 4, 2)
    blocks = weight.reshape(groups, k // 4, 4, n // 16, 16)
    moved = blocks.transpose(order) if isinstance(weight, np.ndarray) else blocks.permute(order)
    return np.ascontiguousarray(moved) if isinstance(weight, np.ndarray) else moved.contiguous()


def unpack_groups(packed):
    """The inverse of pack_groups, for torch tensors and numpy arrays."""
    groups, column_blocks, row_quads = packed.shape[:3]
    order = (0, 2, 4, 1, 3)
    moved = packed.transpose(order) if isinstance(packed, np.ndarray) else packed.permute(order)
    return moved.reshape(groups, row_quads * 4, column_blocks * 16)


def fits_grouped_qgemm(k: int, n: int, head_size: int | None = None) -> bool:
    """The kernel's blocks: 4 input rows, 16 output columns, and whole blocks per head for a head-major output."""
    return k % 4 == 0 and n % 16 == 0 and (head_size is None or head_size % 16 == 0)


class QuantizedGroups(nn.Module):
    """Grouped projections for GroupedQGemm: int8 weights with one symmetric scale per group and output column
    (the scheme quantize_per_group_column gives ORT's batched MatMuls), packed, with their column sums. Given
    several projections of one input (Q, K and V), each group's columns are theirs side by side, for one call."""

    def __init__(self, *projections):
        super().__init__()
        self.splits = len(projections)
        groups = projections[0].groups
        per_group = torch.cat([torch.stack([p.detach() for p in w.weights]) for w in projections], dim=2)  # [G, K, N]
        bias = torch.cat([w.bias.detach().view(groups, -1) for w in projections], dim=1)
        scale = torch.clamp(per_group.abs().amax(dim=1, keepdim=True) / 127.0, min=1e-12)  # [G, 1, N]
        weight = torch.clamp(torch.round(per_group / scale), -127, 127).to(torch.int8)
        self.register_buffer("packed", pack_groups(weight))
        self.register_buffer("scale", scale.reshape(-1).float())
        self.register_buffer("colsum", weight.sum(dim=1, dtype=torch.int32).reshape(-1))
        self.register_buffer("bias", bias.reshape(-1).float().clone())

    def forward(self, quantized, heads: int = 0, gelu: bool = False, residual=None):
        return GroupedQGemm.apply(*quantized, self.packed, self.scale, self.colsum, self.bias, residual, heads, gelu,
                                  self.splits)


class NativeLayer(nn.Module):
    """An int8 encoder layer whose projections are GroupedQGemm ops: SqueezeBERT's grouped ones (4 groups) and
    BERT's and SqueezeBERT's dense ones (1 group) alike, so that both models run on the same kernel.

    The kernel reads token-major activations and writes Q, K and V head-major from one call, so no transpose into
    or out of groups or heads is left; it adds each projection's own bias, so none has to move
    (GroupedExportLayer); it applies the FFN's GELU as it writes the first FFN layer, and adds the skip connection
    as it writes the attention output and the second FFN layer. Attention itself is one MaskedAttention op, which
    writes the context token-major. Each projection's input is quantised by one QuantizeRows op, one scale per
    token, which also applies the LayerNorm before it (BERT's LayerNorms follow the skip connections)."""

    def __init__(self, q, k, v, attn_out, ln1, inter, out, ln2, heads, eps):
        super().__init__()
        self.heads, self.eps = heads, eps
        self.hidden = int(ln1[0].shape[0])
        self.qkv = QuantizedGroups(q, k, v)
        self.attn_out, self.inter, self.out = QuantizedGroups(attn_out), QuantizedGroups(inter), QuantizedGroups(out)
        self.ln1, self.ln2 = ln1, ln2

    @staticmethod
    def fits(parts, heads: int) -> bool:
        q, k, v, attn_out, _, inter, out, _ = parts
        head_size = q.bias.numel() // heads
        return q.groups == k.groups == v.groups and all(
            fits_grouped_qgemm(w.in_per_group, w.weights[0].shape[1], head_size if w in (q, k, v) else None)
            for w in (q, k, v, attn_out, inter, out))

    def forward(self, x, norm, additive_mask):
        """x: the layer's input before the LayerNorm `norm` (weight, bias) that the model applies to it (the
        embeddings' or the previous layer's second one); QuantizeRows applies it as it quantises. Returns the
        layer's output before its own second LayerNorm (self.ln2), which the next layer or the model applies."""
        rows, h = quantize_rows(x, norm, self.eps)
        q, k, v = self.qkv(rows, heads=self.heads)  # each [B, heads, S, d]
        context = MaskedAttention.apply(q, k, v, additive_mask, 1.0 / math.sqrt(self.hidden // self.heads))
        rows, a = quantize_rows(self.attn_out(quantize_rows(context), residual=h), self.ln1, self.eps)
        i = self.inter(rows, gelu=True)
        return self.out(quantize_rows(i), residual=a)


class ExportModel(nn.Module):
    """BERT or SqueezeBERT with a sentiment, entities or QA head, as plain sequence-major tensor code."""

    def __init__(self, model, native_int8: bool = False):
        super().__init__()
        config = model.config
        self.task = task_of(model)
        self.squeeze = config.model_type == "squeezebert"
        base = model.transformer if self.squeeze else model.bert
        sd = {k: v.detach().float() for k, v in model.state_dict().items()}
        prefix = "transformer." if self.squeeze else "bert."
        emb = base.embeddings
        self.word = nn.Parameter(emb.word_embeddings.weight.detach().clone())
        self.position = nn.Parameter(emb.position_embeddings.weight.detach().clone())
        self.token_type = nn.Parameter(emb.token_type_embeddings.weight.detach().clone())
        self.emb_ln = nn.ParameterList([nn.Parameter(emb.LayerNorm.weight.detach().clone()), nn.Parameter(emb.LayerNorm.bias.detach().clone())])
        self.eps = config.layer_norm_eps
        self.hidden = config.hidden_size
        layers = []

        def lin(name, groups=1):
            w = sd[name + ".weight"]
            return GroupedLinear(w[..., 0] if w.dim() == 3 else w, sd[name + ".bias"], groups)

        def ln(name):
            return nn.ParameterList([nn.Parameter(sd[name + ".weight"]), nn.Parameter(sd[name + ".bias"])])

        for i in range(config.num_hidden_layers):
            if self.squeeze:
                p = f"{prefix}encoder.layers.{i}."
                parts = (
                    lin(p + "attention.query", config.q_groups), lin(p + "attention.key", config.k_groups),
                    lin(p + "attention.value", config.v_groups), lin(p + "post_attention.conv1d", config.post_attention_groups),
                    ln(p + "post_attention.layernorm"), lin(p + "intermediate.conv1d", config.intermediate_groups),
                    lin(p + "output.conv1d", config.output_groups), ln(p + "output.layernorm"))
            else:
                p = f"{prefix}encoder.layer.{i}."
                parts = (
                    lin(p + "attention.self.query"), lin(p + "attention.self.key"), lin(p + "attention.self.value"),
                    lin(p + "attention.output.dense"), ln(p + "attention.output.LayerNorm"),
                    lin(p + "intermediate.dense"), lin(p + "output.dense"), ln(p + "output.LayerNorm"))
            heads = config.num_attention_heads
            groups = {part.groups for part in parts if isinstance(part, GroupedLinear)} - {parts[3].groups}
            if native_int8 and NativeLayer.fits(parts, heads):
                layers.append(NativeLayer(*parts, heads, self.eps))
            elif (self.squeeze and len(groups) == 1 and groups != {1} and parts[3].groups == 1
                  and heads % config.q_groups == 0):  # the paper's grouping, whole heads in every group
                layers.append(GroupedExportLayer(*parts, heads, self.eps, groups.pop()))
            else:
                layers.append(ExportLayer(*parts, heads, self.eps))
        self.layers = nn.ModuleList(layers)
        if self.task == "sentiment":
            self.pooler = lin(prefix + "pooler.dense")
            self.head = lin("classifier")
        elif self.task == "entities":
            self.head = lin("classifier")
        else:
            self.head = lin("qa_outputs")

    def forward(self, input_ids, attention_mask, token_type_ids):
        seq = input_ids.shape[1]
        positions = torch.arange(seq, device=input_ids.device).unsqueeze(0)
        h = self.word[input_ids] + self.position[positions] + self.token_type[token_type_ids]
        additive_mask = (1.0 - attention_mask[:, None, None, :].to(h.dtype)) * -10000.0
        norm = self.emb_ln  # the LayerNorm h still needs: a NativeLayer applies it as it quantises (its docstring)
        for layer in self.layers:
            if isinstance(layer, NativeLayer):
                h, norm = layer(h, norm, additive_mask), layer.ln2
                continue
            if norm:
                h = F.layer_norm(h, (self.hidden,), *norm, eps=self.eps)
            h, norm = layer(h, additive_mask), None  # the stock layers end in their own LayerNorm
        if norm:
            h = F.layer_norm(h, (self.hidden,), *norm, eps=self.eps)
        if self.task == "sentiment":
            return self.head(torch.tanh(self.pooler(h[:, 0])))
        if self.task == "entities":
            return self.head(h)
        logits = self.head(h)
        return logits[..., 0], logits[..., 1]


# --------------------------------------------------------------------------------------------- export, quantise
def sample_batch(vocab_size: int, seed: int = 0, batch: int = 3, seq: int = 24):
    """Random token ids with [CLS]/[SEP]-like ends, a padded row and both token types."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab_size, (batch, seq), generator=g)
    mask = torch.ones_like(ids)
    mask[-1, seq // 2 :] = 0
    types = torch.zeros_like(ids)
    types[:, seq // 3 :] = 1
    return ids, mask, types


def export_onnx(model, path: Path, native_int8: bool = False) -> bool:
    """Write the model's ONNX graph; with `native_int8`, the encoder layers as engine.native's ops (NativeLayer, int8
    already: quantize_int8 then does the embeddings and the head). Returns whether any layer took that form."""
    export_model = ExportModel(model, native_int8).eval()
    task = export_model.task
    ids, mask, types = sample_batch(model.config.vocab_size)
    axes = {name: {0: "batch", 1: "sequence"} for name in ("input_ids", "attention_mask", "token_type_ids")}
    for name in OUTPUTS[task]:
        axes[name] = {0: "batch"} if task == "sentiment" else {0: "batch", 1: "sequence"}
    with torch.no_grad():
        torch.onnx.export(
            export_model, (ids, mask, types), str(path), dynamo=False, opset_version=OPSET,
            input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=OUTPUTS[task],
            dynamic_axes=axes, do_constant_folding=True, custom_opsets={native.DOMAIN: 1} if native_int8 else None,
        )
    onnx.checker.check_model(str(path))
    return any(isinstance(layer, NativeLayer) for layer in export_model.layers)


# Weight families an export may keep in fp32, as patterns over the exported weight names (see quantize_int8).
FP32_FAMILIES = {"ffn-output": r"^layers\.\d+\.out(\.weights\.\d+)?$"}


def quantize_int8(fp32_path: Path, int8_path: Path, keep_fp32: Sequence[str] = ()) -> str:
    """Dynamic int8: weights of every constant-weight MatMul and the embedding tables; activations at run time.

    2-D MatMul weights (BERT) get one scale per output column: per-tensor scales cost bert-qa 2.3 F1 points on
    the held-out questions, per-column 0.5. SqueezeBERT's batched group weights (3-D, 4-D) are quantised per tensor by
    ORT, whose per-channel axis does not follow their output columns, then re-quantised here with one scale per
    group and output column: per tensor cost squeezebert-qa 1.55 F1 points, per group and column 0.66.
    `keep_fp32` names FP32_FAMILIES whose MatMuls stay fp32, trading speed for accuracy. Most of the QA student's
    int8 loss sits in the FFN output projection, whose input (the GELU output, 1,536 channels) shares one dynamic
    activation scale: keeping it fp32 took the tenth stage from 61.32 to 61.83 held-out F1 (fp32 62.08), but the
    eleventh only from 62.50 to 62.59 (fp32 63.21), for +5% latency and +2.6 MB, so no shipped bundle uses it.
    Returns the scheme, for the manifest."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(fp32_path)).graph
    weights = {t.name: len(t.dims) for t in graph.initializer}
    patterns = [re.compile(FP32_FAMILIES[family]) for family in keep_fp32]
    excluded = [n.name for n in graph.node if n.op_type == "MatMul" and any(p.match(n.input[1]) for p in patterns)]
    if patterns and not excluded:
        raise ValueError(f"no MatMul weights match {list(keep_fp32)} in this model")
    per_channel = all(weights.get(n.input[1], 2) == 2 for n in graph.node if n.op_type == "MatMul")
    quantize_dynamic(
        str(fp32_path), str(int8_path), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gather"],
        per_channel=per_channel, nodes_to_exclude=excluded, extra_options={"MatMulConstBOnly": True},
    )
    kept = f"; kept fp32: {', '.join(keep_fp32)} ({len(excluded)} MatMuls)" if excluded else ""
    if any(n.op_type == native.OP for n in graph.node):
        kept += f"; {KERNELS_SCHEME}, QInt8 weights per group and column, uint8 activations per token"
    if per_channel:
        return "dynamic, MatMul + Gather, QInt8 weights, per-column MatMul scales" + kept
    grouped = {t.name: numpy_helper.to_array(t) for t in graph.initializer if len(t.dims) >= 3}
    quantize_per_group_column(int8_path, grouped)
    return ("dynamic, MatMul + Gather, QInt8 weights, grouped MatMul scales per group and column, the rest per-tensor"
            + kept)


def quantize_per_group_column(int8_path: Path, weights: dict[str, np.ndarray]) -> None:
    """Give each batched [..., K, N] weight one symmetric scale per matrix and output column, in place.

    MatMulInteger takes a zero point of shape [..., 1, N] for such a weight, and the scale is applied by the Mul
    that follows it, which broadcasts a [..., 1, N] scale over the [..., rows, N] output."""
    model = onnx.load(str(int8_path))
    initialisers = {t.name: t for t in model.graph.initializer}
    for name, weight in weights.items():
        if name + "_quantized" not in initialisers:
            continue
        scale = np.maximum(np.abs(weight).max(axis=-2, keepdims=True) / 127.0, 1e-12).astype(np.float32)
        for suffix, value in (("_quantized", np.clip(np.round(weight / scale), -127, 127).astype(np.int8)),
                              ("_zero_point", np.zeros(scale.shape, np.int8)), ("_scale", scale)):
            initialisers[name + suffix].CopyFrom(numpy_helper.from_array(value, name + suffix))
    onnx.save(model, str(int8_path))


def torch_logits(model, ids, mask, types) -> list[np.ndarray]:
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, token_type_ids=types)
    if task_of(model) == "qa":
        return [out.start_logits.numpy(), out.end_logits.numpy()]
    return [out.logits.numpy()]


def parity(model, onnx_path: Path, seeds=(1, 2, 3)) -> dict:
    """Largest logit difference and argmax agreement between torch and ONNX Runtime on padded sample batches."""
    from engine.session import OnnxSession

    session = OnnxSession(onnx_path, threads=1)
    worst, agree, total = 0.0, 0, 0
    for seed in seeds:
        ids, mask, types = sample_batch(model.config.vocab_size, seed=seed, seq=16 + 8 * seed)
        expected = torch_logits(model, ids, mask, types)
        got = session.run({"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": types.numpy()})
        for e, g in zip(expected, got.values()):
            if e.ndim == 3 or (e.ndim == 2 and task_of(model) == "qa"):
                valid = mask.numpy().astype(bool)  # padded positions carry no meaning
                e, g = e[valid], g[valid]
            worst = max(worst, float(np.abs(e - g).max()))
            axis = -1 if task_of(model) != "qa" else None
            agree += int(np.sum(e.argmax(axis) == g.argmax(axis))) if axis else int(e.argmax() == g.argmax())
            total += e.argmax(axis).size if axis else 1
    return {"max_abs_logit_diff": round(worst, 6), "argmax_agreement": round(agree / total, 4), "n_compared": total}


# ---------------------------------------------------------------------------------------------------- bundle
def load_checkpoint(folder: Path):
    config = transformers.AutoConfig.from_pretrained(folder)
    architecture = (config.architectures or [""])[0]
    if config.model_type not in ("bert", "squeezebert") or not any(architecture.endswith(s) for s in TASK_OF_HEAD):
        raise ValueError(
            f"{folder}: expected a BertFor*/SqueezeBertFor* sequence, token or QA checkpoint, found "
            f"{config.model_type} {architecture or '(no architectures in config.json)'}"
        )
    model = getattr(transformers, architecture).from_pretrained(folder).eval()
    return model


def write_tokenizer(folder: Path, out: Path, do_lower_case: bool) -> None:
    """tokenizer.json from the checkpoint (or built from vocab.txt), without padding or truncation baked in."""
    if (folder / "tokenizer.json").is_file():
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    elif (folder / "vocab.txt").is_file():
        from tokenizers.implementations import BertWordPieceTokenizer

        tokenizer = BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=do_lower_case)._tokenizer
    else:
        raise ValueError(f"{folder}: no tokenizer.json or vocab.txt")
    tokenizer.no_padding()
    tokenizer.no_truncation()
    tokenizer.save(str(out))


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def build_bundle(
    checkpoint: str | Path,
    out: str | Path,
    precision: str = "int8",
    max_length: int | None = None,
    recipe: str | None = None,
    scores: dict | None = None,
    source: str | None = None,
    keep_fp32: Sequence[str] = (),
) -> dict:
    """Export, quantise (but for the `keep_fp32` weight families), parity-check and write a bundle folder; returns
    its manifest."""
    checkpoint, out = Path(checkpoint), Path(out)
    model = load_checkpoint(checkpoint)
    task = task_of(model)
    config = model.config
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "model.fp32.onnx"
        export_onnx(model, fp32)
        parity_fp32 = parity(model, fp32)
        if parity_fp32["max_abs_logit_diff"] > 1e-3 or parity_fp32["argmax_agreement"] < 1.0:
            raise RuntimeError(f"fp32 export does not match the torch model: {parity_fp32}")
        final = fp32
        quantization = "none (fp32)"
        parity_report = {"fp32": parity_fp32}
        if precision == "int8":
            final = Path(tmp) / "model.int8.onnx"
            to_quantize = fp32
            grouped = Path(tmp) / "model.native.onnx"  # the encoder layers already int8, on engine.native's ops
            if not keep_fp32 and export_onnx(model, grouped, native_int8=True):
                to_quantize = grouped
            quantization = quantize_int8(to_quantize, final, keep_fp32)
            quantized = onnx.load(str(final))
            rewrites = fuse.rewrite(quantized)
            if rewrites:
                onnx.save(quantized, str(final))
                quantization += fuse.scheme_suffix(rewrites)
            parity_report["int8"] = parity(model, final)
        staging = Path(tmp) / "bundle"
        staging.mkdir()
        shutil.copyfile(final, staging / "model.onnx")
        write_tokenizer(checkpoint, staging / "tokenizer.json", getattr(config, "do_lower_case", True))
        labels = [config.id2label[i] for i in range(config.num_labels)] if task != "qa" else []
        if task == "entities" and not all(l == "O" or l[:2] in ("B-", "I-") for l in labels):
            raise ValueError(f"{checkpoint}: token labels must be IOB tags, got {labels}")
        grouping = {k: getattr(config, k) for k in ("q_groups", "k_groups", "v_groups", "post_attention_groups",
                                                     "intermediate_groups", "output_groups") if hasattr(config, k)}
        files = {name: {"sha256": sha256_of(staging / name), "bytes": (staging / name).stat().st_size}
                 for name in ("model.onnx", "tokenizer.json")}
        manifest = {
            "format_version": 1,
            "task": task,
            "architecture": config.model_type,
            "head": type(model).__name__,
            "config": {
                "num_hidden_layers": config.num_hidden_layers,
                "hidden_size": config.hidden_size,
                "num_attention_heads": config.num_attention_heads,
                "intermediate_size": config.intermediate_size,
                "vocab_size": config.vocab_size,
                **grouping,
            },
            "labels": labels,
            "max_sequence_length": int(max_length or DEFAULT_MAX_LENGTH[task]),
            "precision": precision,
            "parameters": parameter_count(model),
            "files": files,
            "source": source or str(checkpoint),
            "recipe": recipe or "",
            "scores": scores or {},
            "parity": parity_report,
            "onnx": {"opset": OPSET, "onnxruntime_quantization": quantization},
            "export_seconds": round(time.time() - started, 1),
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staging, out)
    return manifest


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="local folder with config.json and weights (BertFor* or SqueezeBertFor*)")
    p.add_argument("--out", required=True, help="bundle folder to write (replaced if present)")
    p.add_argument("--precision", choices=["int8", "fp32"], default="int8")
    p.add_argument("--max-length", type=int, help="model window in tokens (default: 128, QA 256)")
    p.add_argument("--recipe", help="the command that trained the checkpoint, recorded in the manifest")
    p.add_argument("--source", help="where the weights came from, recorded in the manifest")
    p.add_argument("--scores", help="JSON file of scores to record in the manifest")
    p.add_argument("--keep-fp32", action="append", default=[], choices=list(FP32_FAMILIES),
                   help="weights to leave unquantised in an int8 export (repeatable)")
    args = p.parse_args(argv)
    scores = json.loads(Path(args.scores).read_text()) if args.scores else None
    try:
        manifest = build_bundle(args.checkpoint, args.out, args.precision, args.max_length, args.recipe, scores,
                                args.source, args.keep_fp32)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"out": args.out, "task": manifest["task"], "architecture": manifest["architecture"],
                      "parity": manifest["parity"], "bytes": manifest["files"]["model.onnx"]["bytes"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
