# Sourced by app.sh and test.sh: create .venv at the project root if missing and install what is needed.
# Safe to run again: installs are skipped while pyproject.toml and the requested extras are unchanged.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
EXTRAS="${1:-}"
if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
STAMP=".venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)-${EXTRAS//,/_}"
if [ ! -f "$STAMP" ]; then
  python -m pip install -q --disable-pip-version-check --upgrade pip
  if [ -n "$EXTRAS" ]; then
    python -m pip install -q --disable-pip-version-check -e ".[$EXTRAS]"
  else
    python -m pip install -q --disable-pip-version-check -e .
  fi
  touch "$STAMP"
fi
# SqueezeBERT's int8 kernel (engine/native): rebuilt only when its source changed; needs a C compiler
python -m engine.native >/dev/null
