import numpy as np
import pytest

from engine.decoding import (
    SpanCandidate,
    Word,
    best_spans,
    decode_iob,
    group_words,
    merge_span_candidates,
    merge_window_logits,
    softmax,
    softmax_row,
)


def test_softmax_rows_sum_to_one():
    p = softmax(np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, -1000.0]]))
    assert np.allclose(p.sum(-1), 1.0)
    assert p[1, 0] == pytest.approx(0.5)


@pytest.mark.parametrize("row", [[1.0, 2.0, 3.0], [1000.0, 1000.0, -1000.0], [-3.5, 0.25], [7.0]])
def test_softmax_row_is_softmax_in_plain_floats(row):
    got = softmax_row(row)
    assert all(type(p) is float for p in got)
    np.testing.assert_allclose(got, softmax(np.array(row)), rtol=1e-12)


def test_merge_window_logits_prefers_the_most_central_window():
    # tokens 0..5, windows [0,4) and [2,6); token 2 is at margin 1 in the first, 0 in the second
    first = np.arange(4)[:, None].astype(np.float32) + 100
    second = np.arange(2, 6)[:, None].astype(np.float32) + 200
    merged = merge_window_logits(6, [(0, 4), (2, 6)], [first, second])
    assert merged[:, 0].tolist() == [100, 101, 102, 203, 204, 205]


def test_group_words_spans_all_subtokens():
    words = group_words(np.array([0, 0, 1, 2, 2, 2]), np.array([[0, 3], [3, 5], [6, 7], [8, 9], [9, 10], [10, 12]]))
    assert words == [Word(0, 5, 0), Word(6, 7, 2), Word(8, 12, 3)]


def words_at(*spans):
    return [Word(a, b, i) for i, (a, b) in enumerate(spans)]


def test_decode_iob_basic_and_scores():
    words = words_at((0, 5), (6, 11), (12, 17), (18, 20), (21, 26))
    spans = decode_iob(["B-PER", "I-PER", "O", "O", "B-LOC"], [0.9, 0.7, 0.99, 0.99, 0.8], words)
    assert [(s.entity_group, s.start, s.end) for s in spans] == [("PER", 0, 11), ("LOC", 21, 26)]
    assert spans[0].score == pytest.approx(0.8)


def test_decode_iob_ill_formed_sequences_follow_conlleval():
    words = words_at((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))
    # I- after O opens an entity; a type change opens another; B- after I- of the same type splits
    spans = decode_iob(["I-ORG", "I-ORG", "I-LOC", "B-LOC", "I-LOC"], [1] * 5, words)
    assert [(s.entity_group, s.start, s.end) for s in spans] == [("ORG", 0, 3), ("LOC", 4, 5), ("LOC", 6, 9)]


def test_best_spans_respects_order_and_length():
    start = np.array([-1.0, 5.0, 0.0, 0.0])
    end = np.array([9.0, 0.0, 0.0, 4.0])  # end at 0 (9.0) lies before the best start: not allowed
    offsets = np.array([[0, 2], [3, 5], [6, 8], [9, 11]])
    spans = best_spans(start, end, offsets, max_answer_tokens=30, top_k=3)
    assert (spans[0].start, spans[0].end) == (3, 11)
    assert spans[0].logit == pytest.approx(9.0)
    assert all(s.start <= s.end for s in spans)
    short = best_spans(start, end, offsets, max_answer_tokens=2, top_k=1)[0]
    assert (short.start, short.end) == (0, 2)  # (1, 3) is 3 tokens long: too long; (0, 0) scores 8


def test_best_spans_scores_are_probabilities():
    rng = np.random.default_rng(0)
    s, e = rng.normal(size=12), rng.normal(size=12)
    offsets = np.stack([np.arange(12) * 2, np.arange(12) * 2 + 1], 1)
    spans = best_spans(s, e, offsets, 5, 100)
    assert all(0 < c.score <= 1 for c in spans)
    assert sum(c.score for c in spans) <= 1 + 1e-9
    assert [c.logit for c in spans] == sorted((c.logit for c in spans), reverse=True)


@pytest.mark.parametrize("n, max_answer, top_k", [(1, 30, 5), (7, 3, 100), (40, 30, 10), (256, 30, 20)])
def test_best_spans_match_every_allowed_pair_ranked(n, max_answer, top_k):
    rng = np.random.default_rng(n)
    s, e = rng.normal(size=n), rng.normal(size=n)
    offsets = np.stack([np.arange(n) * 3, np.arange(n) * 3 + 2], 1)
    every = sorted(
        ((s[i] + e[j], i, j) for i in range(n) for j in range(i, min(n, i + max_answer))), reverse=True
    )[:top_k]
    spans = best_spans(s, e, offsets, max_answer, top_k)
    assert [(c.start, c.end) for c in spans] == [(offsets[i][0], offsets[j][1]) for _, i, j in every]
    assert [c.logit for c in spans] == pytest.approx([v for v, _, _ in every])


def test_merge_span_candidates_dedupes_across_windows():
    merged = merge_span_candidates(
        [SpanCandidate(0, 4, 3.0, 0.5), SpanCandidate(0, 4, 5.0, 0.6), SpanCandidate(6, 9, 4.0, 0.2)], top_k=5
    )
    assert [(c.start, c.end, c.logit) for c in merged] == [(0, 4, 5.0), (6, 9, 4.0)]


def test_merge_span_candidates_with_text_counts_punctuation_variants_once():
    text = "Built by Eiffel, in Paris. Eiffel"
    candidates = [SpanCandidate(9, 15, 5.0, 0.5), SpanCandidate(9, 16, 4.0, 0.2), SpanCandidate(20, 25, 3.0, 0.1),
                  SpanCandidate(27, 33, 2.5, 0.05), SpanCandidate(0, 5, 2.0, 0.01)]
    merged = merge_span_candidates(candidates, top_k=3, text=text)
    assert [text[c.start : c.end] for c in merged] == ["Eiffel", "Paris", "Built"]
    # without the text only identical character spans merge
    assert len(merge_span_candidates(candidates, top_k=5)) == 5


def test_best_spans_empty_context():
    assert best_spans(np.zeros(0), np.zeros(0), np.zeros((0, 2)), 30, 5) == []
