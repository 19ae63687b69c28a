"""PyInstaller runtime hook of the CPU-only bundle: torchvision importable on CPU torch.

The CPU bundle carries CPU torch 2.13 and PyPI's torchvision 0.29 without its compiled
operators (they link the CUDA torch; installer/cpu_venv.sh). torchvision's Python code runs
on it, and torchvision registers nothing for operators it could not load (its autograd and
most of its fake-kernel registrations ask ``_has_ops()`` first), except two: its
``_meta_registrations`` registers fake kernels for ``torchvision::nms`` and ``::qnms``
unconditionally, and that raises "operator torchvision::nms does not exist" on import
(pytorch/vision#9085). Before the first ``import torchvision`` (not earlier: torch stays a
lazy import and the window shows first) this hook checks whether the compiled operators
load; if not, it stands an empty module in for ``torchvision._meta_registrations``, so
torchvision registers no fake kernels at all — what it does for every other operator it
lacks. The operator registry is not touched: no ``torchvision::`` operator exists, and
``engine.tvops`` takes NMS from OpenCV and computes RoIAlign itself.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import types
from pathlib import Path


def _compiled_ops_load(package_dir: Path) -> bool:
    libs = sorted(package_dir.glob("_C_stable*"))
    if not libs:  # the CPU bundle leaves them out
        return False
    import torch

    try:
        torch.ops.load_library(str(libs[0]))
    except (OSError, RuntimeError):
        return False
    return True


def skip_fake_kernels_without_ops() -> bool:
    """Stand an empty module in for ``torchvision._meta_registrations`` if torchvision's
    compiled operators cannot load; True if it did."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    if _compiled_ops_load(Path(list(spec.submodule_search_locations)[0])):
        return False
    stand_in = types.ModuleType("torchvision._meta_registrations", "Left empty: torchvision's compiled operators are not in this bundle.")
    sys.modules[stand_in.__name__] = stand_in
    return True


class _BeforeTorchvision(importlib.abc.MetaPathFinder):
    """Runs ``skip_fake_kernels_without_ops`` once, just before torchvision is first imported."""

    def find_spec(self, name, path=None, target=None):  # noqa: D401 - importlib protocol
        if name == "torchvision":
            sys.meta_path.remove(self)
            skip_fake_kernels_without_ops()
        return None  # the normal finders import it


sys.meta_path.insert(0, _BeforeTorchvision())
