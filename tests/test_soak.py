"""A shortened soak (the full one is `python scripts/soak.py --requests 10000`): no errors, memory flat."""
import json
import os
import subprocess
import sys

from conftest import ROOT


def test_soak_through_the_worker_thread(models_dir):
    env = {**os.environ, "SQUEEZEBERT_MODELS_DIR": str(models_dir), "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "soak.py"), "--requests", "1500"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["completed"] == 1500 and report["errors"] == 0
    assert report["growth_percent"] < 5.0, report
