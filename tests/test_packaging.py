"""Builds the PyInstaller one-folder app and runs it: headless commands, the window (offscreen), the self-test."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from engine.bundle import MODELS, TASKS

pytestmark = pytest.mark.slow
SHIPPED = all((ROOT / "assets" / "models" / f"{m}-{t}" / "manifest.json").is_file() for m in MODELS for t in TASKS)


@pytest.fixture(scope="module")
def frozen_app(tmp_path_factory):
    dist = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "DIST_DIR": str(dist), "WORK_DIR": str(dist / "work"), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(ROOT / "packaging" / "build.sh")], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    print(done.stdout.strip().splitlines()[-1])
    return dist / "SqueezeBERT-Desktop"


def run_frozen(app, *args, models=None):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    env.pop("SQUEEZEBERT_MODELS_DIR", None)
    if models is not None:
        env["SQUEEZEBERT_MODELS_DIR"] = str(models)
    return subprocess.run([str(app / "SqueezeBERT-Desktop"), *args], capture_output=True, text=True, env=env, timeout=120)


def test_bundle_has_assets_and_no_build_packages(frozen_app):
    internal = frozen_app / "_internal"
    assert (internal / "assets" / "samples" / "qa.json").is_file()
    names = {p.name for p in internal.iterdir()}
    assert not names & {"torch", "transformers", "scipy", "onnx"}


def test_frozen_app_analyses_and_opens_its_window(frozen_app, models_dir, tmp_path):
    done = run_frozen(frozen_app, "analyze", "--task", "qa", "--question", "Where?", "The tower is in Paris.", models=models_dir)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["answer"] == "The tower is in Paris."[answer["start"] : answer["end"]]
    shot = tmp_path / "window.png"
    done = run_frozen(frozen_app, "screenshot", "--tab", "entities", "--out", str(shot), models=models_dir)
    assert done.returncode == 0, done.stderr
    assert shot.stat().st_size > 10_000


@pytest.mark.skipif(not SHIPPED, reason="the six bundled models are not in assets/models yet")
def test_frozen_self_test_passes_with_the_bundled_models(frozen_app):
    done = run_frozen(frozen_app, "self-test")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["ok"] is True
