"""The body of the fine-tuning child process (:mod:`.training`). Qt-free, so the
spawned process imports only the engine.

The child sends typed messages, each a frozen dataclass: the engine's training events
(:mod:`engine.train.events`) as they come, then :class:`Comparing` / :class:`Compared` for
the held-out comparison, and last :class:`ChildDone`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.library.finetune import FineTuneRun


@dataclass(frozen=True)
class Comparing:
    """The comparison has evaluated ``done`` of ``total`` images (both models)."""

    done: int
    total: int


@dataclass(frozen=True)
class Compared:
    """The previous and the new model on the run's held-out images (``compare_models``)."""

    comparison: dict[str, Any]


@dataclass(frozen=True)
class ChildDone:
    """The run ended: ``status`` finished | cancelled | failed, and why."""

    status: str
    message: str


def run_child(run_dir: str, resume: bool, out, cancel) -> None:
    """Runs in the spawned process: train, then compare; every message goes to ``out``."""
    from engine.library.finetune import compare_models, held_out, run_finetune

    from .decoder import _exit_with_parent

    _exit_with_parent(os.getppid())  # an app that crashed or was killed leaves no trainer behind
    run = FineTuneRun.load(Path(run_dir))
    if run is None:
        out.put(ChildDone("failed", f"{run_dir}: no readable job.json"))
        return
    gen = run_finetune(run, resume)
    try:
        for ev in gen:
            out.put(ev)
            if cancel.is_set():
                break
    except Exception as exc:  # NaN loss, unreadable data, ...: the job says why
        gen.close()
        out.put(ChildDone("failed", str(exc) or type(exc).__name__))
        return
    gen.close()  # after a cancel: saves last.pt and marks the job cancelled
    if run.status == "finished" and run.best.is_file() and not cancel.is_set():
        try:
            cmp = compare_models(run.config.base, run.best, held_out(run), run.config.device,
                                 progress=lambda d, t: out.put(Comparing(d, t)))
            out.put(Compared(cmp))
        except Exception as exc:
            out.put(ChildDone("failed", f"comparison failed: {exc}"))
            return
    out.put(ChildDone(run.status, run.message))
