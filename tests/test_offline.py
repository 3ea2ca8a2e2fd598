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
