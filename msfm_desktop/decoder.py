"""Image decoding in a child process, so no decoder can stall (or crash) the window.

The JPEG 2000, JPEG-LS and JPEG lossless decoders behind pydicom hold the GIL while they
run: measured on the shared CR files, a decode in a worker *thread* stopped the event
loop for 67–110 ms. Decoding in one long-lived child process (spawned, so it carries no
Qt or torch state; it imports only ``engine.io`` and OpenCV) keeps those stalls out of
the UI process; the pixels come back pickled (a 2k × 2k float32 image in ~15 ms). A
decoder that crashes the child on a hostile file costs that file only: it is reported as
an :class:`~engine.errors.ImageLoadError` and a fresh child takes over.

Worker threads call the blocking methods; the UI thread never does.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from engine.errors import ImageLoadError
from engine.types import LoadedImage

log = logging.getLogger(__name__)


def _load_all(path: str, apply_voi: bool) -> list[LoadedImage]:
    from engine.io import load_images

    return load_images(path, apply_voi)


def _load_one(path: str, frame: int, apply_voi: bool) -> LoadedImage:
    from engine.io import load_image

    return load_image(path, frame, apply_voi)


def _thumbnail(path: str, size: int) -> np.ndarray:
    from engine.io.thumbnails import load_thumbnail

    return load_thumbnail(path, size)


def _exit_with_parent(parent: int) -> None:
    """In the child: end when the app process is gone. A parent that crashed or was
    killed runs no atexit handler, and an orphaned decoder would wait forever."""
    import os
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _warm() -> bool:
    import importlib

    for module in ("engine.io", "engine.io.thumbnails"):
        importlib.import_module(module)
    return True


class DecodePool:
    """One child process that decodes images; thread-safe blocking calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ex: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._ex is None:
                self._ex = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                               initializer=_exit_with_parent, initargs=(os.getpid(),))
                self._ex.submit(_warm)  # start the child and its imports now, in the background
            return self._ex

    def start(self) -> None:
        """Spawn the child ahead of the first request (returns at once)."""
        self._executor()

    def _call(self, path: str | Path, fn, *args):
        # A child that died while idle (killed, out of memory) breaks the pool before this
        # file reaches it: one retry on a fresh child tells that apart from a file that
        # crashes the decoder itself.
        for attempt in (1, 2):
            ex = self._executor()
            try:
                return ex.submit(fn, str(path), *args).result()
            except ImageLoadError:
                raise
            except BrokenProcessPool as exc:
                with self._lock:
                    if self._ex is ex:
                        self._ex = None  # the next call spawns a fresh child
                ex.shutdown(wait=False, cancel_futures=True)
                if attempt == 2:
                    raise ImageLoadError(path, "the image decoder crashed on this file") from exc
                log.warning("decoder process ended unexpectedly; retrying %s in a new one", path)
            except Exception as exc:  # anything else the decoders raise: report, keep going
                raise ImageLoadError(path, f"{type(exc).__name__}: {exc}") from exc

    def load_images(self, path: str | Path, apply_voi: bool = True) -> list[LoadedImage]:
        """Every frame of ``path`` (see :func:`engine.io.load_images`)."""
        return self._call(path, _load_all, apply_voi)

    def load_image(self, path: str | Path, frame: int = 0, apply_voi: bool = True) -> LoadedImage:
        return self._call(path, _load_one, frame, apply_voi)

    def thumbnail(self, path: str | Path, size: int = 64) -> np.ndarray:
        return self._call(path, _thumbnail, size)

    def shutdown(self) -> None:
        with self._lock:
            ex, self._ex = self._ex, None
        if ex is not None:
            ex.shutdown(wait=True, cancel_futures=True)


_shared: DecodePool | None = None


def shared_pool() -> DecodePool:
    """The application's one decoder process (created on first use, ended at exit)."""
    global _shared
    if _shared is None:
        _shared = DecodePool()
        atexit.register(_shared.shutdown)
    return _shared
