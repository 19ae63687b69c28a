"""Frozen entry point of ``msfm``, the command-line engine (installer/msfm.spec builds it)."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()  # spawned DataLoader/DDP children re-run this executable
    from engine.cli import main

    sys.exit(main())
