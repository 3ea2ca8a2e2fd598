import sys

from engine.native import build, kernel_path

try:
    print(build(force="--force" in sys.argv), kernel_path())
except RuntimeError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(1)
