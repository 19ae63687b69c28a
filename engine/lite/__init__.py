"""MSFM inference without torch (ONNX Runtime, NumPy, OpenCV): :class:`LitePredictor`.

``engine.lite.ops`` (NumPy and OpenCV only) is also what the PyTorch side calls for the
steps that run on the host anyway (connected components, NMS without torchvision), so the
package does not import its predictor until it is asked for.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LitePredictor"]


def __getattr__(name: str) -> Any:
    if name == "LitePredictor":
        from .predictor import LitePredictor

        return LitePredictor
    raise AttributeError(name)
