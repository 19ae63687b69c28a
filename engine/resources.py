"""Bundled resources: the default model and the demo study (SPEC §2 ``resources/``).

The CLI's ``--checkpoint default`` and the desktop app's default model both resolve here,
so they can never disagree about which file "default" is.
"""

from __future__ import annotations

from pathlib import Path

from .errors import CheckpointError

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
DEFAULT_MODEL = RESOURCES / "models" / "default.pt"
MODEL_CARD = RESOURCES / "models" / "MODEL_CARD.md"
DEMO_STUDY = RESOURCES / "demo"


def resolve_checkpoint(value: str | Path) -> Path:
    """``"default"`` → the bundled model (:class:`CheckpointError` when it is missing);
    anything else is taken as a file path."""
    if str(value) == "default":
        if not DEFAULT_MODEL.is_file():
            raise CheckpointError(f"no default model is bundled at {DEFAULT_MODEL}; pass --checkpoint FILE")
        return DEFAULT_MODEL
    return Path(value)
