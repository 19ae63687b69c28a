"""The engine's documented exception types.

Every failure that comes from the *input* (a file that cannot be read or decoded, a
checkpoint that is not a valid MSFM checkpoint) is raised as one of these, with a message
that names the file and the reason, so callers can report it and go on with the rest.
"""

from __future__ import annotations

from pathlib import Path


class MSFMError(Exception):
    """Base class of the engine's own errors."""


class ImageLoadError(MSFMError):
    """An image or DICOM file could not be turned into pixels.

    ``path`` is the offending file and ``reason`` a one-line, human-readable cause
    (``"no pixel data (Comprehensive SR Storage)"``, ``"truncated PNG"``, ...).
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        # Decoder messages span lines; callers show one line per file.
        self.reason = " ".join(str(reason).split())
        super().__init__(f"{self.path}: {self.reason}")

    def __reduce__(self):
        # Crosses process boundaries (the desktop decodes in a child process).
        return (type(self), (self.path, self.reason))


class CheckpointError(MSFMError):
    """A checkpoint file is missing, corrupt, needs pickle, or does not match the model."""


class ConfigError(MSFMError, ValueError):
    """A configuration value is out of range or inconsistent (e.g. windows larger than the grid)."""


class Cancelled(MSFMError):
    """Thrown into an engine generator at a ``yield`` to stop it early
    (:func:`engine.tasks.drive`, the desktop's tasks). A generator that has a useful
    partial result catches it there and returns that result; one that does not lets it
    propagate, and the run ends without a result."""
