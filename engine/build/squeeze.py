"""Derive a SqueezeBERT (grouped 1x1 convolutions) from a BERT with the same depth and width.

With groups 1 the mapping is exact: each Linear becomes a kernel-size-1 Conv1d. With groups g, a grouped conv can
only keep the block-diagonal part of each dense matrix; which blocks survive depends on which attention heads and
FFN neurons land in which group, and both can be permuted freely inside a layer without changing the function of the
dense model. So before cutting we assign heads and neurons to groups to keep as much weight energy as possible.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from transformers import BertConfig, SqueezeBertConfig

from engine.benchmark import PAPER_GROUPS


def squeezebert_config(bert: BertConfig, groups: int = 4) -> SqueezeBertConfig:
    grouping = {k: (1 if k == "post_attention_groups" else groups) for k in PAPER_GROUPS}
    return SqueezeBertConfig(
        vocab_size=bert.vocab_size,
        hidden_size=bert.hidden_size,
        embedding_size=bert.hidden_size,
        num_hidden_layers=bert.num_hidden_layers,
        num_attention_heads=bert.num_attention_heads,
        intermediate_size=bert.intermediate_size,
        hidden_act=bert.hidden_act,
        hidden_dropout_prob=bert.hidden_dropout_prob,
        attention_probs_dropout_prob=bert.attention_probs_dropout_prob,
        max_position_embeddings=bert.max_position_embeddings,
        type_vocab_size=bert.type_vocab_size,
        initializer_range=bert.initializer_range,
        layer_norm_eps=bert.layer_norm_eps,
        pad_token_id=bert.pad_token_id,
        num_labels=bert.num_labels,
        id2label=bert.id2label,
        label2id=bert.label2id,
        **grouping,
    )


def balanced_assignment(cost_per_group: np.ndarray) -> np.ndarray:
    """Assign n items to g groups of n/g each, maximising the summed score; returns each item's group."""
    n, g = cost_per_group.shape
    slots = np.repeat(np.arange(g), n // g)
    rows, cols = linear_sum_assignment(-cost_per_group[:, slots])
    group = np.empty(n, dtype=np.int64)
    group[rows] = slots[cols]
    return group


def _block_energy(weight: torch.Tensor, groups: int, axis: int) -> np.ndarray:
    """Squared norm of `weight` per input block along `axis` (rows of the result = the other axis)."""
    w = weight.detach().double().numpy() ** 2
    if axis == 1:
        return w.reshape(w.shape[0], groups, -1).sum(-1)
    return w.reshape(groups, -1, w.shape[1]).sum(1).T


def _order_by_group(group: np.ndarray, unit: int = 1) -> np.ndarray:
    """Index order putting group 0's units first, then group 1's, ...; `unit` channels per unit (a head)."""
    units = np.argsort(group, kind="stable")
    return (units[:, None] * unit + np.arange(unit)[None, :]).reshape(-1)


def convert_state_dict(
    bert_sd: dict[str, torch.Tensor], bert: BertConfig, groups: int, permute: bool = True, cut_weights: bool = True
):
    """BERT weights (any BertFor* head) to SqueezeBERT weights of the same head, cut to `groups` blocks.

    With `cut_weights` False, heads and neurons are ordered as for `groups` but every weight is kept: a groups-1
    model that is exactly the BERT, laid out like the cut one (the reference for `engine.build.reconstruct`).
    """
    heads, hidden = bert.num_attention_heads, bert.hidden_size
    head_dim = hidden // heads
    out: dict[str, torch.Tensor] = {}
    prefix = "bert."
    for name, tensor in bert_sd.items():
        if name.startswith(prefix + "embeddings."):
            out["transformer." + name[len(prefix) :]] = tensor
        elif name.startswith(prefix + "pooler."):
            out["transformer." + name[len(prefix) :]] = tensor
        elif not name.startswith(prefix):
            out[name] = tensor  # task heads: classifier.*, qa_outputs.*

    def cut(weight: torch.Tensor) -> torch.Tensor:
        """Keep the block-diagonal part of a dense [out, in] weight as a grouped Conv1d weight."""
        if not cut_weights:
            return weight.unsqueeze(-1).contiguous()
        o, i = weight.shape
        blocks = [weight[g * o // groups : (g + 1) * o // groups, g * i // groups : (g + 1) * i // groups] for g in range(groups)]
        return torch.cat(blocks, 0).unsqueeze(-1).contiguous()

    for layer in range(bert.num_hidden_layers):
        src = f"{prefix}encoder.layer.{layer}."
        dst = f"transformer.encoder.layers.{layer}."
        q, k, v = (bert_sd[src + f"attention.self.{n}.weight"] for n in ("query", "key", "value"))
        qb, kb, vb = (bert_sd[src + f"attention.self.{n}.bias"] for n in ("query", "key", "value"))
        w_ao, b_ao = bert_sd[src + "attention.output.dense.weight"], bert_sd[src + "attention.output.dense.bias"]
        w_in, b_in = bert_sd[src + "intermediate.dense.weight"], bert_sd[src + "intermediate.dense.bias"]
        w_out, b_out = bert_sd[src + "output.dense.weight"], bert_sd[src + "output.dense.bias"]

        head_order = np.arange(hidden)
        neuron_order = np.arange(w_in.shape[0])
        if permute and groups > 1:
            # Energy each head keeps if it reads input block g: summed over its Q, K and V rows.
            energy = sum(_block_energy(w, groups, axis=1) for w in (q, k, v))  # [hidden, groups]
            head_energy = energy.reshape(heads, head_dim, groups).sum(1)
            head_order = _order_by_group(balanced_assignment(head_energy), unit=head_dim)
            # A neuron in group g keeps its inputs from block g and writes only to output block g.
            neuron_energy = _block_energy(w_in, groups, axis=1) + _block_energy(w_out, groups, axis=0)
            neuron_order = _order_by_group(balanced_assignment(neuron_energy))
        ho = torch.as_tensor(head_order)
        no = torch.as_tensor(neuron_order)

        out[dst + "attention.query.weight"] = cut(q[ho])
        out[dst + "attention.query.bias"] = qb[ho]
        out[dst + "attention.key.weight"] = cut(k[ho])
        out[dst + "attention.key.bias"] = kb[ho]
        out[dst + "attention.value.weight"] = cut(v[ho])
        out[dst + "attention.value.bias"] = vb[ho]
        out[dst + "post_attention.conv1d.weight"] = w_ao[:, ho].unsqueeze(-1).contiguous()
        out[dst + "post_attention.conv1d.bias"] = b_ao
        out[dst + "post_attention.layernorm.weight"] = bert_sd[src + "attention.output.LayerNorm.weight"]
        out[dst + "post_attention.layernorm.bias"] = bert_sd[src + "attention.output.LayerNorm.bias"]
        out[dst + "intermediate.conv1d.weight"] = cut(w_in[no])
        out[dst + "intermediate.conv1d.bias"] = b_in[no]
        out[dst + "output.conv1d.weight"] = cut(w_out[:, no])
        out[dst + "output.conv1d.bias"] = b_out
        out[dst + "output.layernorm.weight"] = bert_sd[src + "output.LayerNorm.weight"]
        out[dst + "output.layernorm.bias"] = bert_sd[src + "output.LayerNorm.bias"]
    return out


HEAD_CLASSES = {
    "BertForSequenceClassification": "SqueezeBertForSequenceClassification",
    "BertForTokenClassification": "SqueezeBertForTokenClassification",
    "BertForQuestionAnswering": "SqueezeBertForQuestionAnswering",
    "BertModel": "SqueezeBertModel",
}


def squeeze_model(bert_model, groups: int = 4, permute: bool = True, cut_weights: bool = True):
    """A SqueezeBERT model of the same head class as `bert_model`, with its weights derived from it.

    `cut_weights=False` gives the uncut groups-1 twin of the grouped model (see `convert_state_dict`)."""
    import transformers

    config = squeezebert_config(bert_model.config, groups if cut_weights else 1)
    cls = getattr(transformers, HEAD_CLASSES[type(bert_model).__name__])
    student = cls(config)
    state = bert_model.state_dict()
    if type(bert_model).__name__ == "BertModel":
        state = {"bert." + k: v for k, v in state.items()}
    converted = convert_state_dict(state, bert_model.config, groups, permute, cut_weights)
    if cls.__name__ == "SqueezeBertModel":
        converted = {k[len("transformer.") :]: v for k, v in converted.items()}
    missing, unexpected = student.load_state_dict(converted, strict=False)
    # BertFor{Token,QuestionAnswering} have no pooler while SqueezeBERT always has one; it is unused there.
    missing = [m for m in missing if not m.endswith("position_ids") and ".pooler." not in "." + m]
    if missing or unexpected:
        raise ValueError(f"weight mapping incomplete: missing {missing}, unexpected {unexpected}")
    return student
