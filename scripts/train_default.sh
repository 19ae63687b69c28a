#!/usr/bin/env bash
# Re-train the bundled default model from the shared FracAtlas data (recipes in
# engine/recipes.py: `default` = v1 + stem and first two block stages frozen + the authors'
# mild FMA in training only, at the paper's 448 px input for 12 epochs) and its same-budget
# plain-classifier baseline; write the float32 shippable checkpoint set to infer at output
# stride 16 (threshold re-tuned for kappa on val), tune the lesion-box threshold tau on the val
# boxes, calibrate it on val; score it beside the baseline and write its model card.
# Usage: scripts/train_default.sh [OUT_DIR]   (default runs/default)
# Uses a CUDA GPU when there is one: on one H200 the MSFM run takes about 8 min (the shipped file
# was trained there, four runs sharing the chip: scripts/gpu_train_job.sh pipeline 1, run H). On 2 CPU
# cores about 6 h (MSFM ~25 min per epoch at 448 px; the plain classifier, at the same 448 px and
# 12 epochs, 52 min in all). The 320 px recipe the file replaced is `--recipe default-320`
# (docs/model-experiments.md), its baseline `--recipe plain-320`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
OUT=${1:-runs/default}
DATA=${MSFM_SHARED:-../shared}/data/xray/labels.csv
PY=.venv/bin/python
.venv/bin/msfm train "$DATA" --recipe default --out "$OUT/msfm"
.venv/bin/msfm train "$DATA" --recipe default-plain --out "$OUT/plain"
$PY scripts/ship_model.py "$OUT/msfm/best.pt" "$OUT/default.pt"
# Inference at output stride 16 in the object and part stages (the same weights, maps of 4x the
# cells); probabilities move, so the decision threshold is re-tuned for kappa on val and the copy
# recalibrated (docs/model-experiments.md). For the 448 px file one more epoch with its training
# steps at stride 16 (the 320 px recipe's last step, ADR 0013) lost kappa and strict pointing
# (the second GPU lease), so it is not taken.
$PY scripts/sweep_inference.py "$OUT/default.pt" --labels "$DATA" --split val --set output_stride=16 --retune-threshold --write "$OUT/default.pt" --json "$OUT/os16.json"
$PY scripts/tune_lesion_tau.py "$OUT/default.pt" --labels "$DATA" --split val --out "$OUT/default.pt" --json "$OUT/lesion_tau.json"
$PY scripts/calibrate_model.py "$OUT/default.pt" --labels "$DATA" --split val --out "$OUT/default.pt"
.venv/bin/msfm evaluate "$DATA" --checkpoint "$OUT/default.pt" --baseline "$OUT/plain/best.pt" --json "$OUT/val_metrics.json"
$PY scripts/model_card.py "$OUT/default.pt" "$OUT/val_metrics.json" --extra docs/model-experiments.md --out "$OUT/MODEL_CARD.md"
echo "model: $OUT/default.pt  metrics: $OUT/val_metrics.json  card: $OUT/MODEL_CARD.md"
echo "to ship: cp $OUT/default.pt resources/models/default.pt && cp $OUT/MODEL_CARD.md resources/models/MODEL_CARD.md"
