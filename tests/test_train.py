"""The training recipes' machinery on a tiny base model and small subsets of the real data: resumable and complete."""
import json

import pytest
import torch
import transformers

from engine.build.train import build_models, parse_args, run
from engine.datasets import DATA

pytestmark = pytest.mark.skipif(not (DATA / "sst2" / "train.tsv").is_file(), reason="../shared/data is not present")


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory, tiny_tokenizer_dir):
    folder = tmp_path_factory.mktemp("base")
    torch.manual_seed(0)
    vocab_size = len((tiny_tokenizer_dir / "vocab.txt").read_text().split())
    config = transformers.BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    transformers.BertModel(config).save_pretrained(folder)
    (folder / "tokenizer.json").write_bytes((tiny_tokenizer_dir / "tokenizer.json").read_bytes())
    return folder


SMALL = ["--max-train", "48", "--max-val", "16", "--batch-size", "8", "--max-steps", "4", "--save-every", "2",
         "--eval-every", "2", "--threads", "1"]


@pytest.mark.parametrize("task", ["sentiment", "entities", "qa"])
def test_finetune_stops_resumes_and_keeps_the_best(tmp_path, tiny_base, task):
    out = tmp_path / f"bert-{task}"
    common = ["--mode", "finetune", "--task", task, "--base", str(tiny_base), "--out", str(out)] + SMALL
    run(parse_args(common + ["--max-minutes", "0.00001"]))  # stops after its first step, checkpointed
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["step"] == 1 and not (out / "done").exists()
    run(parse_args(common))
    done = json.loads((out / "done").read_text())
    assert done["steps"] == 4
    history = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in history] == [2, 4]
    assert (out / "best" / "config.json").is_file() and (out / "best" / "tokenizer.json").is_file()
    assert (out / "last" / "config.json").is_file() and (out / "last" / "tokenizer.json").is_file()
    assert json.loads((out / "best" / "validation.json").read_text())["step"] in (2, 4)


def test_general_then_task_distillation_produce_a_squeezebert(tmp_path, tiny_base):
    teacher = tmp_path / "bert-sentiment"
    run(parse_args(["--mode", "finetune", "--task", "sentiment", "--base", str(tiny_base), "--out", str(teacher)] + SMALL))
    general = tmp_path / "general"
    run(parse_args(["--mode", "distill-general", "--base", str(tiny_base), "--out", str(general)] + SMALL))
    assert json.loads((general / "best" / "config.json").read_text())["q_groups"] == 4
    student = tmp_path / "squeezebert-sentiment"
    run(parse_args(["--mode", "distill-task", "--task", "sentiment", "--base", str(tiny_base), "--out", str(student),
                    "--teacher", str(teacher / "best"), "--student-init", str(general / "best")] + SMALL))
    config = json.loads((student / "best" / "config.json").read_text())
    assert config["model_type"] == "squeezebert" and config["architectures"] == ["SqueezeBertForSequenceClassification"]
    assert config["post_attention_groups"] == 1 and config["intermediate_groups"] == 4

    # a second stage from that student keeps its trained classifier, not a fresh cut of the teacher's
    second = parse_args(["--mode", "distill-task", "--task", "sentiment", "--base", str(tiny_base), "--out",
                         str(tmp_path / "second"), "--teacher", str(teacher / "best"), "--student-init",
                         str(student / "best")] + SMALL)
    continued, _ = build_models(second, None)
    trained = transformers.SqueezeBertForSequenceClassification.from_pretrained(student / "best")
    cut = transformers.BertForSequenceClassification.from_pretrained(teacher / "best")
    assert torch.equal(continued.classifier.weight, trained.classifier.weight)
    assert not torch.equal(continued.classifier.weight, cut.classifier.weight)


def test_qa_student_cut_from_its_teacher_is_refitted_by_least_squares_then_trained(tmp_path, tiny_base):
    from engine.build.squeeze import squeeze_model
    from engine.build.train import collate, load_task_data, make_features
    from engine.tokenization import WordPieceTokenizer

    teacher = tmp_path / "bert-qa"
    run(parse_args(["--mode", "finetune", "--task", "qa", "--base", str(tiny_base), "--out", str(teacher)] + SMALL))
    common = ["--mode", "distill-task", "--task", "qa", "--base", str(tiny_base), "--teacher", str(teacher / "best")]
    args = parse_args(common + ["--out", str(tmp_path / "student"), "--reconstruct", "8"] + SMALL)
    tok = WordPieceTokenizer(tiny_base / "tokenizer.json")
    calibration = make_features("qa", tok, load_task_data("qa", DATA)[0][:8], args)[:8]
    refitted, bert = build_models(args, tok, calibration)
    cut = squeeze_model(bert, groups=4)
    batch = collate(calibration, tok.pad_id, "none")

    def error(model):
        with torch.no_grad():
            return float(((model(**batch).start_logits - bert(**batch).start_logits) ** 2).mean())

    assert error(refitted) < error(cut)
    run(args)
    config = json.loads((tmp_path / "student" / "best" / "config.json").read_text())
    assert config["architectures"] == ["SqueezeBertForQuestionAnswering"] and config["q_groups"] == 4


def test_entity_student_also_learns_from_unlabelled_transfer_sentences(tmp_path, tiny_base):
    from engine.build.features import IGNORE
    from engine.build.train import collate, training_loss, transfer_sentences, unlabelled_features
    from engine.tokenization import WordPieceTokenizer

    sentences = transfer_sentences(DATA, 30, seed=3)
    assert len(sentences) == 30 and sentences == transfer_sentences(DATA, 30, seed=3)  # resumable: same draw
    assert sentences != transfer_sentences(DATA, 30, seed=4)
    assert all(6 <= len(s.split()) <= 60 for s in sentences)
    tok = WordPieceTokenizer(tiny_base / "tokenizer.json")
    features = unlabelled_features(tok, sentences, 32, first_id=100)
    assert [f.example for f in features] == list(range(100, 130))
    assert all((f.labels == IGNORE).all() and len(f.labels) == len(f.input_ids) <= 32 for f in features)
    assert all(f.input_ids[0] == tok.cls_id and f.input_ids[-1] == tok.sep_id for f in features)

    teacher = tmp_path / "bert-entities"
    run(parse_args(["--mode", "finetune", "--task", "entities", "--base", str(tiny_base), "--out", str(teacher)] + SMALL))
    student_dir = tmp_path / "squeezebert-entities"
    args = parse_args(["--mode", "distill-task", "--task", "entities", "--base", str(tiny_base), "--out",
                       str(student_dir), "--teacher", str(teacher / "best"), "--transfer", "40"] + SMALL)
    run(args)
    assert json.loads((student_dir / "done").read_text())["steps"] == 4
    # a batch of transfer sentences alone has no hard labels: its loss is the teacher's soft targets only, finite
    student, teacher_model = build_models(args, tok)
    loss = training_loss(args, student, teacher_model, collate(features[:8], tok.pad_id, "entities"))
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    with pytest.raises(SystemExit):
        parse_args(["--mode", "finetune", "--task", "entities", "--out", str(tmp_path / "x"), "--transfer", "10"])
