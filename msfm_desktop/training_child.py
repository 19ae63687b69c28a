"""The body of the fine-tuning child process (:mod:`.training`). Qt-free, so the
spawned process imports only the engine."""

from __future__ import annotations

import os
from pathlib import Path

from engine.library.finetune import FineTuneRun


def run_child(run_dir: str, resume: bool, out, cancel) -> None:
    """Runs in the spawned process: train, then compare; every message goes to ``out``."""
    from engine.library.finetune import compare_models, held_out, run_finetune

    from .decoder import _exit_with_parent

    _exit_with_parent(os.getppid())  # an app that crashed or was killed leaves no trainer behind
    run = FineTuneRun.load(Path(run_dir))
    if run is None:
        out.put(("finished", ("failed", f"{run_dir}: no readable job.json")))
        return
    gen = run_finetune(run, resume)
    try:
        for ev in gen:
            out.put(("event", ev))
            if cancel.is_set():
                break
    except Exception as exc:  # NaN loss, unreadable data, ...: the job says why
        gen.close()
        out.put(("finished", ("failed", str(exc) or type(exc).__name__)))
        return
    gen.close()  # after a cancel: saves last.pt and marks the job cancelled
    if run.status == "finished" and run.best.is_file() and not cancel.is_set():
        try:
            cmp = compare_models(run.config.base, run.best, held_out(run), run.config.device,
                                 progress=lambda d, t: out.put(("comparing", (d, t))))
            out.put(("compared", cmp))
        except Exception as exc:
            out.put(("finished", ("failed", f"comparison failed: {exc}")))
            return
    out.put(("finished", (run.status, run.message)))
