import json

import pytest

from engine.datasets import (
    DataFormatError,
    iob_to_iob2,
    read_conll,
    read_squad,
    read_sst2,
    sentence_text,
    tags_from_entities,
)


def test_sst2_reader(tmp_path):
    f = tmp_path / "dev.tsv"
    f.write_text('sentence\tlabel\nit \'s a "charming" film .\t1\nbad .\t0\n')
    rows = read_sst2(f)
    assert [(r.text, r.label) for r in rows] == [('it \'s a "charming" film .', 1), ("bad .", 0)]
    f.write_text("text\tscore\nx\t1\n")
    with pytest.raises(DataFormatError, match="header"):
        read_sst2(f)


def test_conll_reader_handles_docstart_and_iob1(tmp_path):
    f = tmp_path / "test.txt"
    f.write_text(
        "-DOCSTART- -X- -X- O\n\nEU NNP B-NP I-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP I-MISC\n\n"
        "Peter NNP B-NP I-PER\nBlackburn NNP I-NP I-PER\n"
    )
    sentences = read_conll(f)
    assert [s.tokens for s in sentences] == [["EU", "rejects", "German"], ["Peter", "Blackburn"]]
    assert sentences[0].tags == ["B-ORG", "O", "B-MISC"]
    assert sentences[1].tags == ["B-PER", "I-PER"]
    f.write_text("token NOTATAG\n")
    with pytest.raises(DataFormatError):
        read_conll(f)


def test_iob_to_iob2():
    assert iob_to_iob2(["I-PER", "I-PER", "B-PER", "I-LOC", "O", "I-ORG"]) == ["B-PER", "I-PER", "B-PER", "B-LOC", "O", "B-ORG"]


def test_squad_reader(tmp_path):
    f = tmp_path / "dev.json"
    f.write_text(json.dumps({"data": [{"title": "T", "paragraphs": [{"context": "abc def", "qas": [
        {"id": "1", "question": "q?", "answers": [{"text": "def", "answer_start": 4}, {"text": "def", "answer_start": 4}]}]}]}]}))
    (ex,) = read_squad(f)
    assert ex.answers == ["def", "def"] and ex.context[ex.answer_starts[0]:].startswith("def")
    f.write_text("[]")
    with pytest.raises(DataFormatError):
        read_squad(f)


def test_entity_spans_back_to_tags():
    text, spans = sentence_text(["New", "York", "is", "big"])
    assert text == "New York is big" and spans[1] == (4, 8)
    assert tags_from_entities(spans, [(0, 8, "LOC")]) == ["B-LOC", "I-LOC", "O", "O"]
