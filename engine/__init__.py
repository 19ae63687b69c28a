"""MSFM engine: the multistage feature-map network (Kumar et al., ICCVW 2023) and
everything around it that needs no display: image/DICOM loading, inference, training,
metrics, checkpoints, exports and the ``msfm`` command line.

Nothing under ``engine`` imports Qt (``tests/test_layering.py`` enforces it).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
