#!/usr/bin/env bash
# Build the one-folder app into dist/SqueezeBERT-Desktop/ (run after `bash scripts/test.sh` or any set-up with the
# `package` extra). The bundle carries assets/models as they are in the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
"$PY" -m PyInstaller packaging/squeezebert_desktop.spec --noconfirm --clean \
  --distpath "${DIST_DIR:-dist}" --workpath "${WORK_DIR:-build/pyinstaller}" --log-level WARN
du -sm "${DIST_DIR:-dist}/SqueezeBERT-Desktop" | awk '{print "bundle size: " $1 " MB"}'
