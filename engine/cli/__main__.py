"""``python -m engine.cli`` (what ``torchrun -m engine.cli train ...`` runs on each rank)."""

from . import main

if __name__ == "__main__":
    raise SystemExit(main())
