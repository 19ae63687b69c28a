"""MSFM inference without torch (ONNX Runtime, NumPy, OpenCV): :class:`LitePredictor`."""

from .predictor import LitePredictor

__all__ = ["LitePredictor"]
