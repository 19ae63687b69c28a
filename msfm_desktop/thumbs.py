"""Lazy thumbnails for the study browser, made one at a time by a
:class:`~msfm_desktop.workers.Task` (which waits on the decoder process, :mod:`.decoder`).

The browser asks for the rows the user can see first (:meth:`ThumbnailLoader.request`
with ``urgent=True``); the rest of the study follows at the back of the queue, so every
file is eventually decoded once and any that cannot be decoded reaches the problems
panel without the user having to open it. A new study replaces the queue. The task runs
while there is something to make and ends when the queue is empty (a request starts a
new one): no thread waits idle for the app's lifetime.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
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
    """Decodes thumbnails (:func:`engine.io.thumbnails.load_thumbnail`) of the paths asked
    for: ``ready(path, (h, w) uint8)`` and ``failed(path, reason)`` are called in the UI
    thread."""

    def __init__(self, ready: Callable[[Path, np.ndarray], None], failed: Callable[[Path, str], None], size: int = 64) -> None:
        self.ready, self.failed, self.size = ready, failed, size
        self.task: Task | None = None
        self._queue: deque[Path] = deque()
        self._seen: set[Path] = set()
        self._lock = threading.Lock()
        self._active = False  # a task is making thumbnails (set and cleared under the lock)
        self._stopped = False

    def request(self, paths: Iterable[str | Path], urgent: bool = False) -> None:
        """Queue paths not asked for before; ``urgent`` ones (visible rows) go first, and
        start making them if nothing is running. Called from the UI thread."""
        with self._lock:
            for p in (Path(x) for x in paths):
                if p in self._seen:
                    if urgent and p in self._queue:  # promote a queued row that scrolled into view
                        self._queue.remove(p)
                        self._queue.appendleft(p)
                    continue
                self._seen.add(p)
                self._queue.appendleft(p) if urgent else self._queue.append(p)
            start = bool(self._queue) and not self._active and not self._stopped
            self._active = self._active or start
        if start:
            self.task = run_task(self.make, yielded=self._deliver)

    def _deliver(self, t: Thumbnail) -> None:
        if t.pixels is not None:
            self.ready(t.path, t.pixels)
        else:
            self.failed(t.path, t.reason)

    def reset(self) -> None:
        """Forget the queue and what was made (a new study is opening)."""
        with self._lock:
            self._queue.clear()
            self._seen.clear()

    def stop(self) -> None:
        """No more thumbnails (the window is closing): wait for the one in progress."""
        with self._lock:
            self._stopped = True
            self._queue.clear()
        if self.task is not None:
            self.task.wait()

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def make(self):
        """The task: a :class:`Thumbnail` per queued path, until the queue is empty."""
        from engine.errors import ImageLoadError

        from .decoder import shared_pool

        while True:
            with self._lock:
                if not self._queue or self._stopped:
                    self._active = False
                    return
                path = self._queue.popleft()
            try:
                made = Thumbnail(path, shared_pool().thumbnail(path, self.size))
            except ImageLoadError as exc:
                made = Thumbnail(path, reason=exc.reason)
            except Exception as exc:  # a decoder bug must not end the thumbnails
                made = Thumbnail(path, reason=f"{type(exc).__name__}: {exc}")
            yield made
