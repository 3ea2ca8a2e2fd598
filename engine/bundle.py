"""Model bundles: a folder with model.onnx, tokenizer.json and manifest.json, verified before anything loads."""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

TASKS = ("sentiment", "entities", "qa")
MODELS = ("squeezebert", "bert")
REQUIRED_FILES = ("model.onnx", "tokenizer.json")


from engine import native  # noqa: E402
from engine.errors import BundleError  # noqa: E402, F401  (re-exported)


def assets_dir() -> Path:
    """assets/ beside main.py, or inside the PyInstaller bundle when frozen."""
    base = Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parent.parent))
    return base / "assets"


MODELS_DIR_ENV = "SQUEEZEBERT_MODELS_DIR"
# How a manifest names engine.build.fuse's rewrite that runs a sentence head's last layer on [CLS] alone after its
# keys and values (the benchmark counts the multiply-adds a bundle does by it).
CLS_ONLY_SCHEME = "the last layer on [CLS] alone after its keys and values"
# How it names an int8 export whose encoder layers are engine.native's ops (engine.build.export)
KERNELS_SCHEME = f"encoder layers in {native.OP}"


def models_dir() -> Path:
    """assets/models, unless $SQUEEZEBERT_MODELS_DIR points at another folder of bundles."""
    override = os.environ.get(MODELS_DIR_ENV)
    return Path(override) if override else assets_dir() / "models"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: dict

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def architecture(self) -> str:
        return self.manifest["architecture"]

    @property
    def labels(self) -> list[str]:
        return self.manifest.get("labels", [])

    @property
    def max_length(self) -> int:
        return int(self.manifest["max_sequence_length"])

    @property
    def model_file(self) -> Path:
        return self.path / "model.onnx"

    @property
    def tokenizer_file(self) -> Path:
        return self.path / "tokenizer.json"

    @property
    def size_bytes(self) -> int:
        return sum(int(f["bytes"]) for f in self.manifest["files"].values())

    @property
    def last_layer_on_cls_only(self) -> bool:
        return CLS_ONLY_SCHEME in self.manifest.get("onnx", {}).get("onnxruntime_quantization", "")

    @property
    def runs_on_kernels(self) -> bool:
        """Its encoder is engine.native's ops, which run on threads of their own (engine.session)."""
        return KERNELS_SCHEME in self.manifest.get("onnx", {}).get("onnxruntime_quantization", "")

    @property
    def display_name(self) -> str:
        return "SqueezeBERT" if self.architecture == "squeezebert" else "BERT"


def resolve(model: str, task: str) -> Path:
    """A model name ('squeezebert' or 'bert') to its bundled folder; anything else is taken as a bundle path."""
    if model in MODELS:
        return models_dir() / f"{model}-{task}"
    return Path(model)


def load_bundle(path: str | Path, task: str | None = None, verify: bool = True) -> Bundle:
    """Read and check a bundle: manifest present and well-formed, files present, sha256 matching, task as asked."""
    path = Path(path)
    manifest_file = path / "manifest.json"
    if not path.is_dir():
        raise BundleError(f"model bundle not found: {path}")
    if not manifest_file.is_file():
        raise BundleError(f"model bundle has no manifest: {manifest_file}")
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        files = manifest["files"]
        bundle_task = manifest["task"]
        int(manifest["max_sequence_length"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"model manifest is unreadable: {manifest_file} ({exc.__class__.__name__})") from None
    if task is not None and bundle_task != task:
        raise BundleError(f"model bundle {path} is for the '{bundle_task}' task, not '{task}'")
    for name in REQUIRED_FILES:
        if name not in files:
            raise BundleError(f"model manifest {manifest_file} does not list {name}")
    for name, meta in files.items():
        file = path / name
        if not file.is_file():
            raise BundleError(f"model file missing: {file}")
        if verify and sha256_of(file) != meta["sha256"]:
            raise BundleError(f"model file is corrupt (sha256 mismatch): {file}")
    return Bundle(path, manifest)
