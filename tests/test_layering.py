"""engine/ must never import Qt (SPEC §2)."""

import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import engine

QT = ("PySide6", "PyQt5", "PyQt6", "shiboken6", "pyqtgraph", "superqt", "qtpy")


def test_engine_imports_without_any_qt_module():
    modules = [m.name for m in pkgutil.walk_packages(engine.__path__, "engine.")]
    assert "engine.infer" in modules and "engine.io.dicom" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {QT!r}]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


def test_no_qt_import_statement_in_engine_sources():
    pattern = re.compile(r"^\s*(from|import)\s+(" + "|".join(QT) + r")\b", re.M)
    offenders = [str(p) for p in Path(engine.__file__).parent.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
