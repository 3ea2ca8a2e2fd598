"""Where a model's time goes: ONNX Runtime's profiler, kernel time per run in projections, attention and the rest.

The split is the argument about the limit in docs/benchmarks.md: SqueezeBERT only makes the projections cheaper;
attention and the element-wise work (LayerNorm, GELU, bias adds, layout transposes, embeddings) stay. Node kinds
come from the graph as ONNX Runtime optimised it (its fused int8 ops carry the names the profiler reports), so
this needs the `onnx` package (the build extra).
"""
from __future__ import annotations

import bisect
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

# int8 projection kernels and the activation quantisation that feeds them; GroupedQGemm (engine.native) also
# applies the FFN's GELU and the skip connections' adds as it writes its output. engine.native's QuantizeRows
# (a LayerNorm and the quantisation, element-wise work of one size in both models) counts as other.
QUANTISED_PROJECTIONS = {"DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulInteger", "DynamicQuantizeLinear",
                         "QLinearMatMul", "QuantizeLinear", "GroupedQGemm"}
MATMULS = {"MatMul", "FusedMatMul", "Gemm"}
KINDS = ("projections", "attention", "other")


def node_kind(op_type: str, inputs: list[str], constants: set[str]) -> str:
    """projections (a MatMul against weights, int8 or fp32), attention (MatMul of two activations, Softmax), other."""
    if op_type in QUANTISED_PROJECTIONS:
        return "projections"
    if op_type in MATMULS:
        return "projections" if any(name in constants for name in inputs[:2]) else "attention"
    if op_type in ("Softmax", "MaskedAttention"):  # the latter: engine.native's scores, softmax and context in one
        return "attention"
    return "other"


def summarise(events: list[dict], kinds: dict[str, str], skip_runs: int = 0, block: int = 0, settle: int = 0) -> dict:
    """Kernel milliseconds per run by kind and by op type, from a profile's events and each node's kind.

    The first `skip_runs` calls (warm-up) are left out; after them, with `block`, the calls came in blocks of that
    many and the first `settle` of each block are left out too. A node's event belongs to the call that began last
    before it."""
    runs = sorted(e["ts"] for e in events if e.get("name") == "model_run")

    def is_counted(k: int) -> bool:
        return k >= skip_runs and (not block or (k - skip_runs) % block >= settle)

    counted_runs = [k for k in range(len(runs)) if is_counted(k)]
    if not counted_runs:
        raise ValueError(f"the profile holds {len(runs)} runs, none of them counted (skip {skip_runs}, "
                         f"blocks of {block} with {settle} to settle)")
    by_kind: dict[str, float] = defaultdict(float)
    by_op: dict[str, float] = defaultdict(float)
    nodes: dict[str, set] = defaultdict(set)
    counted = len(counted_runs)
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        run = bisect.bisect_right(runs, event["ts"]) - 1
        if run < 0 or not is_counted(run):
            continue
        node = event["name"][: -len("_kernel_time")]
        op = event["args"]["op_name"]
        ms = event["dur"] / 1000 / counted
        by_kind[kinds.get(node, "other")] += ms
        by_op[op] += ms
        nodes[op].add(node)
    return {
        "runs": counted,
        "kernel_ms": round(sum(by_kind.values()), 3),
        "by_kind_ms": {k: round(by_kind.get(k, 0.0), 3) for k in KINDS},
        "by_op": [{"op": op, "ms": round(ms, 3), "nodes": len(nodes[op])}
                  for op, ms in sorted(by_op.items(), key=lambda item: -item[1])],
    }


# Calls per model in a row, and how many of them come first, uncounted: with the models taken in turn call by call,
# each call met the previous session's threads and ran slower (MaskedAttention 1.13 ms a run against 0.46 alone).
BLOCK, SETTLE = 10, 2


def profile_models(models: dict[str, tuple[Path, dict[str, np.ndarray]]], runs: int, threads: int,
                   warmup: int = 10) -> dict[str, dict]:
    """Each model (name -> (model.onnx, feeds)): `warmup` calls, then `runs` counted ones, in blocks taken in
    turn so that all models meet the same minutes of a noisy host (profiled one after the other, the same op read
    0.54 ms in one model and 0.42 ms in the other). Kernel time per run by kind and by op type, per model."""
    import onnx

    from engine.bundle import load_bundle
    from engine.session import inference_session, session_options

    with tempfile.TemporaryDirectory() as tmp:
        sessions = {}
        for i, (name, (model_path, feeds)) in enumerate(models.items()):
            folder = Path(model_path).parent  # a bundle's, whose manifest says what the app's session would be
            on_kernels = (folder / "manifest.json").is_file() and load_bundle(folder, verify=False).runs_on_kernels
            options = session_options(threads, on_kernels)
            # the graph as ONNX Runtime optimised it, which the profile's node names refer to: written by this session
            options.optimized_model_filepath = str(Path(tmp) / f"optimised-{i}.onnx")
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(tmp) / f"profile-{i}")
            session = inference_session(str(model_path), options)
            graph = onnx.load(options.optimized_model_filepath).graph
            constants = {t.name for t in graph.initializer}
            kinds = {n.name: node_kind(n.op_type, list(n.input), constants) for n in graph.node}
            sessions[name] = session, {x.name: feeds[x.name] for x in session.get_inputs()}, kinds
        for session, feeds, _ in sessions.values():
            for _ in range(warmup):
                session.run(None, feeds)
        for first in range(0, runs, BLOCK - SETTLE):  # the last block may be shorter: `runs` counted in all
            for session, feeds, _ in sessions.values():
                for _ in range(SETTLE + min(BLOCK - SETTLE, runs - first)):
                    session.run(None, feeds)
        return {name: summarise(json.loads(Path(session.end_profiling()).read_text()), kinds, skip_runs=warmup,
                                block=BLOCK, settle=SETTLE)
                for name, (session, _, kinds) in sessions.items()}


def model_paths(task: str, notes: list[str], encoder: str = "shipped") -> dict[str, Path]:
    """The shipped int8 bundles of both architectures, and fp32 exports of their configuration when torch is here;
    for another encoder size (benchmark.ENCODERS), random-weight int8 and fp32 exports of it."""
    import importlib.util

    from engine.bundle import models_dir

    paths = {} if encoder != "shipped" else {
        f"{arch} int8": models_dir() / f"{arch}-{task}" for arch in ("squeezebert", "bert")
        if (models_dir() / f"{arch}-{task}" / "model.onnx").is_file()}
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        notes.append("torch/transformers not installed: fp32 rows skipped (install the 'build' extra)")
        return paths
    from engine.benchmark import any_tokenizer
    from engine.build.benchmark_reference import export_random

    for arch in ("squeezebert", "bert"):
        if encoder != "shipped":
            paths[f"{arch} int8"] = export_random(task, arch, "int8", any_tokenizer(), encoder)
        tokenizer = paths[f"{arch} int8"] / "tokenizer.json" if f"{arch} int8" in paths else any_tokenizer()
        paths[f"{arch} fp32"] = export_random(task, arch, "fp32", tokenizer, encoder)
    return paths


def profile_task(task: str, seq_len: int, runs: int, threads: int, encoder: str = "shipped") -> dict:
    """Every model of `task` on one input of exactly `seq_len` tokens (batch 1)."""
    from engine.benchmark import text_of_length
    from engine.bundle import models_dir
    from engine.errors import BundleError
    from engine.tokenization import shared_tokenizer

    notes: list[str] = []
    paths = model_paths(task, notes, encoder)
    if not paths:
        raise BundleError(f"no {task} models to profile: no bundles in {models_dir()} and no torch to export any")
    models = {}
    for name, path in paths.items():
        tokenizer = shared_tokenizer(path / "tokenizer.json")
        tokens = tokenizer.tokenize(text_of_length(tokenizer, seq_len - 2))
        inputs = tokenizer.single_inputs(tokens, seq_len, 0)
        models[name] = path / "model.onnx", {"input_ids": inputs.input_ids, "attention_mask": inputs.attention_mask,
                                             "token_type_ids": inputs.token_type_ids}
    models = profile_models(models, runs, threads)
    return {"task": task, "seq_len": seq_len, "threads": threads, "encoder": encoder, "models": models, "notes": notes}
