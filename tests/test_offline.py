"""Every task runs with the network unavailable: sockets are refused for the whole process."""
import socket

import pytest

from engine.pipelines import load_pipeline


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access is blocked in this test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_every_task_and_model_runs_offline(no_network, models_dir):
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", 9))
    for model in ("squeezebert", "bert"):
        assert load_pipeline("sentiment", model)("a good film").label
        assert load_pipeline("entities", model)("John lives in Paris").timing.n_tokens > 0
        answer = load_pipeline("qa", model)("Where?", "The tower is in Paris.")
        assert answer.answer == "The tower is in Paris."[answer.start : answer.end]


def test_the_window_works_offline(no_network, models_dir, qtbot):
    from gui.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    window.qa.load_sample(0)
    window.qa.request_now()
    qtbot.waitUntil(lambda: window.qa.last_result is not None, timeout=30000)
    window.engine.shutdown()


def test_run_time_code_never_unpickles_or_executes_model_files():
    """Bundles are ONNX and JSON only: no pickle, torch.load, np.load or eval anywhere the app runs."""
    import re

    from conftest import ROOT

    runtime = [p for p in (ROOT / "engine").glob("*.py")] + list((ROOT / "gui").rglob("*.py")) + [ROOT / "main.py"]
    forbidden = re.compile(r"\b(pickle|torch\.load|np\.load|numpy\.load|joblib|eval\(|exec\(|marshal)\b")
    offenders = [f"{p.name}:{n}" for p in runtime for n, line in enumerate(p.read_text().splitlines(), 1)
                 if forbidden.search(line) and not line.lstrip().startswith("#")]
    assert offenders == []
    from engine.bundle import REQUIRED_FILES

    assert set(REQUIRED_FILES) == {"model.onnx", "tokenizer.json"}
