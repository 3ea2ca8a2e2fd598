"""Readers for the standard data formats (SST-2 TSV, CoNLL-2003, SQuAD v1.1 JSON). Pure Python, no Qt, no torch."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path


from engine.errors import DataFormatError  # noqa: E402  (re-exported)

# The project's training data: ../shared/data beside the repository (never committed).
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@dataclass(frozen=True)
class SentimentExample:
    text: str
    label: int


@dataclass(frozen=True)
class TaggedSentence:
    tokens: list[str]
    tags: list[str]  # IOB2 after reading, whatever the file used


@dataclass(frozen=True)
class QAExample:
    id: str
    title: str
    context: str
    question: str
    answers: list[str]
    answer_starts: list[int] = field(default_factory=list)


def read_sst2(path: str | Path) -> list[SentimentExample]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["sentence", "label"]:
            raise DataFormatError(f"{path}: expected a TSV with header 'sentence<TAB>label'")
        examples = []
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < 2 or row[1].strip() not in ("0", "1"):
                raise DataFormatError(f"{path}:{line_no}: expected 'sentence<TAB>0|1'")
            examples.append(SentimentExample(row[0], int(row[1])))
    return examples


def read_conll(path: str | Path) -> list[TaggedSentence]:
    """CoNLL-2003: `token ... tag` per line (tag last), blank lines between sentences, -DOCSTART- skipped."""
    sentences: list[TaggedSentence] = []
    tokens: list[str] = []
    tags: list[str] = []

    def flush():
        if tokens:
            sentences.append(TaggedSentence(list(tokens), iob_to_iob2(tags)))
            tokens.clear()
            tags.clear()

    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                flush()
                continue
            if parts[0] == "-DOCSTART-":
                flush()
                continue
            tag = parts[-1]
            if len(parts) < 2 or not (tag == "O" or tag[:2] in ("B-", "I-")):
                raise DataFormatError(f"{path}:{line_no}: expected 'token ... tag' with an IOB tag")
            tokens.append(parts[0])
            tags.append(tag)
    flush()
    return sentences


def iob_to_iob2(tags: list[str]) -> list[str]:
    """IOB1 (I- may open an entity) to IOB2 (every entity opens with B-); IOB2 passes unchanged."""
    out = []
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and (previous == "O" or previous[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
        previous = tag
    return out


def read_squad(path: str | Path) -> list[QAExample]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)["data"]
        examples = []
        for article in data:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    examples.append(
                        QAExample(
                            id=qa["id"],
                            title=article.get("title", ""),
                            context=paragraph["context"],
                            question=qa["question"],
                            answers=[a["text"] for a in qa["answers"]],
                            answer_starts=[a["answer_start"] for a in qa["answers"]],
                        )
                    )
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataFormatError(f"{path}: not SQuAD v1.1 JSON ({exc.__class__.__name__}: {exc})") from None
    return examples


# Label sets shared by training, export and the manifests.
SENTIMENT_LABELS = ["negative", "positive"]
ENTITY_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def sentence_text(tokens: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """The tokens joined by single spaces, and each token's character span in that text."""
    spans, position = [], 0
    for token in tokens:
        spans.append((position, position + len(token)))
        position += len(token) + 1
    return " ".join(tokens), spans


def tags_from_entities(token_spans: list[tuple[int, int]], entities: list[tuple[int, int, str]]) -> list[str]:
    """IOB2 tags per token from character-level entities (start, end, type): a token inside an entity takes it."""
    tags = ["O"] * len(token_spans)
    for start, end, entity_type in entities:
        inside = [i for i, (a, b) in enumerate(token_spans) if a < end and b > start]
        for n, i in enumerate(inside):
            tags[i] = ("B-" if n == 0 else "I-") + entity_type
    return tags
