"""Lazy thumbnails for the study browser, made one at a time in a worker thread (which
waits on the decoder process, :mod:`.decoder`).

The browser asks for the rows the user can see first (:meth:`ThumbnailLoader.request`
with ``urgent=True``); the rest of the study follows at the back of the queue, so every
file is eventually decoded once and any that cannot be decoded reaches the problems
panel without the user having to open it. A new study replaces the queue.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot


class ThumbnailLoader(QObject):
    """Decodes thumbnails (:func:`engine.io.thumbnails.load_thumbnail`) until :meth:`stop`.

    ``ready`` carries (path, (h, w) uint8 array); ``failed`` (path, one-line reason).
    """

    ready = Signal(object, object)
    failed = Signal(object, str)
    finished = Signal()

    def __init__(self, size: int = 64) -> None:
        super().__init__()
        self.size = size
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

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    @Slot()
    def run(self) -> None:
        from engine.errors import ImageLoadError

        from .decoder import shared_pool

        while True:
            with self._cond:
                while not self._queue and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    break
                path = self._queue.popleft()
            try:
                self.ready.emit(path, shared_pool().thumbnail(path, self.size))
            except ImageLoadError as exc:
                self.failed.emit(path, exc.reason)
            except Exception as exc:  # a decoder bug must not end the thumbnail thread
                self.failed.emit(path, f"{type(exc).__name__}: {exc}")
        self.finished.emit()
