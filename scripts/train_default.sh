#!/usr/bin/env bash
# Re-train the bundled default model from the shared FracAtlas data (recipe in
# engine/recipes.py), then score it with the plain-classifier baseline of the same budget.
# Usage: scripts/train_default.sh [OUT_DIR]   (default runs/default)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
OUT=${1:-runs/default}
DATA=${MSFM_SHARED:-../shared}/data/xray/labels.csv
.venv/bin/msfm train "$DATA" --recipe default --out "$OUT/msfm"
.venv/bin/msfm train "$DATA" --recipe default --model plain --out "$OUT/plain"
.venv/bin/msfm evaluate "$DATA" --checkpoint "$OUT/msfm/best.pt" --baseline "$OUT/plain/best.pt" --json "$OUT/val_metrics.json"
echo "model: $OUT/msfm/best.pt  metrics: $OUT/val_metrics.json"
