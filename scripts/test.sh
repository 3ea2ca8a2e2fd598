#!/usr/bin/env bash
# Set up with the build, test and packaging extras and run the whole test suite (Qt offscreen).
source "$(dirname "$0")/setup.sh" "build,test,package"
export QT_QPA_PLATFORM=offscreen
exec python -m pytest -q "$@"
