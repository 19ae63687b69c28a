#!/usr/bin/env bash
# Idempotent set-up of a fresh machine: system packages (Debian), a project venv in .venv,
# the tested torch pair and the project with its dev extras. Re-runs are cheap: the pip
# step is skipped while pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3

# System libraries Qt needs even offscreen, and Xvfb for a real window (SPEC §9); the
# tests' DICOM conformance checker (dciodvfy, dicom3tools), storage SCP (dcmtk storescp)
# and desktop-entry checker (desktop-file-validate); zstd packs the bundle tarball; Orthanc
# is the PACS the integration test starts (in a loopback-only network namespace) and
# poppler-utils turns the PDF reports into pictures and text for the tests.
APT_PKGS=(xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0 libegl1 libgl1 libfontconfig1 libdbus-1-3 dicom3tools dcmtk desktop-file-utils zstd orthanc poppler-utils)
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  missing=()
  for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "[bootstrap] apt-get install ${missing[*]}"
    apt-get update -qq >/dev/null
    # The orthanc package would start a PACS service listening on every interface: no
    # service is started while installing (policy-rc.d 101), and none is left enabled.
    POLICY=/usr/sbin/policy-rc.d
    MADE_POLICY=0
    if [ ! -e "$POLICY" ]; then printf '#!/bin/sh\nexit 101\n' > "$POLICY"; chmod +x "$POLICY"; MADE_POLICY=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    [ "$MADE_POLICY" = 1 ] && rm -f "$POLICY"
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then systemctl disable --now orthanc >/dev/null 2>&1 || true; fi
  fi
fi

# A venv whose creation was interrupted has a python but no pip: make it again.
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  echo "[bootstrap] creating $VENV"
  "$PY" -m venv --clear "$VENV"
fi
STAMP="$VENV/.msfm-installed"
WANT=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "[bootstrap] installing the project into $VENV (first run takes a few minutes)"
  LOG="$VENV/bootstrap.log"
  {
    "$VENV/bin/python" -m pip install -q --upgrade pip &&
    # The torch pair first, by exact version, so pip takes the tested wheels.
    "$VENV/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1 &&
    "$VENV/bin/python" -m pip install -q -e ".[dev]"
  } > "$LOG" 2>&1 || { tail -n 40 "$LOG" >&2; echo "[bootstrap] pip failed; full log: $LOG" >&2; exit 1; }
  echo "$WANT" > "$STAMP"
fi
