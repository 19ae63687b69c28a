#!/usr/bin/env bash
# Re-train the bundled default model from the shared FracAtlas data (recipes in
# engine/recipes.py: `default` = v1 + stem and first two block stages frozen + the authors'
# mild FMA in training only) and its same-budget plain-classifier baseline; tune the lesion-box
# threshold τ on the val boxes; write the float32 shippable checkpoint, its val metrics beside
# the baseline, and its model card.
# Usage: scripts/train_default.sh [OUT_DIR]   (default runs/default)
# About 2 h on 2 CPU cores (MSFM ~13 min per epoch, the plain classifier ~4); uses a CUDA GPU when there is one.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
OUT=${1:-runs/default}
DATA=${MSFM_SHARED:-../shared}/data/xray/labels.csv
PY=.venv/bin/python
.venv/bin/msfm train "$DATA" --recipe default --out "$OUT/msfm"
.venv/bin/msfm train "$DATA" --recipe default-plain --out "$OUT/plain"
$PY scripts/tune_lesion_tau.py "$OUT/msfm/best.pt" --labels "$DATA" --split val --out "$OUT/msfm/model.pt" --json "$OUT/msfm/lesion_tau.json"
$PY scripts/ship_model.py "$OUT/msfm/model.pt" "$OUT/default.pt"
.venv/bin/msfm evaluate "$DATA" --checkpoint "$OUT/default.pt" --baseline "$OUT/plain/best.pt" --json "$OUT/val_metrics.json"
$PY scripts/model_card.py "$OUT/default.pt" "$OUT/val_metrics.json" --extra docs/model-experiments.md --out "$OUT/MODEL_CARD.md"
echo "model: $OUT/default.pt  metrics: $OUT/val_metrics.json  card: $OUT/MODEL_CARD.md"
echo "to ship: cp $OUT/default.pt resources/models/default.pt && cp $OUT/MODEL_CARD.md resources/models/MODEL_CARD.md"
