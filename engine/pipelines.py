"""Task pipelines: pre-process (tokenise, window) -> run (ONNX Runtime) -> post-process (pure decoding)."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from engine.bundle import Bundle, load_bundle, resolve
from engine.errors import Cancelled, InputError
from engine.decoding import (best_spans, decode_iob, group_words, merge_span_candidates, merge_window_logits, softmax,
                             softmax_row)
from engine.results import Answer, EntitiesResult, Entity, ModelInfo, QAResult, SentimentResult, Timing
from engine.session import OnnxSession
from engine.tokenization import ModelInputs, shared_tokenizer

MAX_CHARS = 200_000  # a long paste is fine; a whole book in one box is a mistake worth saying so
WINDOWS_PER_RUN = 16  # windows of a long text go through the model in batches of this many
MAX_QUESTION_TOKENS = 64
MAX_ANSWER_TOKENS = 30


def check_text(text: str, what: str = "text") -> None:
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"The {what} is empty: type or paste something to analyse.")
    if len(text) > MAX_CHARS:
        raise InputError(f"The {what} is too long ({len(text):,} characters; the limit is {MAX_CHARS:,}).")


class Pipeline:
    task: str = ""

    def __init__(self, bundle: Bundle, threads: int | None = None):
        if bundle.task != self.task:
            raise ValueError(f"bundle {bundle.path} is for {bundle.task}, not {self.task}")
        self.bundle = bundle
        self.tokenizer = shared_tokenizer(bundle.tokenizer_file)
        self.session = OnnxSession(bundle.model_file, threads, bundle.runs_on_kernels)
        self.max_length = bundle.max_length
        self.stride = self.max_length // 4
        self.info = ModelInfo(bundle.architecture, bundle.manifest.get("precision", "int8"), bundle.path.name)

    def _run(self, inputs: ModelInputs, cancel: threading.Event | None) -> dict[str, np.ndarray]:
        """All windows through the model, a few at a time; outputs concatenated along the batch.

        `cancel` is checked between batches, so a long text stops within one batch of being abandoned.
        """
        parts = []
        for b in range(0, len(inputs.spans), WINDOWS_PER_RUN):
            if cancel is not None and cancel.is_set():
                raise Cancelled("request cancelled")
            rows = slice(b, b + WINDOWS_PER_RUN)
            n = inputs.columns(rows)  # drop the padding columns this chunk does not need
            parts.append(
                self.session.run(
                    {
                        "input_ids": inputs.input_ids[rows, :n],
                        "attention_mask": inputs.attention_mask[rows, :n],
                        "token_type_ids": inputs.token_type_ids[rows, :n],
                    }
                )
            )
        if len(parts) == 1:  # one batch (most texts): nothing to pad or join
            return parts[0]
        out = {}
        for name in parts[0]:
            arrays = [p[name] for p in parts]
            if arrays[0].ndim > 1:  # pad the sequence axis to the widest chunk
                width = max(a.shape[1] for a in arrays)
                arrays = [np.pad(a, [(0, 0), (0, width - a.shape[1])] + [(0, 0)] * (a.ndim - 2)) for a in arrays]
            out[name] = np.concatenate(arrays)
        return out


class _Clock:
    def __init__(self):
        self.marks = [time.perf_counter()]

    def mark(self):
        self.marks.append(time.perf_counter())

    def timing(self, n_tokens: int) -> Timing:
        t = self.marks
        ms = [round((b - a) * 1000, 3) for a, b in zip(t, t[1:])]
        return Timing(ms[0], ms[1], ms[2], round((t[-1] - t[0]) * 1000, 3), n_tokens)


class SentimentPipeline(Pipeline):
    """Texts longer than one window are read in overlapping windows whose logits are averaged."""

    task = "sentiment"

    def __call__(self, text: str, cancel: threading.Event | None = None) -> SentimentResult:
        check_text(text)
        clock = _Clock()
        tokens = self.tokenizer.tokenize(text, with_offsets=False)
        inputs = self.tokenizer.single_inputs(tokens, self.max_length, self.stride)
        clock.mark()
        logits = self._run(inputs, cancel)["logits"]
        clock.mark()
        # one window needs no mean, and plain floats from here on: each numpy call just after a run is slow
        probs = softmax_row((logits[0] if len(logits) == 1 else logits.mean(0)).tolist())
        best = max(range(len(probs)), key=probs.__getitem__)
        scores = dict(zip(self.bundle.labels, probs))
        clock.mark()
        return SentimentResult(
            self.bundle.labels[best], probs[best], scores, len(inputs.spans), self.info,
            clock.timing(inputs.n_tokens),
        )


class EntitiesPipeline(Pipeline):
    """Sub-word predictions to words (first sub-token decides), IOB to spans over the original text."""

    task = "entities"

    def __call__(self, text: str, cancel: threading.Event | None = None) -> EntitiesResult:
        check_text(text)
        clock = _Clock()
        tokens = self.tokenizer.tokenize(text)
        inputs = self.tokenizer.single_inputs(tokens, self.max_length, self.stride)
        clock.mark()
        logits = self._run(inputs, cancel)["logits"]
        clock.mark()
        per_window = [logits[i, 1 : 1 + b - a] for i, (a, b) in enumerate(inputs.spans)]
        probs = softmax(merge_window_logits(len(tokens), inputs.spans, per_window))
        words = group_words(tokens.word_ids, tokens.offsets)
        first = [w.first_token for w in words]
        labels = [self.bundle.labels[i] for i in probs[first].argmax(-1)] if words else []
        scores = probs[first].max(-1).tolist() if words else []
        entities = [
            Entity(s.entity_group, text[s.start : s.end], s.start, s.end, s.score)
            for s in decode_iob(labels, scores, words)
        ]
        clock.mark()
        return EntitiesResult(entities, len(inputs.spans), self.info, clock.timing(inputs.n_tokens))


class QAPipeline(Pipeline):
    """Question + context in doc-stride windows; the best span over all windows by start+end logit."""

    task = "qa"

    def __call__(
        self, question: str, context: str, top_k: int = 5, cancel: threading.Event | None = None
    ) -> QAResult:
        check_text(question, "question")
        check_text(context, "context")
        clock = _Clock()
        q_tokens, c_tokens = self.tokenizer.tokenize(question), self.tokenizer.tokenize(context)
        inputs = self.tokenizer.pair_inputs(q_tokens, c_tokens, self.max_length, self.stride, MAX_QUESTION_TOKENS)
        clock.mark()
        out = self._run(inputs, cancel)
        clock.mark()
        candidates = []
        for i, ((a, b), shift) in enumerate(zip(inputs.spans, inputs.text_offset)):
            columns = slice(shift, shift + b - a)
            candidates += best_spans(
                out["start_logits"][i, columns], out["end_logits"][i, columns], c_tokens.offsets[a:b],
                MAX_ANSWER_TOKENS, 2 * top_k,  # spare candidates: near-duplicates are merged below
            )
        merged = merge_span_candidates(candidates, top_k, context)
        ranked = [Answer(context[c.start : c.end], c.score, c.start, c.end) for c in merged]
        clock.mark()
        timing = clock.timing(inputs.n_tokens)
        if not ranked:  # a context of only whitespace-like tokens the tokenizer drops
            return QAResult("", 0.0, 0, 0, [], len(inputs.spans), self.info, timing)
        best = ranked[0]
        return QAResult(best.answer, best.score, best.start, best.end, ranked[1:], len(inputs.spans), self.info, timing)


PIPELINES = {p.task: p for p in (SentimentPipeline, EntitiesPipeline, QAPipeline)}


def load_pipeline(task: str, model: str | Path = "squeezebert", threads: int | None = None) -> Pipeline:
    """The pipeline for `task` from a bundled model name or a bundle folder; raises BundleError if unusable."""
    if task not in PIPELINES:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(PIPELINES)}")
    bundle = load_bundle(resolve(str(model), task), task)
    return PIPELINES[task](bundle, threads)
