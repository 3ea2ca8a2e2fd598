"""Write docs/models.md from the manifests in assets/models, so the table always matches what ships.

  python -m engine.build.model_card
"""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
METRIC = {"sentiment": ("accuracy", "accuracy"), "entities": ("f1", "entity F1"), "qa": ("f1", "F1")}


def short_recipe(recipe: str) -> str:
    """Each stage's recipes command without the train command it expands to."""
    return " && ".join(stage.split("   #")[0] for stage in recipe.split(" && "))


def rows(models_dir: Path) -> list[dict]:
    out = []
    for manifest_file in sorted(models_dir.glob("*/manifest.json")):
        m = json.loads(manifest_file.read_text())
        key, name = METRIC[m["task"]]
        scores = m.get("scores", {})
        int8 = (scores.get("validation_int8") or {}).get(key)
        fp32 = (scores.get("validation_fp32") or {}).get(key)
        extra = ""
        if m["task"] == "qa" and scores.get("validation_int8"):
            extra = f" (EM {scores['validation_int8'].get('exact_match', 0):.1f})"
        out.append({
            "bundle": manifest_file.parent.name, "task": m["task"], "metric": name,
            "int8": f"{int8:.2f}{extra}" if int8 is not None else "—", "fp32": f"{fp32:.2f}" if fp32 is not None else "—",
            "split": scores.get("validation_split", ""),
            "size": f"{m['files']['model.onnx']['bytes'] / 1e6:.1f} MB", "params": f"{m['parameters'] / 1e6:.1f} M",
            "minutes": scores.get("training_minutes"), "recipe": short_recipe(m.get("recipe", "")),
            "parity": m.get("parity", {}).get("int8", {}),
        })
    return out


def render(models_dir: Path) -> str:
    lines = [
        "# Bundled models",
        "",
        "Generated from `assets/models/*/manifest.json` by `python -m engine.build.model_card`.",
        "Validation scores are on this project's validation splits (SST-2 validation, CoNLL-2003 valid, SQuAD v1.1",
        "train with its last 44 articles held out); the standard test sets are scored separately with `evaluate`.",
        "",
        "| bundle | task | validation int8 | validation fp32 | model.onnx | parameters | training (min) | recipe |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows(models_dir):
        minutes = f"{r['minutes']:.0f}" if isinstance(r["minutes"], (int, float)) else "—"
        lines.append(f"| {r['bundle']} | {r['task']} ({r['metric']}) | {r['int8']} | {r['fp32']} | {r['size']} | "
                     f"{r['params']} | {minutes} | `{r['recipe']}` |")
    return "\n".join(lines) + "\n"


def main() -> int:
    models = ROOT / "assets" / "models"
    body = render(models)
    notes = ROOT / "docs" / "models-notes.md"
    if notes.is_file():
        body += "\n" + notes.read_text()
    (ROOT / "docs" / "models.md").write_text(body)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
