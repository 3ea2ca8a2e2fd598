"""What the app needs from the engine: pipelines loaded once and kept, and a summary of each model for display."""
from __future__ import annotations

from dataclasses import dataclass

from engine.bundle import load_bundle, resolve
from engine.errors import Cancelled, EngineError, InferenceError
from engine.pipelines import PIPELINES, Pipeline

__all__ = ["Cancelled", "EngineError", "ModelStore", "ModelSummary"]


@dataclass(frozen=True)
class ModelSummary:
    task: str
    model: str  # "squeezebert" | "bert" (or a bundle path)
    display_name: str
    architecture: str
    precision: str
    parameters: int
    size_mb: float
    scores: dict  # from the manifest: validation scores, as measured when the bundle was built


def warm_up(pipeline: Pipeline) -> None:
    """One throwaway call, so the first request a user makes is not the one that pays for lazy initialisation."""
    if pipeline.task == "qa":
        pipeline("What is this?", "This is a warm-up.")
    else:
        pipeline("This is a warm-up.")


class ModelStore:
    """Pipelines by (task, model), created on first use; a failed load is not cached, so a fixed file loads later."""

    def __init__(self, threads: int | None = None):
        self._threads = threads
        self._pipelines: dict[tuple[str, str], Pipeline] = {}

    def is_loaded(self, task: str, model: str) -> bool:
        return (task, model) in self._pipelines

    def get(self, task: str, model: str) -> Pipeline:
        key = (task, model)
        if key not in self._pipelines:
            bundle = load_bundle(resolve(model, task), task)
            pipeline = PIPELINES[task](bundle, self._threads)
            try:
                warm_up(pipeline)
            except EngineError:
                raise
            except Exception as exc:  # a model that cannot run a trivial input is unusable: say so, keep going
                raise InferenceError(f"{bundle.path.name} failed to start: {exc.__class__.__name__}: {exc}") from None
            self._pipelines[key] = pipeline
        return self._pipelines[key]

    def summary(self, task: str, model: str) -> ModelSummary:
        bundle = self.get(task, model).bundle
        m = bundle.manifest
        return ModelSummary(
            task=task,
            model=model,
            display_name=bundle.display_name,
            architecture=bundle.architecture,
            precision=m.get("precision", "int8"),
            parameters=int(m.get("parameters", 0)),
            size_mb=bundle.size_bytes / 1e6,
            scores=m.get("scores", {}),
        )
