"""The headless commands as a user runs them: exact interface, JSON on the last line, one-line errors."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT


def run(*args, models=None, **kw):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    if models is not None:
        env["SQUEEZEBERT_MODELS_DIR"] = str(models)
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True, env=env,
                          timeout=300, **kw)


def last_json(done):
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_analyze_every_task(models_dir, tmp_path):
    out = last_json(run("analyze", "--task", "sentiment", "a good film", models=models_dir))
    assert out["label"] in ("negative", "positive") and out["timing"]["total_ms"] > 0
    ctx = tmp_path / "ctx.txt"
    ctx.write_text("The tower is in Paris.")
    out = last_json(run("analyze", "--task", "qa", "--model", "bert", "--question", "Where?", "--file", str(ctx), models=models_dir))
    assert out["answer"] == "The tower is in Paris."[out["start"] : out["end"]]
    assert out["model"]["architecture"] == "bert"
    bundle = models_dir / "squeezebert-entities"
    out = last_json(run("analyze", "--task", "entities", "--model", str(bundle), "John lives in Paris"))
    assert all({"entity_group", "word", "start", "end", "score"} <= set(e) for e in out["entities"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["analyze", "--task", "sentiment", "   "], "empty"),
        (["analyze", "--task", "qa", "context only"], "--question is required"),
        (["analyze", "--task", "sentiment", "--file", "/nonexistent.txt"], "cannot read"),
        (["analyze", "--task", "sentiment", "--model", "/nowhere", "x"], "not found"),
        (["evaluate", "--task", "sentiment", "--data", "/nonexistent.tsv"], "not found"),
    ],
)
def test_bad_arguments_give_one_line_errors(models_dir, args, message):
    done = run(*args, models=models_dir)
    assert done.returncode != 0
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_bad_data_file_is_one_line_error(models_dir, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("not a header\n")
    done = run("evaluate", "--task", "sentiment", "--data", str(bad), models=models_dir)
    assert done.returncode == 2 and "header" in done.stderr and "Traceback" not in done.stderr


def test_evaluate_prints_the_report(models_dir, tmp_path):
    data = tmp_path / "conll.txt"
    data.write_text("-DOCSTART- O\n\nJohn B-PER\nlives O\nin O\nParis B-LOC\n\nBerlin B-LOC\n")
    done = run("evaluate", "--task", "entities", "--model", "bert", "--data", str(data), models=models_dir)
    report = last_json(done)
    assert set(report) == {"task", "model", "precision", "n", "metrics"}
    assert report["n"] == 2 and set(report["metrics"]) == {"precision", "recall", "f1"}
    assert "2/2" in done.stderr  # progress on stderr


def test_self_test_fails_clearly_without_models(tmp_path):
    done = run("self-test", models=tmp_path / "empty")
    assert done.returncode == 1
    report = last_json(done)
    assert report["ok"] is False and "not found" in report["models"]["bert-qa"]["detail"]


def test_benchmark_json_rows_and_chart(models_dir, tmp_path):
    chart = tmp_path / "latency.png"
    done = run("benchmark", "--seq-len", "16,24", "--runs", "2", "--json", "--chart", str(chart), models=models_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    report = last_json(done)
    assert report["seq_len"] == [16, 24] and report["batch"] == 1 and report["threads"] >= 1
    rows = {(r["model"], r["precision"], r["runtime"], r["seq_len"]) for r in report["results"]}
    for seq in (16, 24):
        for model in ("squeezebert", "bert"):
            assert {(model, "int8", "onnxruntime", seq), (model, "fp32", "onnxruntime", seq),
                    (model, "fp32", "transformers", seq)} <= rows
    assert all(0 < r["p50_ms"] <= r["p95_ms"] and r["macs"] > 0 for r in report["results"])
    squeeze, bert = (next(r for r in report["results"] if r["model"] == m and r["seq_len"] == 16) for m in ("squeezebert", "bert"))
    assert squeeze["macs"] < bert["macs"]  # grouped Q, K, V and FFN
    from PySide6.QtGui import QImage

    image = QImage(str(chart))
    assert image.width() > 400 and len({image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}) > 5


def test_benchmark_refuses_fewer_than_one_thread(tmp_path):
    done = run("benchmark", "--threads", "0", models=tmp_path)
    assert done.returncode == 2 and "--threads must be at least 1" in done.stderr


def test_profile_splits_kernel_time_for_every_model(models_dir):
    done = run("profile", "--seq-len", "16", "--runs", "2", "--json", models=models_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    report = last_json(done)
    assert set(report["models"]) == {"squeezebert int8", "bert int8", "squeezebert fp32", "bert fp32"}
    for name, model in report["models"].items():
        assert model["runs"] == 2 and model["by_kind_ms"]["projections"] > 0 and model["by_kind_ms"]["attention"] > 0, name
    assert "projections" in done.stderr  # the table goes to stderr with --json
    bad = run("profile", "--seq-len", "4", models=models_dir)
    assert bad.returncode == 2 and "--seq-len" in bad.stderr
