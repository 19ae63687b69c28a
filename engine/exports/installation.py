"""What identifies this installation in the objects it writes: the SR's Device Observer UID.

PS3.16 TID 1004: the Device Observer UID names the device that made the observation, so a
PACS or a rules engine can tell the findings of one installation from another's. It is made
once per installation and kept in the user data folder (``engine.resources.data_dir``), not
drawn anew for every report.
"""

from __future__ import annotations

import functools
import json
import platform
from pathlib import Path

from pydicom.uid import generate_uid

from ..atomic import write_json_atomic
from ..resources import data_dir

FILE = "installation.json"


def device_observer_uid(folder: Path | None = None) -> str:
    """This installation's Device Observer UID, made and stored on first use (read once per
    data folder and process, not once per report).

    Where the data folder cannot be written, the UID is derived from the host's name and
    the folder, so it is still the same on every call of this installation."""
    return _uid_at((folder or data_dir()) / FILE)


@functools.lru_cache(maxsize=8)
def _uid_at(path: Path) -> str:
    try:
        uid = json.loads(path.read_text(encoding="utf-8")).get("device_observer_uid")
        if uid:
            return str(uid)
    except (OSError, ValueError):
        pass
    uid = generate_uid()
    try:
        write_json_atomic(path, {"device_observer_uid": uid})
    except OSError:
        return generate_uid(entropy_srcs=[platform.node(), str(path)])
    return uid


__all__ = ["device_observer_uid"]
