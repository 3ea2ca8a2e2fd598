"""Evaluation metrics in percent: accuracy, entity-level P/R/F1 with conlleval semantics, SQuAD v1.1 EM/F1."""
from __future__ import annotations

import collections
import re
import string


def accuracy(predicted: list, gold: list) -> float:
    if not gold:
        return 0.0
    return 100.0 * sum(p == g for p, g in zip(predicted, gold)) / len(gold)


def chunks(tags: list[str]) -> set[tuple[int, int, str]]:
    """Entity chunks (start, end exclusive, type) as conlleval reads them.

    A chunk starts at B-X, or at I-X whose previous tag is O or of another type; it ends before O, B-, or a change
    of type.
    """
    found = set()
    start, current = None, None
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, entity_type = tag.partition("-")
        ends = prefix in ("O", "B") or (prefix == "I" and entity_type != current)
        if current is not None and ends:
            found.add((start, i, current))
            start, current = None, None
        if prefix == "B" or (prefix == "I" and current is None):
            start, current = i, entity_type
    return found


def entity_scores(predicted: list[list[str]], gold: list[list[str]]) -> dict[str, float]:
    """Micro-averaged entity-level exact-match precision, recall and F1 over sentences."""
    tp = n_pred = n_gold = 0
    for p, g in zip(predicted, gold):
        pc, gc = chunks(p), chunks(g)
        tp += len(pc & gc)
        n_pred += len(pc)
        n_gold += len(gc)
    precision = 100.0 * tp / n_pred if n_pred else 0.0
    recall = 100.0 * tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def normalize_answer(s: str) -> str:
    """The official SQuAD v1.1 normalisation: lower case, no punctuation, no articles, single spaces."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def squad_f1(prediction: str, truth: str) -> float:
    p, t = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = collections.Counter(p) & collections.Counter(t)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(t)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: list[str], answers: list[list[str]]) -> dict[str, float]:
    """Exact match and F1 in percent, each the max over the gold answers of a question."""
    if not answers:
        return {"exact_match": 0.0, "f1": 0.0}
    em = f1 = 0.0
    for prediction, golds in zip(predictions, answers):
        em += max(float(normalize_answer(prediction) == normalize_answer(g)) for g in golds)
        f1 += max(squad_f1(prediction, g) for g in golds)
    return {"exact_match": 100.0 * em / len(answers), "f1": 100.0 * f1 / len(answers)}
