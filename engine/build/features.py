"""Training features: the same tokenizer and windowing as inference, with labels attached."""
from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from engine.datasets import ENTITY_LABELS, QAExample, SentimentExample, TaggedSentence, sentence_text
from engine.tokenization import WordPieceTokenizer

IGNORE = -100


@dataclass
class Feature:
    input_ids: np.ndarray
    token_type_ids: np.ndarray
    labels: np.ndarray | int  # class id, per-token tags, or (start, end) positions
    example: int  # index of the source example


def sentiment_features(tok: WordPieceTokenizer, examples: list[SentimentExample], max_length: int) -> list[Feature]:
    out = []
    for n, ex in enumerate(examples):
        ids = tok.tokenize(ex.text).ids[: max_length - 2]
        row = np.concatenate(([tok.cls_id], ids, [tok.sep_id]))
        out.append(Feature(row, np.zeros_like(row), ex.label, n))
    return out


def entity_token_labels(tok: WordPieceTokenizer, sentence: TaggedSentence) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and labels for one sentence, labelled the way inference reads them.

    Inference labels every pre-tokenizer word by its first sub-token, and the pre-tokenizer splits CoNLL tokens such
    as "U.S." further; so each pre-tokenizer word gets its CoNLL token's tag (B- becoming I- after the first piece).
    """
    label_id = {label: i for i, label in enumerate(ENTITY_LABELS)}
    text, spans = sentence_text(sentence.tokens)
    starts = [a for a, _ in spans]
    tokens = tok.tokenize(text)
    labels = np.full(len(tokens), IGNORE, dtype=np.int64)
    previous_word = None
    for i, (w, (a, _)) in enumerate(zip(tokens.word_ids.tolist(), tokens.offsets.tolist())):
        if w != previous_word:
            k = bisect.bisect_right(starts, a) - 1
            tag = sentence.tags[k]
            if a != starts[k] and tag.startswith("B-"):
                tag = "I-" + tag[2:]
            labels[i] = label_id[tag]
        previous_word = w
    return tokens.ids, labels


def entity_features(tok: WordPieceTokenizer, sentences: list[TaggedSentence], max_length: int) -> list[Feature]:
    out = []
    for n, sentence in enumerate(sentences):
        ids, labels = entity_token_labels(tok, sentence)
        for a in range(0, max(len(ids), 1), max_length - 2):
            row = np.concatenate(([tok.cls_id], ids[a : a + max_length - 2], [tok.sep_id]))
            lab = np.concatenate(([IGNORE], labels[a : a + max_length - 2], [IGNORE]))
            out.append(Feature(row, np.zeros_like(row), lab, n))
    return out


def qa_features(
    tok: WordPieceTokenizer, examples: list[QAExample], max_length: int, stride: int, max_question: int
) -> list[Feature]:
    """One feature per window; the answer's token positions, or (0, 0) on [CLS] when the window misses it."""
    out = []
    for n, ex in enumerate(examples):
        question, context = tok.tokenize(ex.question), tok.tokenize(ex.context)
        inputs = tok.pair_inputs(question, context, max_length, stride, max_question)
        answer_start = ex.answer_starts[0]
        answer_end = answer_start + len(ex.answers[0])
        ends = context.offsets[:, 1]
        begins = context.offsets[:, 0]
        first = int(np.searchsorted(ends, answer_start, side="right"))
        last = int(np.searchsorted(begins, answer_end, side="left")) - 1
        for row, ((a, b), shift) in enumerate(zip(inputs.spans, inputs.text_offset)):
            length = int(inputs.attention_mask[row].sum())
            if a <= first <= last < b:
                positions = (shift + first - a, shift + last - a)
            else:
                positions = (0, 0)
            out.append(
                Feature(inputs.input_ids[row, :length], inputs.token_type_ids[row, :length], np.array(positions), n)
            )
    return out
