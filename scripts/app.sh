#!/usr/bin/env bash
# Set up (run-time dependencies only) and launch SqueezeBERT Desktop.
source "$(dirname "$0")/setup.sh" ""
exec python main.py "$@"
