"""Result types, with the field names Hugging Face pipeline users know; every result says which model made it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Timing:
    tokenize_ms: float
    inference_ms: float
    postprocess_ms: float
    total_ms: float
    n_tokens: int


@dataclass(frozen=True)
class ModelInfo:
    architecture: str  # "squeezebert" | "bert"
    precision: str  # "int8" | "fp32"
    bundle: str  # folder name


class _Result:
    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SentimentResult(_Result):
    label: str
    score: float
    scores: dict[str, float]  # every class
    n_windows: int
    model: ModelInfo
    timing: Timing
    task: str = "sentiment"


@dataclass(frozen=True)
class Entity:
    entity_group: str
    word: str  # text[start:end] of the original text
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class EntitiesResult(_Result):
    entities: list[Entity]
    n_windows: int
    model: ModelInfo
    timing: Timing
    task: str = "entities"


@dataclass(frozen=True)
class Answer:
    answer: str  # context[start:end] of the original context
    score: float
    start: int
    end: int


@dataclass(frozen=True)
class QAResult(_Result):
    answer: str
    score: float
    start: int
    end: int
    alternatives: list[Answer] = field(default_factory=list)
    n_windows: int = 1
    model: ModelInfo | None = None
    timing: Timing | None = None
    task: str = "qa"
