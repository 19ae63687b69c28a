"""Bundled resources: the default model and the demo study (SPEC §2 ``resources/``).

The CLI's ``--checkpoint default`` and the desktop app's default model both resolve here,
so they can never disagree about which file "default" is.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import CheckpointError


def _root() -> Path:
    # A PyInstaller bundle unpacks its data beside the modules, under sys._MEIPASS
    # (``_internal/`` of the one-folder bundle; installer/msfm.spec puts it there).
    if getattr(sys, "frozen", False) and hasattr(sys, "_MEIPASS"):
        return Path(sys._MEIPASS)
    return Path(__file__).resolve().parent.parent


RESOURCES = _root() / "resources"
DEFAULT_MODEL = RESOURCES / "models" / "default.pt"
MODEL_CARD = RESOURCES / "models" / "MODEL_CARD.md"
DEMO_STUDY = RESOURCES / "demo"
ICONS = RESOURCES / "icons"
#: DejaVu Sans (its licence beside it): the PDF report prints names in any script.
FONTS = RESOURCES / "fonts"


DATA_ENV = "MSFM_DATA_DIR"
APP_NAME, APP_AUTHOR = "MSFM Desktop", "MSFM"


def data_dir() -> Path:
    """The user data folder (``$MSFM_DATA_DIR``, else the platform's, e.g.
    ``~/.local/share/MSFM Desktop``): installed models, fine-tuning runs, the PACS outbox,
    this installation's identity."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, APP_AUTHOR))


CACHE_ENV = "MSFM_CACHE_DIR"


def cache_dir() -> Path:
    """The user cache folder (``$MSFM_CACHE_DIR``, else the platform's, e.g.
    ``~/.cache/MSFM Desktop``): files derived from others that can be made again (the
    ONNX graphs of a model, :mod:`engine.model.ort`)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME, APP_AUTHOR))


def resolve_checkpoint(value: str | Path) -> Path:
    """``"default"`` → the bundled model (:class:`CheckpointError` when it is missing);
    anything else is taken as a file path."""
    if str(value) == "default":
        if not DEFAULT_MODEL.is_file():
            raise CheckpointError(f"no default model is bundled at {DEFAULT_MODEL}; pass --checkpoint FILE")
        return DEFAULT_MODEL
    return Path(value)
