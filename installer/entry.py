"""Frozen entry point of both programs of the bundle (installer/msfm.spec builds it).

One executable serves ``msfm-desktop`` (the app) and ``msfm`` (the command-line engine),
chosen by the name it was started under: on Linux ``msfm`` is a link to ``msfm-desktop``,
so the bundle carries one copy of the Python archive (60 MB) instead of two; on Windows
and macOS the spec builds the same script twice, as a windowed and a console program.
"""

import multiprocessing
import os
import sys

if __name__ == "__main__":
    # The decoder and fine-tune children (and DataLoader workers) are spawned, which in a
    # bundle re-runs this executable; freeze_support() turns such a start into the child,
    # before any import and before the name is looked at.
    multiprocessing.freeze_support()
    name = os.path.splitext(os.path.basename(sys.argv[0]))[0].lower()
    if name == "msfm":
        from engine.cli import main
    else:
        from msfm_desktop.main import main
    sys.exit(main())
