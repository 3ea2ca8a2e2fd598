"""The one place ONNX Runtime sessions are made: explicit threads and graph optimisation, CPU only."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort


def physical_cores() -> int:
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


from engine import native  # noqa: E402
from engine.errors import InferenceError  # noqa: E402  (re-exported)


def session_options(threads: int | None = None, on_kernels: bool = False) -> ort.SessionOptions:
    """The settings every session here runs with (the app's, the benchmark's and the profiler's). `on_kernels`: the
    graph's encoder is engine.native's ops (Bundle.runs_on_kernels), which run on `threads` threads of their own;
    ONNX Runtime's pool then gets one, for the few small ops left to it (a head, a LayerNorm), so that its threads do
    not spin on the cores the kernels' threads need: up to 3% faster at 128 and 384 tokens, 7% on short requests
    (docs/benchmarks.md, ninth and tenth rounds)."""
    options = ort.SessionOptions()
    threads = threads or physical_cores()
    options.intra_op_num_threads = 1 if on_kernels else threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # Pool threads otherwise spin for a while after each run, taking both cores from whatever runs next: the
    # UI thread, tokenisation, or another model's session (interleaved runs were twice as slow).
    options.add_session_config_entry("session.force_spinning_stop", "1")
    kernels = native.library()
    if kernels is not None:  # an int8 bundle's encoder may call its ops (GroupedQGemm, MaskedAttention, QuantizeRows)
        # read when the library is registered: the ops run on that many threads of their own (engine/native/pool.c)
        options.add_session_config_entry(native.THREADS_KEY, str(threads))
        options.register_custom_ops_library(str(kernels))
    return options


# ORT's SkipLayerNormalization (residual Add, bias Add and LayerNorm in one kernel) runs slower on this CPU than the
# three ops it replaces: BERT int8 in ORT's own ops was 2-8% faster without it (docs/benchmarks.md). The shipped
# bundles add their skip connections inside engine.native's kernel, so only exports that do not fit it could get it.
DISABLED_OPTIMIZERS = ["SkipLayerNormFusion"]


def inference_session(model: str | bytes, options: ort.SessionOptions) -> ort.InferenceSession:
    """A CPU session of `model` (a path or serialised bytes) with the graph fusions this project keeps."""
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"],
                                disabled_optimizers=DISABLED_OPTIMIZERS)


class OnnxSession:
    def __init__(self, model_path: str | Path, threads: int | None = None, on_kernels: bool = False):
        options = session_options(threads, on_kernels)
        try:
            self._session = inference_session(str(model_path), options)
        except Exception as exc:  # ORT raises its own exception types for bad graphs
            if native.DOMAIN in str(exc) and native.library() is None:
                raise InferenceError(f"cannot load ONNX model {model_path}: it needs the engine's int8 kernel library, "
                                     "which is not built (run `python -m engine.native`, or scripts/setup.sh)") from None
            raise InferenceError(f"cannot load ONNX model {model_path}: {exc}") from None
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {k: v for k, v in feeds.items() if k in self.input_names}
        try:
            outputs = self._session.run(self.output_names, feeds)
        except Exception as exc:
            raise InferenceError(f"inference failed: {exc}") from None
        return dict(zip(self.output_names, outputs))
