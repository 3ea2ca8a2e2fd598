"""The kernels' thread pool (engine/native/pool.c), driven with Python tasks: every task runs once, each thread starts
on its own share of the tasks and has scratch memory of its own, and model runs give the same bits on any number of
threads."""
import ctypes
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from engine import native
from engine.session import DISABLED_OPTIMIZERS, session_options
from engine.tokenization import WordPieceTokenizer

pytestmark = pytest.mark.skipif(native.library() is None, reason="kernel library not built")

RUN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
SCRATCH_BYTES = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p)


class TaskKind(ctypes.Structure):  # sqb_task_kind_t
    _fields_ = [("run", RUN), ("scratch_bytes", SCRATCH_BYTES)]


@pytest.fixture(scope="module")
def pool():
    lib = ctypes.CDLL(str(native.library()))
    lib.sqb_pool_run.argtypes = [ctypes.POINTER(TaskKind), ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    lib.sqb_pool_helper_tasks.restype = ctypes.c_size_t
    lib.sqb_pool_run.restype = ctypes.c_int
    return lib


class Tasks:
    """Each task sleeps `seconds` (letting the other thread in) and records which thread ran it, with which scratch."""

    def __init__(self, count, seconds=0.005):
        self.count, self.seconds = count, seconds
        self.runs = []  # (task, thread, scratch address)
        self.kind = TaskKind(RUN(self.run), SCRATCH_BYTES(lambda job: 256))

    def run(self, job, t, scratch):
        time.sleep(self.seconds)
        self.runs.append((t, threading.get_ident(), scratch))

    def by(self, thread):
        return [t for t, who, _ in self.runs if who == thread]


def run(pool, tasks, threads=2):
    assert pool.sqb_pool_run(ctypes.byref(tasks.kind), None, tasks.count, threads) == 0


def test_every_task_runs_once_and_each_thread_starts_on_its_own_share(pool):
    tasks = Tasks(32)
    helped = pool.sqb_pool_helper_tasks()
    run(pool, tasks)
    assert sorted(t for t, _, _ in tasks.runs) == list(range(32))
    caller = tasks.by(threading.get_ident())
    helper = [t for t in range(32) if t not in caller]
    assert pool.sqb_pool_helper_tasks() - helped == len(helper) > 0, "the helper took no task in 32 tasks of 5 ms"
    # the caller's share is the first half, the helper's the second, each begun at its start; the caller, first to
    # finish its own, takes what the helper has not reached from the far end
    assert caller[0] == 0 and 16 in helper and min(helper) >= 16


def test_each_thread_has_its_own_scratch(pool):
    tasks = Tasks(16)
    run(pool, tasks)
    scratch = {}
    for _, thread, address in tasks.runs:
        scratch.setdefault(thread, set()).add(address)
    assert len(scratch) == 2 and all(len(a) == 1 for a in scratch.values())  # one buffer a thread, kept all op
    first, second = (a.pop() for a in scratch.values())
    assert first and second and abs(first - second) >= 256 and first % 64 == second % 64 == 0


def test_one_thread_runs_every_task_on_the_caller(pool):
    tasks = Tasks(8, seconds=0.0)
    helped = pool.sqb_pool_helper_tasks()
    run(pool, tasks, threads=1)
    assert tasks.by(threading.get_ident()) == list(range(8)) and pool.sqb_pool_helper_tasks() == helped


def test_ops_of_changing_sizes_and_thread_counts_from_two_callers_run_every_task_once(pool):
    # shares and reports are not reset between ops, only marked with their op's number: a share left from an op
    # with more threads, or from a larger op, must not leak into the next one
    errors = []

    def caller(seed):
        rng = np.random.default_rng(seed)
        for _ in range(150):
            count, threads = int(rng.integers(1, 40)), int(rng.integers(1, 5))
            seen = []
            kind = TaskKind(RUN(lambda job, t, scratch: seen.append(t)), SCRATCH_BYTES(lambda job: 0))
            if pool.sqb_pool_run(ctypes.byref(kind), None, count, threads) != 0 or sorted(seen) != list(range(count)):
                errors.append((count, threads, sorted(seen)))

    callers = [threading.Thread(target=caller, args=(seed,), daemon=True) for seed in (1, 2)]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in callers), "an op never finished"
    assert not errors


def bundle_session(bundle, threads):
    """As the app makes it: ORT's own pool at one thread, the kernels on `threads` (engine.session)."""
    return ort.InferenceSession(str(bundle / "model.onnx"), session_options(threads, on_kernels=True),
                                providers=["CPUExecutionProvider"], disabled_optimizers=DISABLED_OPTIMIZERS)


def test_a_process_exits_cleanly_after_its_sessions_are_freed_while_a_helper_polls(tiny_bundles):
    """ORT unloads the library with the last session options that hold it; the helpers, still polling, must not be
    left running in unmapped code (the process died of SIGSEGV before the library was pinned)."""
    bundle = tiny_bundles[("squeezebert", "sentiment")]
    code = textwrap.dedent(f"""
        import gc, sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from engine.session import OnnxSession
        from engine.tokenization import WordPieceTokenizer
        tokenizer = WordPieceTokenizer({str(bundle / "tokenizer.json")!r})
        inputs = tokenizer.single_inputs(tokenizer.tokenize("a fine film " * 30), 96, 0)
        for _ in range(3):  # each time the helper may or may not be polling as the library goes: try a few
            session = OnnxSession({str(bundle / "model.onnx")!r}, threads=2)
            for _ in range(20):
                session.run({{"input_ids": inputs.input_ids, "attention_mask": inputs.attention_mask,
                             "token_type_ids": inputs.token_type_ids}})
            del session
            gc.collect()
            time.sleep(0.01)
        print("freed")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "freed" in done.stdout, (done.returncode, done.stderr[-2000:])


@pytest.mark.parametrize("architecture,task", [("squeezebert", "qa"), ("bert", "sentiment")])
def test_a_model_run_gives_the_same_bits_when_helpers_ran_part_of_it(pool, tiny_bundles, architecture, task):
    bundle = tiny_bundles[(architecture, task)]
    tokenizer = WordPieceTokenizer(bundle / "tokenizer.json")
    inputs = tokenizer.single_inputs(tokenizer.tokenize("the quick brown fox jumps over the lazy dog " * 20), 192, 0)
    feeds = {"input_ids": inputs.input_ids, "attention_mask": inputs.attention_mask,
             "token_type_ids": inputs.token_type_ids}
    alone = bundle_session(bundle, 1)
    feeds = {i.name: feeds[i.name] for i in alone.get_inputs()}
    before = pool.sqb_pool_helper_tasks()
    want = alone.run(None, feeds)
    assert pool.sqb_pool_helper_tasks() == before  # the session's one thread reached its ops: no helper
    shared = bundle_session(bundle, 2)
    for _ in range(200):  # until a run that a helper took part in
        before = pool.sqb_pool_helper_tasks()
        got = shared.run(None, feeds)
        if pool.sqb_pool_helper_tasks() > before:
            break
    assert pool.sqb_pool_helper_tasks() > before, "no helper took part in 200 runs on two threads"
    for w, g in zip(want, got):
        np.testing.assert_array_equal(w, g)
