"""Sample inputs shipped in assets/samples/, one JSON file per task."""
from __future__ import annotations

import json

from engine.bundle import assets_dir


def load_samples(task: str) -> list[dict]:
    """[{title, text}] for sentiment/entities, [{title, context, questions}] for qa; [] if the file is missing."""
    path = assets_dir() / "samples" / f"{task}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
