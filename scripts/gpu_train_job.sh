#!/usr/bin/env bash
# The GPU training job (issue 18): train the lesion recipe on one NVIDIA H200 and write the
# checkpoint, its history and the val evaluation JSON to $OUT (default runs/gpujob).
#
# Prepare here:  .venv/bin/python scripts/pack_gpu_job.py     (data + wheels into .gpujob/, ~37 MiB)
# Run there:     run(command="bash scripts/gpu_train_job.sh", carry=[".gpujob"], timeout_s=600)
# Test here:     PY=.venv/bin/python DEVICE=cpu EPOCHS=1 EXTRA="--max-steps 2 --limit-train 10 --limit-val 10" \
#                    OUT=/tmp/gpujob bash scripts/gpu_train_job.sh
# The ablation:  bash scripts/gpu_train_job.sh ablation   (scripts/ablation.py: v1, plain, the lesion recipe, then each
#                option alone, 6 epochs each, as many as fit DEADLINE seconds, default 540; results in $OUT/ablation)
#
# The machine's python3 has torch, timm, OpenCV, scikit-learn and pandas; the packages the
# engine also imports travel as wheels. The epoch budget (EPOCHS, default 16, x0.1 step after
# 2/3 of them) fits 10 minutes with a margin; every epoch leaves a resumable last.pt and a
# best.pt (best val κ), so a run cut short still returns a usable model.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${OUT:-${OUT_DIR:-runs/gpujob}}
DEVICE=${DEVICE:-cuda}
EPOCHS=${EPOCHS:-16}
JOB=${JOB:-.gpujob}
mkdir -p "$OUT"
SITE=$(mktemp -d)
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$JOB"/wheels/*.whl
export PYTHONPATH="$PWD:$SITE" PYTHONUNBUFFERED=1
"$PY" - <<'PY'
import torch, timm
print(f"torch {torch.__version__}, timm {timm.__version__}, cuda {torch.cuda.is_available()}"
      + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""))
PY
START=$(date +%s)
if [ "${1:-}" = ablation ]; then
    # shellcheck disable=SC2086
    "$PY" scripts/ablation.py "$JOB/data/labels.csv" --out "$OUT/ablation" --device "$DEVICE" --epochs "${ABLATION_EPOCHS:-6}" \
        --deadline-s "${DEADLINE:-540}" ${VARIANTS:+--variants $VARIANTS} --lite1-weights "$JOB/weights/efficientnet_lite1.pt" --train-extra --num-workers "${WORKERS:-6}" \
        --checkpoint-every 0 ${EXTRA:-} 2>&1 | tee "$OUT/ablation.log"
    # The checkpoints stay there (13.8 MB each); the tables and metrics come back.
    find "$OUT/ablation" -name '*.pt' -delete
    echo "ablation took $(( $(date +%s) - START )) s"
    exit 0
fi
# shellcheck disable=SC2086
"$PY" -m engine.cli train "$JOB/data/labels.csv" --recipe lesion --device "$DEVICE" --epochs "$EPOCHS" \
    --lr-step $(( (EPOCHS * 2 + 2) / 3 )) --num-workers "${WORKERS:-6}" --checkpoint-every 0 --quiet \
    --out "$OUT/run" ${EXTRA:-} 2>&1 | tee "$OUT/train.log"
echo "training took $(( $(date +%s) - START )) s"
"$PY" -m engine.cli evaluate "$JOB/data/labels.csv" --checkpoint "$OUT/run/best.pt" --device "$DEVICE" \
    --json "$OUT/val_metrics.json" --quiet 2>&1 | tee "$OUT/evaluate.log"
cp "$OUT/run/history.json" "$OUT/history.json"
echo "wrote $OUT/run/best.pt, $OUT/history.json, $OUT/val_metrics.json in $(( $(date +%s) - START )) s"
