import pytest

from engine.metrics import accuracy, chunks, entity_scores, normalize_answer, squad_scores


def test_accuracy():
    assert accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 50.0


def test_chunks_conlleval_edge_cases():
    assert chunks(["B-PER", "I-PER", "O", "B-LOC"]) == {(0, 2, "PER"), (3, 4, "LOC")}
    assert chunks(["O", "I-PER", "I-PER"]) == {(1, 3, "PER")}  # I- after O opens a chunk
    assert chunks(["B-PER", "I-LOC"]) == {(0, 1, "PER"), (1, 2, "LOC")}  # type change
    assert chunks(["B-PER", "B-PER"]) == {(0, 1, "PER"), (1, 2, "PER")}
    assert chunks(["I-ORG"]) == {(0, 1, "ORG")}


def test_entity_scores_hand_computed():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "B-MISC"]]
    # gold chunks: PER(0,2) LOC(3,4) ORG(0,1) = 3; predicted: PER(0,1) LOC ORG MISC = 4; correct: LOC, ORG = 2
    s = entity_scores(pred, gold)
    assert s["precision"] == pytest.approx(50.0)
    assert s["recall"] == pytest.approx(200 / 3)
    assert s["f1"] == pytest.approx(2 * 50 * (200 / 3) / (50 + 200 / 3))


def test_squad_normalisation_and_scores():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("an apple, a pear") == "apple pear"
    s = squad_scores(["in 1889", "Paris France"], [["1889"], ["Paris", "Paris, France"]])
    # q1: EM 0, F1 = 2*(1/2*1)/(1/2+1) = 2/3; q2: EM 1 (second gold), F1 1
    assert s["exact_match"] == pytest.approx(50.0)
    assert s["f1"] == pytest.approx(100 * (2 / 3 + 1) / 2)
