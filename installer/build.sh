#!/usr/bin/env bash
# Build the self-contained desktop bundle with PyInstaller (installer/msfm.spec).
#
#   installer/build.sh [--variant cpu|cuda] [--dist DIR] [--work DIR] [--tarball]
#
# Sets up the machine first (scripts/bootstrap.sh, as the README's commands do), installs
# the pinned build tools, and writes DIR/msfm-desktop/ (default dist/): the executables
# msfm-desktop and msfm, _internal/ (Python, torch, Qt, model, demo study), licenses/,
# BUILD_INFO.json and, on Linux, the AppDir files (AppRun, .desktop, icon, install.sh).
# --tarball also packs it as DIR/msfm-desktop-<version>-linux-<arch>-<variant>.tar.zst.
# --variant cpu (default; for PCs without an NVIDIA GPU) builds from build/venv-cpu, a venv
# with CPU torch made by installer/cpu_venv.sh; --variant cuda builds from .venv (CUDA torch,
# NVIDIA libraries included). See installer/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DIST=dist
WORK=
TARBALL=0
VARIANT_WANTED=cpu
while [ $# -gt 0 ]; do
  case "$1" in
    --variant) VARIANT_WANTED=$2; shift 2 ;;
    --dist) DIST=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --tarball) TARBALL=1; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

case "$VARIANT_WANTED" in
  cpu|cuda) ;;
  *) echo "build.sh: --variant must be cpu or cuda, not $VARIANT_WANTED" >&2; exit 2 ;;
esac
WORK=${WORK:-build/pyinstaller-$VARIANT_WANTED}

bash scripts/bootstrap.sh
if [ "$VARIANT_WANTED" = cpu ]; then
  bash installer/cpu_venv.sh build/venv-cpu
  PY=build/venv-cpu/bin/python
else
  PY=.venv/bin/python
  "$PY" -m pip install -q -r installer/requirements-build.txt
fi
"$PY" -c "import sys, torch; sys.exit(0 if (torch.version.cuda is None) == ('$VARIANT_WANTED' == 'cpu') else f'torch {torch.__version__} in $PY is not a $VARIANT_WANTED build')"
BUNDLE="$DIST/msfm-desktop"
START=$(date +%s)
echo "[build] PyInstaller -> $BUNDLE (work files in $WORK)"
"$PY" -m PyInstaller --noconfirm --log-level WARN --distpath "$DIST" --workpath "$WORK" installer/msfm.spec

if [ "$(uname -s)" = Linux ]; then
  cp installer/linux/AppRun installer/linux/install.sh installer/linux/msfm-desktop.desktop "$BUNDLE/"
  cp resources/icons/msfm-desktop-256.png "$BUNDLE/msfm-desktop.png"
  ln -sf msfm-desktop.png "$BUNDLE/.DirIcon"
fi
cp installer/BUNDLE-README.md "$BUNDLE/README.md"

VERSION=$("$PY" -c "import engine; print(engine.__version__)")
VARIANT=$("$PY" -c "import torch; print(f'cuda{torch.version.cuda}' if torch.version.cuda else 'cpu')")
"$PY" - "$BUNDLE" "$VERSION" "$VARIANT" <<'PYEOF'
import datetime, json, platform, re, shutil, subprocess, sys
from importlib.metadata import version as dist_version
from pathlib import Path
import torch
bundle, version, variant = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
files = [p for p in bundle.rglob("*") if p.is_file() and not p.is_symlink()]
# The oldest glibc the bundle runs on: the newest GLIBC_x.y symbol version any bundled
# ELF file asks for (the Python runtime and system libraries come from the build machine).
glibc = set()
if platform.system() == "Linux" and shutil.which("objdump"):
    for p in files:
        if ".so" in p.name or p.name in ("msfm", "msfm-desktop"):
            out = subprocess.run(["objdump", "-T", str(p)], capture_output=True, text=True).stdout
            glibc.update(re.findall(r"GLIBC_(2\.[0-9]+)", out))
info = {
    "name": "MSFM Desktop", "version": version, "variant": variant,
    "torch": torch.__version__, "torchvision": dist_version("torchvision"), "cuda": torch.version.cuda,
    "python": platform.python_version(), "platform": f"{platform.system()}-{platform.machine()}",
    "glibc_required": max(glibc, key=lambda v: tuple(map(int, v.split(".")))) if glibc else None,
    "built_on_glibc": platform.libc_ver()[1], "git_commit": commit,
    "built": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "size_bytes": sum(p.stat().st_size for p in files), "files": len(files),
}
(bundle / "BUILD_INFO.json").write_text(json.dumps(info, indent=2) + "\n")
print(json.dumps(info, indent=2))
PYEOF

# The bundle must run: a bare version query exercises the bootloader and the frozen imports.
"$BUNDLE/msfm" --version
echo "[build] $(du -sh "$BUNDLE" | cut -f1) in $BUNDLE, built in $(( $(date +%s) - START )) s"

if [ "$TARBALL" = 1 ]; then
  TAR="$DIST/msfm-desktop-$VERSION-$(uname -s | tr '[:upper:]' '[:lower:]')-$(uname -m)-$VARIANT.tar.zst"
  tar -C "$DIST" -I "zstd -T0 -6 -q" -cf "$TAR" msfm-desktop
  echo "[build] $(du -sh "$TAR" | cut -f1) in $TAR"
fi
