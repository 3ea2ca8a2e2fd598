"""Benchmark contenders that need torch: fp32/int8 exports of the shipped configuration with random weights, and
the same configuration in a transformers pipeline. Build-time code, imported by engine.benchmark only when torch is
installed."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from engine.benchmark import CACHE, ENCODERS
from engine.datasets import ENTITY_LABELS


def exporter_version() -> str:
    """A short hash of the exporter's source: cached exports from another version of it are not reused."""
    from engine.build import export

    return hashlib.sha256(Path(export.__file__).read_bytes()).hexdigest()[:8]


def export_random(task: str, architecture: str, precision: str, tokenizer_file: Path, encoder: str = "shipped") -> Path:
    """A bundle with random weights in one of ENCODERS' configurations (timing does not depend on weight values)."""
    size = "" if encoder == "shipped" else f"-{encoder}"
    out = CACHE / f"{architecture}-{task}-{precision}{size}-{exporter_version()}"
    if (out / "manifest.json").is_file():
        return out
    import torch
    import transformers

    from engine.build.export import TASK_OF_HEAD, build_bundle
    from engine.build.squeeze import squeezebert_config

    torch.manual_seed(0)
    head = {v: k for k, v in TASK_OF_HEAD.items()}[task]
    config = transformers.BertConfig(**ENCODERS[encoder], num_labels=2)
    if task == "entities":  # the exporter takes token labels only as IOB tags
        config.id2label, config.label2id = dict(enumerate(ENTITY_LABELS)), {t: i for i, t in enumerate(ENTITY_LABELS)}
    if architecture == "squeezebert":
        config = squeezebert_config(config, 4)
    model = getattr(transformers, ("Bert" if architecture == "bert" else "SqueezeBert") + head)(config)
    checkpoint = CACHE / f"ckpt-{architecture}-{task}{size}"
    model.save_pretrained(checkpoint)
    (checkpoint / "tokenizer.json").write_bytes(tokenizer_file.read_bytes())
    build_bundle(checkpoint, out, precision=precision, max_length=512)
    return out


def transformers_pipeline(task: str, bundle_dir: Path, threads: int):
    """The same architecture and configuration as `bundle_dir`'s, in a transformers pipeline (torch, fp32)."""
    import torch
    import transformers

    from engine.build.squeeze import squeezebert_config

    torch.set_num_threads(threads)
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    cfg = manifest["config"]
    labels = max(len(manifest["labels"]), 2)
    config = transformers.BertConfig(**{k: cfg[k] for k in ENCODERS["shipped"]}, num_labels=labels)
    if manifest["architecture"] == "squeezebert":
        config = squeezebert_config(config, cfg.get("q_groups", 4))
    head = {"sentiment": "ForSequenceClassification", "entities": "ForTokenClassification", "qa": "ForQuestionAnswering"}[task]
    model = getattr(transformers, ("Bert" if manifest["architecture"] == "bert" else "SqueezeBert") + head)(config).eval()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(bundle_dir / "tokenizer.json"), cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
        unk_token="[UNK]", mask_token="[MASK]", model_max_length=512,
    )
    if task == "qa" and "question-answering" not in transformers.pipelines.SUPPORTED_TASKS:
        return QuestionAnswering(model, tokenizer)
    name = {"sentiment": "text-classification", "entities": "token-classification", "qa": "question-answering"}[task]
    return transformers.pipeline(name, model=model, tokenizer=tokenizer, device=-1)


class QuestionAnswering:
    """What a transformers user writes for extractive QA where the library no longer has the pipeline (transformers 5
    removed "question-answering"): tokenise the pair, run the model, take the best span of the context's tokens up to
    30 long, as the pipeline did, and give its text."""

    MAX_ANSWER_TOKENS = 30
    SOURCE = "transformers model and tokenizer (transformers 5 has no QA pipeline), torch"

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    def __call__(self, question: str, context: str) -> dict:
        import torch

        encoded = self.tokenizer(question, context, truncation="only_second", max_length=512,
                                 return_offsets_mapping=True, return_tensors="pt")
        offsets = encoded.pop("offset_mapping")[0].tolist()
        in_context = torch.tensor([i == 1 for i in encoded.sequence_ids(0)])
        with torch.inference_mode():
            out = self.model(**encoded)
        # every (start, end) pair at once, as the pipeline scored them: both in the context, end within 30 of start
        scores = out.start_logits[0][:, None] + out.end_logits[0][None, :]
        ones = torch.ones_like(scores, dtype=torch.bool)
        allowed = ones.triu() & ones.tril(self.MAX_ANSWER_TOKENS - 1) & in_context[:, None] & in_context[None, :]
        best = int(scores.masked_fill(~allowed, float("-inf")).argmax())
        first, last = divmod(best, scores.shape[1])
        return {"answer": context[offsets[first][0]:offsets[last][1]], "score": float(scores[first, last])}


