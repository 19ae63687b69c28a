"""Frozen entry point of ``msfm-desktop`` (installer/msfm.spec builds it)."""

import multiprocessing
import sys

if __name__ == "__main__":
    # The decoder and fine-tune children are spawned, which in a bundle re-runs this
    # executable; freeze_support() turns such a start into the child, before any import.
    multiprocessing.freeze_support()
    from msfm_desktop.main import main

    sys.exit(main())
