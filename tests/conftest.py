"""Shared fixtures: a small WordPiece tokenizer and tiny random checkpoints/bundles built here, never downloaded."""
from __future__ import annotations

import gc
import os
import string
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

TASK_HEADS = {"sentiment": "ForSequenceClassification", "entities": "ForTokenClassification", "qa": "ForQuestionAnswering"}
TINY_ENTITY_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
WORDS = (
    "the a an of in on at to is was and or but not it this that he she they we you i film movie good bad great "
    "terrible loved hated paris london john smith angela merkel visited met city tower built when where who what "
    "year river france germany company eiffel engineer fair world new york lives monday union budget"
).split()


def write_vocab(path: Path) -> Path:
    chars = string.ascii_lowercase + string.digits + string.punctuation
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + list(chars) + ["##" + c for c in chars]
    path.write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    """A folder with vocab.txt and tokenizer.json for a ~200-token uncased BERT WordPiece vocabulary."""
    from tokenizers.implementations import BertWordPieceTokenizer

    folder = tmp_path_factory.mktemp("tokenizer")
    write_vocab(folder / "vocab.txt")
    BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=True).save(str(folder / "tokenizer.json"))
    return folder


def make_checkpoint(folder: Path, architecture: str, task: str, tokenizer_dir: Path, seed: int = 0,
                    heads: int = 4) -> Path:
    """A tiny randomly initialised BertFor*/SqueezeBertFor* checkpoint in Hugging Face format. With the default 4
    heads of 16 its int8 export uses the GroupedQGemm kernel (engine.native); 8 heads of 8 do not fit its blocks."""
    import torch
    import transformers

    from engine.build.squeeze import squeezebert_config

    torch.manual_seed(seed)
    vocab_size = len((tokenizer_dir / "vocab.txt").read_text().split())
    labels = {"sentiment": ["negative", "positive"], "entities": TINY_ENTITY_LABELS, "qa": []}[task]
    kwargs = {"num_labels": len(labels), "id2label": dict(enumerate(labels))} if labels else {}
    config = transformers.BertConfig(
        vocab_size=vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=heads, intermediate_size=128,
        max_position_embeddings=512, **kwargs,
    )
    if architecture == "squeezebert":
        config = squeezebert_config(config, groups=4)
    prefix = "Bert" if architecture == "bert" else "SqueezeBert"
    model = getattr(transformers, prefix + TASK_HEADS[task])(config)
    model.save_pretrained(folder)
    (folder / "tokenizer.json").write_bytes((tokenizer_dir / "tokenizer.json").read_bytes())
    return folder


@pytest.fixture(scope="session")
def tiny_bundles(tmp_path_factory, tiny_tokenizer_dir) -> dict[tuple[str, str], Path]:
    """int8 bundles exported from tiny random checkpoints: {(architecture, task): bundle folder}."""
    from engine.build.export import build_bundle

    root = tmp_path_factory.mktemp("bundles")
    bundles = {}
    for architecture in ("squeezebert", "bert"):
        for task in TASK_HEADS:
            checkpoint = make_checkpoint(root / f"ckpt-{architecture}-{task}", architecture, task, tiny_tokenizer_dir)
            out = root / f"{architecture}-{task}"
            build_bundle(checkpoint, out, max_length=64 if task != "qa" else 96)
            bundles[(architecture, task)] = out
    return bundles


@pytest.fixture
def models_dir(tmp_path, tiny_bundles, monkeypatch) -> Path:
    """A private assets/models holding copies of the tiny bundles under their shipped names."""
    import shutil

    import engine.bundle

    folder = tmp_path / "models"
    for (architecture, task), path in tiny_bundles.items():
        shutil.copytree(path, folder / f"{architecture}-{task}")
    monkeypatch.setattr(engine.bundle, "models_dir", lambda: folder)
    return folder


@pytest.fixture(scope="session", autouse=True)
def no_automatic_garbage_collection():
    """As in the app (gui.app.MainThreadGarbageCollector): automatic collection runs in whichever thread allocates,
    and a window collected by a background thread (an engine thread, tqdm's monitor) leaves its timers registered
    in the UI thread, which then fire at freed memory. So it is off for the session and `collect_in_main_thread`
    collects after every test."""
    gc.disable()
    yield
    gc.enable()


@pytest.fixture(autouse=True)
def collect_in_main_thread(no_automatic_garbage_collection):
    yield
    gc.collect()
