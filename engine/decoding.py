"""Pure post-processing: logits and token offsets in, spans over the user's original text out.

Nothing here touches a model or a tokenizer, so each function is tested directly on small arrays.
"""
from __future__ import annotations

import math
import string
from dataclasses import dataclass

import numpy as np

# characters that do not make an answer different when they only surround it
ANSWER_EDGE = string.punctuation + string.whitespace


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def softmax_row(values: list[float]) -> list[float]:
    """softmax of one short row in plain floats: for a sentence's few classes, each numpy call costs more than the
    arithmetic (40 us for `softmax` just after a model run, the whole post-processing)."""
    top = max(values)
    weights = [math.exp(v - top) for v in values]
    total = sum(weights)
    return [w / total for w in weights]


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def merge_window_logits(n_tokens: int, spans: list[tuple[int, int]], window_logits: list[np.ndarray]) -> np.ndarray:
    """Per-token logits from overlapping windows: each token takes the window where it sits furthest from an edge.

    `window_logits[i]` holds one row per token of `spans[i]` (special tokens already removed). A token therefore
    appears exactly once in the result, so overlapping windows never produce duplicate entities.
    """
    if n_tokens == 0:
        width = window_logits[0].shape[-1] if window_logits else 0
        return np.zeros((0, width), dtype=np.float32)
    out = np.zeros((n_tokens, window_logits[0].shape[-1]), dtype=np.float32)
    best_margin = np.full(n_tokens, -1, dtype=np.int64)
    for (start, end), logits in zip(spans, window_logits):
        positions = np.arange(start, end)
        margin = np.minimum(positions - start, end - 1 - positions)
        better = margin > best_margin[start:end]
        out[start:end][better] = logits[: end - start][better]
        best_margin[start:end][better] = margin[better]
    return out


@dataclass(frozen=True)
class Word:
    start: int  # character offsets into the original text
    end: int
    first_token: int


def group_words(word_ids: np.ndarray, offsets: np.ndarray) -> list[Word]:
    """Words as the pre-tokenizer split them, spanning all their sub-word tokens."""
    words: list[Word] = []
    previous = None
    for i, (w, (a, b)) in enumerate(zip(word_ids.tolist(), offsets.tolist())):
        if w >= 0 and w == previous:
            last = words[-1]
            words[-1] = Word(last.start, max(last.end, b), last.first_token)
        else:
            words.append(Word(a, b, i))
        previous = w
    return words


@dataclass(frozen=True)
class EntitySpan:
    entity_group: str
    start: int
    end: int
    score: float


def decode_iob(labels: list[str], scores: list[float], words: list[Word]) -> list[EntitySpan]:
    """IOB tags per word into entity spans, with conlleval's reading of ill-formed sequences.

    An I-X that follows O or another type opens a new entity; B-X always does. The span runs from the first word's
    start to the last word's end in the original text; its score is the mean of its words' scores.
    """
    spans: list[EntitySpan] = []
    current: list[int] = []
    current_type = None

    def close():
        if current:
            span_scores = [scores[i] for i in current]
            spans.append(
                EntitySpan(current_type, words[current[0]].start, words[current[-1]].end, float(np.mean(span_scores)))
            )
            current.clear()

    for i, label in enumerate(labels):
        prefix, _, entity_type = label.partition("-")
        if prefix == "B" or (prefix == "I" and entity_type != current_type):
            close()
            current_type = entity_type
            current.append(i)
        elif prefix == "I":
            current.append(i)
        else:
            close()
            current_type = None
    close()
    return spans


@dataclass(frozen=True)
class SpanCandidate:
    start: int  # character offsets into the context
    end: int
    logit: float  # start logit + end logit: the ranking key across windows
    score: float  # probability of this span within its window


def best_spans(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    offsets: np.ndarray,
    max_answer_tokens: int,
    top_k: int,
) -> list[SpanCandidate]:
    """Top-k spans of one window with start <= end < start + max_answer_tokens, over context tokens only.

    `start_logits`, `end_logits` and `offsets` cover the window's context tokens and nothing else, so the question
    and special tokens can never be chosen.
    """
    n = len(start_logits)
    if n == 0:
        return []
    log_p_start = log_softmax(start_logits)
    log_p_end = log_softmax(end_logits)
    # Only the band start <= end < start + max_answer_tokens is scored: [n, width] instead of [n, n], so a full
    # 256-token window costs well under a millisecond.
    width = min(max_answer_tokens, n)
    starts = np.arange(n)[:, None]
    ends = starts + np.arange(width)[None, :]
    inside = ends < n
    ends = np.minimum(ends, n - 1)
    pair = np.asarray(start_logits, np.float64)[:, None] + np.asarray(end_logits, np.float64)[ends]
    pair[~inside] = -np.inf
    flat = pair.ravel()
    k = min(top_k, int(inside.sum()))
    if k <= 0:
        return []
    top = np.argpartition(-flat, k - 1)[:k]
    top = top[np.argsort(-flat[top], kind="stable")]
    out = []
    for index in top:
        s, e = int(index) // width, int(ends.flat[index])
        out.append(
            SpanCandidate(
                start=int(offsets[s][0]),
                end=int(offsets[e][1]),
                logit=float(flat[index]),
                score=float(np.exp(log_p_start[s] + log_p_end[e])),
            )
        )
    return out


def merge_span_candidates(candidates: list[SpanCandidate], top_k: int, text: str | None = None) -> list[SpanCandidate]:
    """Best-first across windows, one entry per answer: overlapping windows propose the same character spans, and
    with `text` (the context) spans that differ only by surrounding punctuation or spaces ("Eiffel" and "Eiffel,")
    or that repeat the same words elsewhere count as one, the best kept."""
    seen: set = set()
    out = []
    for c in sorted(candidates, key=lambda c: c.logit, reverse=True):
        key = (c.start, c.end) if text is None else text[c.start : c.end].strip(ANSWER_EDGE)
        if key in seen:
            continue
        seen.add(key)
        out.append(c)
        if len(out) == top_k:
            break
    return out
