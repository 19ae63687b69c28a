#!/usr/bin/env bash
# Re-train the bundled default model from the shared FracAtlas data (recipes in
# engine/recipes.py: `default` = v1 + stem and first two block stages frozen + the authors'
# mild FMA in training only) and its same-budget plain-classifier baseline; write the float32
# shippable checkpoint set to infer at output stride 16 (threshold re-tuned for κ), fine-tune it
# one epoch with its training steps at that stride, write its shippable copy, tune the lesion-box threshold τ on the val
# boxes, calibrate it on val; score it beside the baseline and write its model card.
# Usage: scripts/train_default.sh [OUT_DIR]   (default runs/default)
# About 3 h on 2 CPU cores (MSFM ~13 min per epoch, 35-45 at stride 16, the plain classifier ~4); uses a CUDA GPU when there is one.
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
# cells: strict pointing 0.074 -> 0.198 on val); probabilities move, so the decision threshold is
# re-tuned for kappa on val and the copy recalibrated (docs/model-experiments.md).
$PY scripts/sweep_inference.py "$OUT/default.pt" --labels "$DATA" --split val --set output_stride=16 --retune-threshold --write "$OUT/default.pt" --json "$OUT/os16.json"
# Then the weights learn at the stride they are read at: one more epoch from that file with every
# training step at stride 16, lr 3e-5 (the recipe's rate after its step decay); its threshold
# is tuned for kappa on val by training (ADR 0013). tau and calibration are tuned once, for the
# weights that ship (those of the file above move neither the weights nor the epoch chosen).
.venv/bin/msfm train "$DATA" --recipe default --init "$OUT/default.pt" --train-output-stride 16 --epochs 1 --lr 3e-5 --out "$OUT/msfm16"
$PY scripts/ship_model.py "$OUT/msfm16/best.pt" "$OUT/default.pt"
$PY scripts/tune_lesion_tau.py "$OUT/default.pt" --labels "$DATA" --split val --out "$OUT/default.pt" --json "$OUT/lesion_tau.json"
$PY scripts/calibrate_model.py "$OUT/default.pt" --labels "$DATA" --split val --out "$OUT/default.pt"
.venv/bin/msfm evaluate "$DATA" --checkpoint "$OUT/default.pt" --baseline "$OUT/plain/best.pt" --json "$OUT/val_metrics.json"
$PY scripts/model_card.py "$OUT/default.pt" "$OUT/val_metrics.json" --extra docs/model-experiments.md --out "$OUT/MODEL_CARD.md"
echo "model: $OUT/default.pt  metrics: $OUT/val_metrics.json  card: $OUT/MODEL_CARD.md"
echo "to ship: cp $OUT/default.pt resources/models/default.pt && cp $OUT/MODEL_CARD.md resources/models/MODEL_CARD.md"
