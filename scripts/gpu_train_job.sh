#!/usr/bin/env bash
# The GPU training job (issue 18): train the lesion recipe on one NVIDIA H200 and write the
# checkpoint, its history and the val evaluation JSON to $OUT (default runs/gpujob).
#
# Prepare here:  .venv/bin/python scripts/pack_gpu_job.py     (data + wheels into .gpujob/, ~37 MiB)
# Run there:     run(command="bash scripts/gpu_train_job.sh", carry=[".gpujob"], timeout_s=600)
# Test here:     PY=.venv/bin/python DEVICE=cpu EPOCHS=1 EXTRA="--max-steps 2 --limit-train 10 --limit-val 10" \
#                    OUT=/tmp/gpujob bash scripts/gpu_train_job.sh
# Candidates:    bash scripts/gpu_train_job.sh candidates   (four runs side by side fitted into BUDGET s, default 360,
#                by --time-budget-s, evaluated beside the shipped file, then bench_gpu.py; ~8 min; pack with --no-lite1)
# Continue:      bash scripts/gpu_train_job.sh continue FILE   (two continuations of FILE, BUDGET s, default 170)
# Pipeline:      bash scripts/gpu_train_job.sh pipeline 1, then at once (the machine still warm) pipeline 2: the
#                320 px recipe's two training steps for four candidates (longer, seed 1, 448 px, no frozen layers)
# The ablation:  bash scripts/gpu_train_job.sh ablation   (scripts/ablation.py: v1, plain, the lesion recipe, then each
#                option alone, 6 epochs each, as many as fit DEADLINE seconds, default 540; results in $OUT/ablation)
#
# The machine's python3 has torch, timm, OpenCV, scikit-learn and pandas; the packages the
# engine also imports travel as wheels. Each run is fitted into BUDGET seconds by
# --time-budget-s (the epochs that fit after epoch 1, at most EPOCHS, default 16; a recipe's own
# lr_step, 4 for all of them, holds: the x0.1 step every 4 epochs): measured 2026-12-04, an MSFM epoch took ~45 s with four runs sharing the chip
# (benchmarks/RESULTS.md). Every epoch leaves a resumable last.pt and a best.pt (best val κ).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${OUT:-${OUT_DIR:-runs/gpujob}}
DEVICE=${DEVICE:-cuda}
EPOCHS=${EPOCHS:-16}
JOB=${JOB:-.gpujob}
mkdir -p "$OUT"
SITE=$(mktemp -d)
# No wheels (the test here, pack_gpu_job.py --no-wheels): this Python already has them.
if compgen -G "$JOB/wheels/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$JOB"/wheels/*.whl
fi
export PYTHONPATH="$PWD:$SITE" PYTHONUNBUFFERED=1
"$PY" - <<'PY'
import torch, timm
print(f"torch {torch.__version__}, timm {timm.__version__}, cuda {torch.cuda.is_available()}"
      + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""))
PY
START=$(date +%s)
one() {  # NAME TRAIN-FLAGS...: train into $RUNS/NAME, then (EVAL=1) score its best epoch on the packed val split
    local name=$1; shift
    local rc=0 check=(--checkpoint "$RUNS/$name/best.pt")
    # A plain classifier is scored as the baseline of the shipped file (both on one split).
    [ "$name" = D ] && check=(--checkpoint resources/models/default.pt --baseline "$RUNS/$name/best.pt")
    # shellcheck disable=SC2086
    if OMP_NUM_THREADS=3 "$PY" -m engine.cli train "$JOB/data/labels.csv" --device "$DEVICE" --num-workers "${WORKERS:-3}" \
        --checkpoint-every 0 --quiet --no-amp --time-budget-s "$BUDGET" --out "$RUNS/$name" "$@" ${EXTRA:-} > "$RUNS/out/$name.log" 2>&1 \
    && { [ "${EVAL:-1}" = 0 ] || OMP_NUM_THREADS=3 timeout 120 "$PY" -m engine.cli evaluate "$JOB/data/labels.csv" "${check[@]}" \
        --device "$DEVICE" --json "$RUNS/out/$name.val.json" --quiet >> "$RUNS/out/$name.log" 2>&1; }; then rc=0; else rc=$?; fi
    echo "$name rc=$rc after $(( $(date +%s) - START )) s" | tee -a "$RUNS/out/$name.log"
}
bg() {  # CMD...: in the background (side by side on the GPU), or in turn with SERIAL=1 (the CPU
    # test here: four CPU trainings at once beside pytest outgrow 24 GiB)
    if [ "${SERIAL:-0}" = 1 ]; then "$@"; else "$@" & fi
}
collect() {  # NAMES...: each best.pt to $OUT/NAME.pt, histories and logs into $OUT/results.tgz
    for n in "$@"; do
        [ -f "$RUNS/$n/best.pt" ] && cp "$RUNS/$n/best.pt" "$OUT/$n.pt"
        [ -f "$RUNS/$n/history.json" ] && cp "$RUNS/$n/history.json" "$RUNS/out/$n.history.json"
        tail -3 "$RUNS/out/$n.log"
    done
    nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv > "$RUNS/out/nvidia-smi.csv" 2>&1 || true
    tar -C "$RUNS/out" -czf "$OUT/results.tgz" .
}
RUNS=$(mktemp -d)
mkdir -p "$RUNS/out"
if [ "${1:-}" = continue ]; then
    # Two continuations of one checkpoint (the argument) side by side, fitted into BUDGET
    # seconds (default 170): E at a constant 3e-5, F at 1e-4 with the recipe's x0.1 step every
    # 4 epochs. EVAL=0 leaves scoring to the CPU (on the full-resolution val images).
    INIT=${2:?usage: gpu_train_job.sh continue CHECKPOINT}
    BUDGET=${BUDGET:-170}
    bg one E --recipe default --init "$INIT" --lr 3e-5 --lr-step 1000 --epochs "${EPOCHS_MAX:-30}"
    bg one F --recipe default --init "$INIT" --lr 1e-4 --epochs "${EPOCHS_MAX:-30}"
    wait
    collect E F
    echo "continue took $(( $(date +%s) - START )) s"
    exit 0
fi
if [ "${1:-}" = pipeline ]; then
    # The default recipe's pipeline (scripts/train_default.sh) for four candidates side by side,
    # across two calls on one warm machine: step 1 trains each from ImageNet at stride 32, fitted
    # into BUDGET s (default 480), keeps the runs in $PIPE (an ignored folder the warm machine
    # keeps between calls) and sends each best.pt back as NAME.pt; step 2 continues each one epoch
    # with every step at stride 16, lr 3e-5 (the shipped file's step), back as NAME16.pt. The
    # rest (ship_model, stride-16 reading and its threshold, tau, calibration, evaluation on the
    # full-resolution val images) runs on the CPU. If step 2 cannot run, step 1's files are here.
    # NAMES picks the candidates (default G J H I; K: the 448 px default, seed 1; P: the plain
    # classifier at 448 px for 12 epochs, the default's size and length, step 1 only). Pack with
    # --side 512 (H, K and P read 448 px).
    PIPE=${PIPE:-runs/gpupipe}
    RUNS=$PIPE
    mkdir -p "$RUNS/out"
    NAMES=${NAMES:-G J H I}
    if [ "${2:-}" = 1 ]; then
        BUDGET=${BUDGET:-480}
        flags() {
            case $1 in
                # As run on 2026-12-04 (docs/model-experiments.md); H became the default recipe.
                G) echo "--recipe default-320 --seed 0" ;;             # the 320 px recipe, longer
                J) echo "--recipe default-320 --seed 1" ;;             # the same, another seed
                H) echo "--input-size 448 --part-size 314" ;;         # the paper's input size (= --recipe default)
                I) echo "--recipe default-320 --freeze-blocks 0" ;;    # every layer trained
                # For the next lease: H's recipe with another seed, and the plain classifier at the
                # default's size and length (NAMES="K P").
                K) echo "--seed 1" ;;
                P) echo "--recipe default-plain --epochs 12" ;;        # 448 px; its 12 epochs over the cap
            esac
        }
        for n in $NAMES; do
            # shellcheck disable=SC2046
            EVAL=0 bg one "$n" --recipe default --epochs "${EPOCHS_MAX:-16}" $(flags "$n")
        done
        wait
        collect $NAMES
    elif [ "${2:-}" = 2 ]; then
        BUDGET=${BUDGET:-200}
        for n in $NAMES; do
            [ "$n" = P ] && continue  # a plain classifier has no stride-16 stages to continue
            EVAL=0 bg one "${n}16" --recipe default --init "$RUNS/$n/best.pt" --train-output-stride 16 --epochs 1 --lr 3e-5
        done
        wait
        # shellcheck disable=SC2046
        collect $(for n in $NAMES; do [ "$n" = P ] || echo "${n}16"; done)
    else
        echo "usage: gpu_train_job.sh pipeline 1|2" >&2
        exit 2
    fi
    echo "pipeline step $2 took $(( $(date +%s) - START )) s"
    exit 0
fi
if [ "${1:-}" = candidates ]; then
    # Four runs side by side on the one GPU (each is bound by Python and the data loader,
    # not by the chip), each fitted into BUDGET seconds by --time-budget-s, then evaluated on
    # the packed val split (D, the plain classifier, as the shipped file's baseline), then
    # benchmarks/bench_gpu.py. What comes back: the four best.pt as A.pt..D.pt and everything
    # else in results.tgz.
    BUDGET=${BUDGET:-360}
    # A: the 320 px default recipe of the first lease, object and part stages at stride 16 in
    # training and reading.
    bg one A --recipe default-320 --output-stride 16 --epochs "${EPOCHS_MAX:-30}"
    # B: the shipped file continued at its own stride, the rate of its last epoch, no decay.
    bg one B --recipe default --init resources/models/default.pt --train-output-stride 16 --lr 3e-5 --lr-step 1000 \
        --epochs "${EPOCHS_MAX:-30}"
    # C: the prepared lesion recipe (bag loss, class-ranked windows, warm-up), at stride 16.
    bg one C --recipe lesion --output-stride 16 --epochs "${EPOCHS_MAX:-30}"
    # D: the plain classifier, the same wall-time budget and epoch cap (scored beside the shipped file).
    bg one D --recipe plain-320 --epochs "${EPOCHS_MAX:-30}"
    wait
    timeout 120 "$PY" benchmarks/bench_gpu.py --images "$JOB/data/images" --json "$RUNS/out/gpu.json" 2>&1 | tee "$RUNS/out/bench_gpu.log" || true
    collect A B C D
    echo "candidates took $(( $(date +%s) - START )) s"
    exit 0
fi
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
    --time-budget-s "${BUDGET:-480}" --num-workers "${WORKERS:-6}" --checkpoint-every 0 --quiet --no-amp \
    --out "$OUT/run" ${EXTRA:-} 2>&1 | tee "$OUT/train.log"
echo "training took $(( $(date +%s) - START )) s"
"$PY" -m engine.cli evaluate "$JOB/data/labels.csv" --checkpoint "$OUT/run/best.pt" --device "$DEVICE" \
    --json "$OUT/val_metrics.json" --quiet 2>&1 | tee "$OUT/evaluate.log"
cp "$OUT/run/history.json" "$OUT/history.json"
echo "wrote $OUT/run/best.pt, $OUT/history.json, $OUT/val_metrics.json in $(( $(date +%s) - START )) s"
