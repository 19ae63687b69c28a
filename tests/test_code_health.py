"""The habits that keep the code in shape, run by CI with the rest of the suite
(configured in pyproject.toml): ruff on every Python tree, mypy on the engine, the layer
contracts (import-linter), and benchmarks that stand on the engine, not on the tests."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    assert path, f"{name} is a dev dependency (pip install -e '.[dev]'; scripts/bootstrap.sh does it)"
    return str(path)


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_ruff():
    done = run(tool("ruff"), "check", "engine", "msfm_desktop", "tests", "scripts", "benchmarks", "reference")
    assert done.returncode == 0, done.stdout[-4000:]


def test_mypy_on_the_engine():
    done = run(tool("mypy"))
    assert done.returncode == 0, done.stdout[-4000:]


def test_layer_contracts():
    done = run(tool("lint-imports"))
    assert done.returncode == 0 and "0 broken" in done.stdout, done.stdout[-4000:]


def test_benchmarks_do_not_import_the_tests():
    pattern = re.compile(r"^\s*(from|import)\s+tests\b", re.M)
    assert [p.name for p in (ROOT / "benchmarks").glob("*.py") if pattern.search(p.read_text())] == []
