"""The int8 encoder's kernels as ONNX Runtime custom ops, built here from source with the system C compiler.

GroupedQGemm (grouped_qgemm.c) runs SqueezeBERT's grouped projections and both models' dense ones, MaskedAttention
(attention.c) a layer's attention, QuantizeRows (quantize_rows.c) the LayerNorms and the quantisation of each
projection's input, Embeddings (embeddings.c) the encoder's input and its additive mask; ort_ops.c connects them to
ONNX Runtime, and pool.c runs their tasks on threads of its own (as many as the session's, THREADS_KEY below).
Every int8 bundle calls them (domain below); every session registers this library when it is built
(engine.session). Build it with `python -m engine.native` (scripts/setup.sh does): it needs only a C compiler, no
ONNX Runtime headers (ort_abi.h declares the few entry points it uses).
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

DOMAIN = "squeezebert.desktop"
OP = "GroupedQGemm"
ATTENTION_OP = "MaskedAttention"
QUANTIZE_OP = "QuantizeRows"
EMBEDDINGS_OP = "Embeddings"
THREADS_KEY = "squeezebert.threads"  # the session config entry the ops take their thread count from (1 without)
HERE = Path(__file__).resolve().parent
SOURCES = tuple(HERE / name for name in ("ort_ops.c", "grouped_qgemm.c", "attention.c", "quantize_rows.c",
                                         "embeddings.c", "pool.c", "kernels.h", "vector_math.h", "ort_abi.h",
                                         "__init__.py"))  # this file: the compiler's flags are in build()
SUFFIX = {"win32": ".dll", "darwin": ".dylib"}.get(sys.platform, ".so")
LIBRARY = HERE / f"libsqueezebert_kernels{SUFFIX}"


def library() -> Path | None:
    """The built library, or None when it has not been built (a source checkout before set-up)."""
    return LIBRARY if LIBRARY.is_file() else None


def is_stale() -> bool:
    if not LIBRARY.is_file():
        return True
    built = LIBRARY.stat().st_mtime
    return any(source.is_file() and source.stat().st_mtime > built for source in SOURCES)


def build(force: bool = False) -> Path:
    """Compile the library next to its source unless it is up to date. Raises RuntimeError with the compiler's
    message when that fails."""
    if not force and not is_stale():
        return LIBRARY
    compiler = os.environ.get("CC", "cc")
    partial = LIBRARY.with_name(LIBRARY.name + ".partial")
    # pool.c's helper threads live as long as the process, so the library must too: ORT unloads a custom-op library
    # when the last session options holding it are freed, and a helper then polling in its code crashed the process
    pinned = ["-Wl,-z,nodelete"] if sys.platform.startswith("linux") else []
    command = [compiler, "-O3", "-fPIC", "-shared", "-fvisibility=hidden", *pinned, "-o", str(partial),
               *(str(source) for source in SOURCES if source.suffix == ".c"), "-lm", "-pthread"]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise RuntimeError(f"no C compiler ({compiler}) to build {LIBRARY.name}") from None
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"building {LIBRARY.name} failed:\n{exc.stderr}") from None
    os.replace(partial, LIBRARY)
    return LIBRARY


def kernel_path() -> str:
    """Which code path the kernels take on this CPU: "avx512-bf16" (avx512-vnni with attention in bf16),
    "avx512-vnni", "avx2" or "portable" (or "not built")."""
    path = library()
    if path is None:
        return "not built"
    lib = ctypes.CDLL(str(path))
    lib.sqb_native_path.restype = ctypes.c_char_p
    return lib.sqb_native_path().decode()

