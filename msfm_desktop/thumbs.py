"""Lazy thumbnails for the study browser, made one at a time by a long-lived
:class:`~msfm_desktop.workers.Task` (which waits on the decoder process, :mod:`.decoder`).

The browser asks for the rows the user can see first (:meth:`ThumbnailLoader.request`
with ``urgent=True``); the rest of the study follows at the back of the queue, so every
file is eventually decoded once and any that cannot be decoded reaches the problems
panel without the user having to open it. A new study replaces the queue.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .workers import Task, run_task


@dataclass(frozen=True)
class Thumbnail:
    """A thumbnail made: ``pixels`` (h, w) uint8, or ``reason`` (one line) why it could not be."""

    path: Path
    pixels: np.ndarray | None = None
    reason: str = ""


class ThumbnailLoader:
    """Decodes thumbnails (:func:`engine.io.thumbnails.load_thumbnail`) until :meth:`stop`,
    in its task (:meth:`start`): ``ready(path, (h, w) uint8)`` and ``failed(path, reason)``
    are called in the UI thread."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.task: Task | None = None
        self._queue: deque[Path] = deque()
        self._seen: set[Path] = set()
        self._cond = threading.Condition()
        self._stopped = False

    def request(self, paths: Iterable[str | Path], urgent: bool = False) -> None:
        """Queue paths not asked for before; ``urgent`` ones (visible rows) go first.
        Thread-safe: called from the UI thread while :meth:`run` works."""
        with self._cond:
            for p in (Path(x) for x in paths):
                if p in self._seen:
                    if urgent and p in self._queue:  # promote a queued row that scrolled into view
                        self._queue.remove(p)
                        self._queue.appendleft(p)
                    continue
                self._seen.add(p)
                self._queue.appendleft(p) if urgent else self._queue.append(p)
            self._cond.notify()

    def reset(self) -> None:
        """Forget the queue and what was made (a new study is opening)."""
        with self._cond:
            self._queue.clear()
            self._seen.clear()

    def start(self, ready, failed) -> Task:
        """Start making thumbnails; ``ready``/``failed`` are the UI-thread callbacks."""
        self.task = run_task(self.make, yielded=lambda t: ready(t.path, t.pixels) if t.pixels is not None else failed(t.path, t.reason))
        return self.task

    def stop(self) -> None:
        """End the task (after the thumbnail in progress) and wait for it."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self.task is not None:
            self.task.wait()

    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def make(self):
        """The task: a :class:`Thumbnail` per queued path, until :meth:`stop`."""
        from engine.errors import ImageLoadError

        from .decoder import shared_pool

        while True:
            with self._cond:
                while not self._queue and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                path = self._queue.popleft()
            try:
                made = Thumbnail(path, shared_pool().thumbnail(path, self.size))
            except ImageLoadError as exc:
                made = Thumbnail(path, reason=exc.reason)
            except Exception as exc:  # a decoder bug must not end the thumbnails
                made = Thumbnail(path, reason=f"{type(exc).__name__}: {exc}")
            yield made
