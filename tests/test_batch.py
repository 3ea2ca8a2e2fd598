"""Batch analysis: every input format, failed rows kept with an error, valid partial output, the GUI tab."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from engine.batch import RowWriter, read_rows, run_batch
from engine.errors import DataFormatError
from engine.pipelines import load_pipeline


def test_every_format_and_failed_rows_are_reported(tmp_path, models_dir):
    pipeline = load_pipeline("sentiment", "squeezebert")
    txt = tmp_path / "in.txt"
    txt.write_bytes(b"a good film\n\n  \nbad \xff bytes\n" + "ok \U0001F600\n".encode())
    for suffix in (".csv", ".jsonl", ".json"):
        out = tmp_path / f"out{suffix}"
        with RowWriter(out) as writer:
            summary = run_batch(pipeline, read_rows(txt), writer)
        assert (summary.rows, summary.failed) == (5, 3)
        if suffix == ".csv":
            rows = list(csv.DictReader(out.open(encoding="utf-8")))
        elif suffix == ".jsonl":
            rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        else:
            rows = json.loads(out.read_text(encoding="utf-8"))
        assert [r["row"] for r in rows] in ([1, 2, 3, 4, 5], ["1", "2", "3", "4", "5"])
        assert "empty" in rows[1]["error"] and "undecodable" in rows[3]["error"]
        assert rows[0]["label"] in ("negative", "positive") and not rows[0]["error"]


def test_csv_and_jsonl_columns_and_qa(tmp_path, models_dir):
    data = tmp_path / "qa.csv"
    data.write_text('id,question,context\n1,Where?,"The tower, tall, is in Paris."\n2,,no question here\n')
    rows = list(read_rows(data, "context", "question"))
    assert rows[0].question == "Where?" and rows[0].text == "The tower, tall, is in Paris."
    out = tmp_path / "qa.jsonl"
    with RowWriter(out) as writer:
        run_batch(load_pipeline("qa", "bert"), iter(rows), writer)
    first, second = [json.loads(line) for line in out.read_text().splitlines()]
    assert first["answer"] == rows[0].text[first["start"] : first["end"]]
    assert "question is empty" in second["error"]
    lines = tmp_path / "in.jsonl"
    lines.write_text('{"body": "fine"}\n{"other": 1}\nnot json\n')
    read = list(read_rows(lines, "body"))
    assert read[0].text == "fine" and read[1].error and read[2].error
    with pytest.raises(DataFormatError, match="no column 'nope'"):
        list(read_rows(data, "nope"))
    with pytest.raises(DataFormatError, match=".txt, .csv or .jsonl"):
        list(read_rows(tmp_path / "x.docx"))


def test_interrupted_cli_batch_leaves_a_valid_partial_file(tmp_path, models_dir):
    big = tmp_path / "big.txt"
    big.write_text("".join(f"row {i}: the tower in paris is tall and old . " * 20 + "\n" for i in range(20000)))
    for suffix in (".json", ".csv"):
        out = tmp_path / f"partial{suffix}"
        env = {**os.environ, "SQUEEZEBERT_MODELS_DIR": str(models_dir)}
        proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "batch", "--task", "sentiment", "--input", str(big),
                                 "--output", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                # a runner started in the background (`cmd &`) ignores SIGINT, and children inherit that
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 300  # generous: a loaded CI machine starts Python slowly
        while time.time() < deadline and proc.poll() is None and (not out.exists() or out.stat().st_size < 5000):
            time.sleep(0.1)
        assert proc.poll() is None and out.stat().st_size >= 5000, "the batch never got under way"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stderr
        assert json.loads(stdout.strip().splitlines()[-1])["interrupted"] is True
        if suffix == ".json":
            rows = json.loads(out.read_text())
        else:
            rows = list(csv.DictReader(out.open()))
        assert 0 < len(rows) < 20000
        assert [int(r["row"]) for r in rows] == list(range(1, len(rows) + 1))


def test_gui_batch_runs_cancels_and_stays_responsive(qtbot, tmp_path, models_dir):
    from gui.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    tab = window.batch
    small = tmp_path / "reviews.csv"
    small.write_text("text,stars\ngreat film,5\n,1\nawful film,1\n")
    tab.add_files([str(small)])
    assert tab.column.currentText() == "text"
    tab.output.setText(str(tmp_path / "out.json"))
    tab._run()
    qtbot.waitUntil(lambda: tab.run_button.isEnabled(), timeout=30000)
    rows = json.loads((tmp_path / "out.json").read_text())
    assert len(rows) == 3 and rows[0]["file"] == "reviews.csv" and rows[1]["error"]
    assert "Finished: 3 rows" in tab.status.text()

    big = tmp_path / "big.txt"
    big.write_text("".join(f"line {i} about paris and london\n" for i in range(20000)))
    tab._clear()
    tab.add_files([str(big)])
    tab.output.setText(str(tmp_path / "big.csv"))
    tab._run()
    qtbot.waitUntil(lambda: tab.progress.value() > 50, timeout=30000)
    # the interactive tabs are still served while the batch runs
    window.sentiment.set_text("a lovely day")
    window.sentiment.last_result = None
    window.sentiment.request_now()
    qtbot.waitUntil(lambda: window.sentiment.last_result is not None, timeout=30000)
    tab.cancel_requested.emit()
    qtbot.waitUntil(lambda: tab.run_button.isEnabled(), timeout=30000)
    assert "Cancelled after" in tab.status.text()
    done = list(csv.DictReader((tmp_path / "big.csv").open()))
    assert 50 < len(done) < 20000
    window.engine.shutdown()
