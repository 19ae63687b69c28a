#!/usr/bin/env bash
# Set up (if needed) and start the desktop app. Arguments go to msfm-desktop (a study path).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/msfm-desktop "$@"
