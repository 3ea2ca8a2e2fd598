"""Rewrites of an int8 graph after ONNX Runtime's quantiser, each giving the same outputs bit for bit.

`fuse_embeddings`: after the quantiser, an int8 export computes the encoder's input in 26 small nodes: three uint8
Gathers (word, position, token type), their DequantizeLinear, two Adds, the positions from the input's shape
(Shape, Gather, Cast, Range, Unsqueeze) and the additive mask ((1 - mask) * -10000 through Unsqueeze and Cast). Cut
out, they cost every session, SqueezeBERT's and BERT's alike, 0.13-0.15 ms at seq 128. It replaces them with one op
that does the same float arithmetic (0.04-0.07 ms back: the word rows still come from memory); the initialisers
keep their names (engine.build.recover reads them).

`first_row_only`: a sentence classifier reads the encoder's [CLS] row alone, so after the last layer's keys and
values nothing but that row's query, projections and LayerNorms counts; the rewrite slices them to it.

  python -m engine.build.fuse assets/models/*/      # rewrite bundles exported before these rewrites, in place
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from engine import native
from engine.bundle import CLS_ONLY_SCHEME, sha256_of

TABLES = ("word", "position", "token_type")
MASK_FILL = -10000.0  # ExportModel's additive mask value, which the op applies


def graph_maps(graph: onnx.GraphProto) -> tuple[dict, dict, dict]:
    """Each value's consumers and producer, and the constant values (initialisers and Constant nodes) by name."""
    consumers, producer = defaultdict(list), {}
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
        for name in node.output:
            producer[name] = node
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    constants.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
                      if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
    return consumers, producer, constants


def fuse_embeddings(model: onnx.ModelProto) -> bool:
    """Rewrite `model` in place; False (and unchanged) when its graph does not have the quantised embeddings and
    mask described above, exactly."""
    graph = model.graph
    consumers, producer, constants = graph_maps(graph)

    def sole_consumer(name: str, op_type: str):
        found = consumers.get(name, [])
        return found[0] if len(found) == 1 and found[0].op_type == op_type else None

    def is_scalar(name: str, value: float | None = None) -> bool:
        array = constants.get(name)
        return array is not None and array.size == 1 and (value is None or float(array.reshape(())) == value)

    dequantized = {}
    for table in TABLES:
        gather = sole_consumer(f"{table}_quantized", "Gather")
        dq = gather and sole_consumer(gather.output[0], "DequantizeLinear")
        if not dq or list(dq.input[1:]) != [f"{table}_scale", f"{table}_zero_point"] \
                or not (is_scalar(dq.input[1]) and is_scalar(dq.input[2])):
            return False
        dequantized[table] = (gather, dq)
    word, position, token_type = (dequantized[t][1].output[0] for t in TABLES)
    if [dequantized[t][0].input[1] for t in ("word", "token_type")] != ["input_ids", "token_type_ids"]:
        return False
    first = sole_consumer(word, "Add")
    second = first and sole_consumer(first.output[0], "Add")
    if not second or set(first.input) != {word, position} or set(second.input) != {first.output[0], token_type}:
        return False
    attention = [n for n in graph.node if n.domain == native.DOMAIN and n.op_type == native.ATTENTION_OP]
    mask = attention[0].input[3] if attention else None
    mul = producer.get(mask)
    sub = mul and mul.op_type == "Mul" and is_scalar(mul.input[1], MASK_FILL) and producer.get(mul.input[0])
    if not sub or sub.op_type != "Sub" or not is_scalar(sub.input[0], 1.0):
        return False
    source = sub.input[1]
    while source in producer and producer[source].op_type in ("Cast", "Unsqueeze"):
        source = producer[source].input[0]
    if source != "attention_mask":
        return False

    fused = helper.make_node(
        native.EMBEDDINGS_OP,
        ["input_ids", "token_type_ids", "attention_mask",
         *(f"{table}_{part}" for table in TABLES for part in ("quantized", "scale", "zero_point"))],
        [second.output[0], mask], name="/Embeddings", domain=native.DOMAIN)
    replaced = {id(n) for pair in dequantized.values() for n in pair} | {id(first), id(second), id(mul), id(sub)}
    nodes = without_unused([fused, *(n for n in graph.node if id(n) not in replaced)],
                           {o.name for o in graph.output})
    replace_nodes(graph, nodes)
    return True


def replace_nodes(graph: onnx.GraphProto, nodes: list, reshaped: set[str] = frozenset()) -> None:
    """The graph's nodes become `nodes`; shapes recorded for values no longer made, or `reshaped`, are dropped."""
    del graph.node[:]
    graph.node.extend(nodes)
    produced = {name for n in nodes for name in n.output} - set(reshaped)
    kept = [v for v in graph.value_info if v.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(kept)


# Ops that treat each token's row on its own (engine.native's on token-major input; a LayerNorm over the last axis):
# on the first row alone they give what they give it among all rows.
def is_row_wise(node: onnx.NodeProto) -> bool:
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.domain == native.DOMAIN:
        return node.op_type == native.QUANTIZE_OP or (node.op_type == native.OP and not attributes.get("heads", 0))
    return node.op_type == "LayerNormalization" and attributes.get("axis", -1) == -1


def first_row_only(model: onnx.ModelProto) -> bool:
    """Rewrite `model` in place so that its last layer, after attention, runs on the first token alone when nothing
    else reads it: the query is sliced to that row (MaskedAttention takes fewer query rows than keys) and so is each
    skip connection entering the layer's row-wise ops. False (and unchanged) unless the encoder's output goes only to
    a Gather of row 0 (the sentence head's [CLS]) through row-wise ops."""
    graph = model.graph
    consumers, producer, constants = graph_maps(graph)
    gathers = [n for n in graph.node if n.op_type == "Gather" and n.input[1] in constants
               and constants[n.input[1]].ndim == 0 and int(constants[n.input[1]]) == 0
               and any(a.name == "axis" and a.i == 1 for a in n.attribute)]
    if len(gathers) != 1:
        return False
    gather = gathers[0]
    ancestors, stack = set(), [gather.input[0]]
    while stack:
        node = producer.get(stack.pop())
        if node is not None and id(node) not in ancestors:
            ancestors.add(id(node))
            stack.extend(node.input)
    attention = [n for n in graph.node if id(n) in ancestors and n.domain == native.DOMAIN
                 and n.op_type == native.ATTENTION_OP]
    if not attention:
        return False
    last = attention[-1]  # graph.node is in topological order
    if getattr(producer.get(last.input[0]), "op_type", None) == "Slice":
        return False  # rewritten before
    after, stack = set(), [last.output[0]]
    while stack:
        for node in consumers.get(stack.pop(), []):
            if id(node) not in after:
                after.add(id(node))
                stack.extend(node.output)
    layer = [n for n in graph.node if id(n) in after and id(n) in ancestors]
    inside = {id(n) for n in layer}
    graph_outputs = {o.name for o in graph.output}
    if not layer or not all(is_row_wise(n) for n in layer) or any(
            name in graph_outputs or any(id(c) not in inside and c is not gather for c in consumers.get(name, []))
            for n in layer for name in n.output):
        return False
    made_inside = {name for n in layer for name in n.output}
    per_input = {i.name for i in graph.input}  # values that change with the input (not weights, even behind Identity)
    for node in graph.node:
        if any(name in per_input for name in node.input):
            per_input.update(node.output)
    skips = {name for n in layer for name in n.input
             if name in per_input and name not in made_inside and name != last.output[0]}

    starts, ends = "first_row.starts", "first_row.ends"
    graph.initializer.extend([numpy_helper.from_array(np.array([0], np.int64), starts),
                              numpy_helper.from_array(np.array([1], np.int64), ends)])
    for axis in (1, 2):  # a skip connection's tokens, the query's (head-major [batch, heads, seq, d])
        graph.initializer.append(numpy_helper.from_array(np.array([axis], np.int64), f"first_row.axis{axis}"))

    def first_row(name: str, axis: int) -> onnx.NodeProto:
        return helper.make_node("Slice", [name, starts, ends, f"first_row.axis{axis}"], [f"{name}.first_row"],
                                name=f"{name}/first_row")

    query = first_row(last.input[0], 2)
    last.input[0] = query.output[0]
    sliced = {name: first_row(name, 1) for name in skips}
    for node in layer:
        for i, name in enumerate(node.input):
            if name in sliced:
                node.input[i] = sliced[name].output[0]
    nodes = [s for s in sliced.values() if s.input[0] not in producer]  # graph inputs
    for node in graph.node:
        nodes.extend([query, node] if node is last else [node])
        nodes.extend(sliced[name] for name in node.output if name in sliced)
    replace_nodes(graph, nodes, reshaped=made_inside | set(last.output))
    return True


REWRITES = ((fuse_embeddings, "embeddings and mask in Embeddings"),
            (first_row_only, CLS_ONLY_SCHEME))


def rewrite(model: onnx.ModelProto) -> list[str]:
    """Apply every rewrite above that fits `model`, in place; what each applied one is called in a manifest."""
    return [scheme for fn, scheme in REWRITES if fn(model)]


def scheme_suffix(applied: list[str]) -> str:
    """What a manifest's quantisation scheme gains for the rewrites `applied`."""
    return "".join(f"; {scheme}" for scheme in applied)


def without_unused(nodes: list, outputs: set[str]) -> list:
    """`nodes` without those whose outputs nothing reads (the position and mask arithmetic the op replaced)."""
    while True:
        read = outputs | {name for n in nodes for name in n.input}
        kept = [n for n in nodes if any(name in read for name in n.output)]
        if len(kept) == len(nodes):
            return kept
        nodes = kept


def fuse_bundle(folder: Path) -> bool:
    """Rewrite a bundle's model.onnx and its manifest's checksum; False when no rewrite fitted."""
    path = folder / "model.onnx"
    model = onnx.load(str(path))
    applied = rewrite(model)
    if not applied:
        return False
    onnx.save(model, str(path))
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["model.onnx"] = {"sha256": sha256_of(path), "bytes": path.stat().st_size}
    manifest["onnx"]["onnxruntime_quantization"] += scheme_suffix(applied)
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundles", nargs="+", type=Path, help="bundle folders (model.onnx and manifest.json)")
    args = p.parse_args(argv)
    for folder in args.bundles:
        print(f"{folder}: {'rewritten' if fuse_bundle(folder) else 'nothing to rewrite'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
