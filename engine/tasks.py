"""How the engine's long work runs: as generators of plain, frozen events.

A long engine call (indexing a study, checking a fine-tuning folder, exporting, sending
to a PACS, predicting a folder, training) is a generator: it yields one event per step
(:class:`engine.io.study.ScanProgress`, :class:`Progress`, ...) and *returns* its result
(``StopIteration.value``). Whoever runs it decides how to show the events: the CLI and
the tests with :func:`drive` and a callback, the desktop on a worker thread
(``msfm_desktop.workers.Task``), which hands every event to the UI thread.

Stopping early is one rule for every task: :class:`engine.errors.Cancelled` is thrown in
at the ``yield`` the generator is suspended at. A generator with a useful partial result
catches it there and returns that result (a scan returns what it indexed so far, marked
cancelled); it may keep yielding while it winds down (a training child saving its
resumable checkpoint). One that does not catch it simply ends without a result.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import Cancelled

E = TypeVar("E")
R = TypeVar("R")


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` items of a task (images checked, objects exported, ...)."""

    done: int
    total: int


def drive(gen: Generator[E, Any, R], on_event: Callable[[E], None] | None = None,
          cancel: Callable[[], bool] | None = None) -> R | None:
    """Run ``gen`` to its end and return its result.

    ``on_event`` receives every event in order. ``cancel`` is polled after each event;
    the first time it returns True, :class:`~engine.errors.Cancelled` is thrown into the
    generator (once: afterwards the generator winds down at its own pace). Returns the
    generator's return value, or None when it let the cancellation propagate. The
    generator is closed in every case, so its clean-up runs in the caller's thread.
    """
    thrown = False
    try:
        event = next(gen)
        while True:
            if on_event is not None:
                on_event(event)
            if not thrown and cancel is not None and cancel():
                thrown = True
                event = gen.throw(Cancelled())
            else:
                event = next(gen)
    except StopIteration as stop:
        return stop.value
    except Cancelled:
        if not thrown:
            raise  # not ours: a Cancelled from somewhere inside is a bug to see
        return None
    finally:
        gen.close()


def relay(gen: Generator[E, Any, R], convert: Callable[[E], Iterable[Any]]) -> Generator[Any, Any, tuple[R, bool]]:
    """Run engine task ``gen`` inside another task (``yield from relay(...)``): each of its
    events becomes the events ``convert(event)`` gives (none, one or more: a log line, a
    thinned progress). A :class:`~engine.errors.Cancelled` thrown in at one of them is passed
    on to ``gen`` once, which winds down and returns. Returns (``gen``'s result, whether it
    was cancelled); ``gen`` must return on a cancel, as every engine task with a partial
    result does."""
    cancelled = thrown = False
    try:
        event = next(gen)
        while True:
            for out in convert(event):
                try:
                    yield out
                except Cancelled:
                    cancelled = True
            if cancelled and not thrown:
                thrown = True
                event = gen.throw(Cancelled())
            else:
                event = next(gen)
    except StopIteration as stop:
        return stop.value, cancelled
    finally:
        gen.close()


__all__ = ["Progress", "drive", "relay"]
