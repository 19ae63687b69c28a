#!/usr/bin/env bash
# Make the build environment of the CPU-only bundle: a venv with the CPU build of torch and
# every other dependency of the project, without NVIDIA libraries.
#
#   installer/cpu_venv.sh VENV
#
# PyPI's Linux x86_64 torch is a CUDA build; the CPU build on this machine's disk is torch
# 2.13.0 (`pip install torch==2.13.0` takes it), and PyPI has no CPU torchvision. So the
# venv gets torch 2.13.0+cpu and PyPI's torchvision 0.29.1 *without* its dependencies: its
# Python code (models, transforms, box_iou, roi_align's PyTorch path) runs on CPU torch, its
# compiled operators do not load (they link libtorch_cuda). engine/model/tvcompat.py makes
# torchvision importable without them and the engine takes NMS from OpenCV then (SPEC §9).
# timm is installed without dependencies too (it asks for torchvision, which asks for torch
# >= 2.14), and its own small dependencies are named here; huggingface_hub is left out on
# purpose (timm runs without it, the bundle never downloads weights).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:?usage: installer/cpu_venv.sh VENV}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
TORCH_CPU=torch==2.13.0
STAMP="$VENV/.msfm-cpu-installed"
WANT=$(cat pyproject.toml installer/cpu_venv.sh installer/requirements-build.txt | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0
fi
echo "[cpu-venv] creating $VENV ($TORCH_CPU, CPU build)"
"$PY" -m venv --clear "$VENV"
VPY="$VENV/bin/python"
LOG="$VENV/cpu-venv.log"
# The project's dependencies (and its GUI extra) in two lists: torchvision and timm, to be
# installed without theirs, and everything else except torch.
"$VPY" - "$VENV" <<'PYEOF'
import re, sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
no_deps, rest = [], []
for req in project["dependencies"] + project["optional-dependencies"]["gui"]:
    name = re.split(r"[<>=!~ \[;]", req, maxsplit=1)[0].lower()
    if name != "torch":
        (no_deps if name in ("torchvision", "timm") else rest).append(req)
open(f"{sys.argv[1]}/requirements-no-deps.txt", "w").write("\n".join(no_deps) + "\n")
open(f"{sys.argv[1]}/requirements-cpu.txt", "w").write("\n".join(rest) + "\n")
PYEOF
{
  "$VPY" -m pip install -q --upgrade pip &&
  "$VPY" -m pip install -q "$TORCH_CPU" &&
  "$VPY" -m pip install -q --no-deps -r "$VENV/requirements-no-deps.txt" &&
  "$VPY" -m pip install -q pyyaml safetensors -r "$VENV/requirements-cpu.txt" -r installer/requirements-build.txt
} > "$LOG" 2>&1 || { tail -n 40 "$LOG" >&2; echo "[cpu-venv] pip failed; full log: $LOG" >&2; exit 1; }
# A dependency that pulled a CUDA torch back in would make this a CUDA environment.
"$VPY" -c "import torch, sys; sys.exit(f'torch {torch.__version__} is not a CPU build' if torch.version.cuda else 0)"
if "$VPY" -m pip list --format=freeze | grep -qiE '^(nvidia-|triton)'; then
  echo "[cpu-venv] NVIDIA packages found in $VENV" >&2; exit 1
fi
echo "$WANT" > "$STAMP"
