"""The fine-tuning tasks: training in a child process, and the check of a labelled folder.

Training holds the GIL in many short and some long stretches (checkpoint writes,
building models for the comparison): measured in a worker *thread*, it stalled the event
loop by up to 113 ms. In a spawned child process it cannot, and a crash in training
cannot take the app down. :func:`train_in_child` is the process-backed variant of the
desktop's one worker model: a task generator like any other
(:class:`~msfm_desktop.workers.Task`), which starts the child and yields its typed
messages (:mod:`.training_child`: the engine's training events, :class:`Comparing`,
:class:`Compared`) and returns the :class:`ChildDone`. Cancelling it sets an event the
child checks after every batch (the engine then keeps a resumable ``last.pt``); the task
goes on relaying until the child has said how it ended. After a finished run the child
also evaluates the previous and the new model on the run's held-out images
(:func:`engine.library.finetune.compare_models`) so the user can decide with numbers.

:func:`check_folder_task` checks a labelled folder (:func:`engine.library.finetune.check_folder`:
every image found and decoded): decoding thousands of images takes seconds to minutes,
and the panel must stay responsive meanwhile. Image decoding releases the GIL.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_mod
import time
from collections.abc import Generator, Iterator
from typing import Any

from engine.errors import Cancelled
from engine.library.finetune import DataPreview, FineTuneRun, check_folder
from engine.tasks import Progress, relay

from .training_child import ChildDone, Compared, Comparing, run_child

__all__ = ["ChildDone", "Compared", "Comparing", "check_folder_task", "train_in_child"]


def train_in_child(run: FineTuneRun, resume: bool = False) -> Generator[Any, None, ChildDone]:
    """Train ``run`` in a spawned child process; yields its messages, returns how it ended."""
    ctx = multiprocessing.get_context("spawn")
    cancel, out = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=run_child, args=(str(run.dir), resume, out, cancel), daemon=True, name="msfm-fine-tune")
    proc.start()
    done: ChildDone | None = None
    try:
        while done is None:
            try:
                msg = out.get(timeout=0.2)
            except queue_mod.Empty:
                if not proc.is_alive():
                    done = ChildDone("failed", f"the training process ended unexpectedly (exit code {proc.exitcode}); "
                                               "the last checkpoint is kept, Resume continues from it")
                continue
            if isinstance(msg, ChildDone):
                done = msg
                continue
            try:
                yield msg
            except Cancelled:
                cancel.set()  # the child stops after its batch and says so; keep relaying until then
    finally:
        if done is None:  # the task was closed early (the app is going): the child must not outlive it
            cancel.set()
        proc.join(timeout=30)
        if proc.is_alive():
            proc.terminate()
    return done


#: Seconds between progress events of a folder check: one per image would flood the event loop.
PROGRESS_EVERY_S = 0.1


def check_folder_task(path: str) -> Generator[Progress, None, DataPreview]:
    """:func:`engine.library.finetune.check_folder` with its progress thinned to one event
    per :data:`PROGRESS_EVERY_S`; anything unexpected still ends in a preview that says why."""
    last = 0.0

    def thinned(step: Progress) -> Iterator[Progress]:
        nonlocal last
        now = time.perf_counter()
        if step.done == step.total or now - last >= PROGRESS_EVERY_S:
            last = now
            yield step

    try:
        result, _cancelled = yield from relay(check_folder(path), thinned)  # a cancelled check says so itself
        return result
    except Exception as exc:  # the check reports bad data itself; anything else must still reach the panel
        msg = f"the folder could not be checked: {type(exc).__name__}: {exc}"
        return DataPreview(path, problems=(msg,), reason=msg)
