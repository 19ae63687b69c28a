"""Image decoding in a child process, so no decoder can stall (or crash) the window.

The JPEG 2000, JPEG-LS and JPEG lossless decoders behind pydicom hold the GIL while they
run: measured on the shared CR files, a decode in a worker *thread* stopped the event
loop for 67–110 ms. Decoding in one long-lived child process (spawned, so it carries no
Qt or torch state; it imports only ``engine.io`` and OpenCV) keeps those stalls out of
the UI process; the pixels come back pickled (a 2k × 2k float32 image in ~15 ms). The
child keeps its last few files decoded, so the thumbnail, the shown image and the
model's input of one file come from one decode. A
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
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path

import numpy as np

from engine.errors import ImageLoadError
from engine.types import LoadedImage

log = logging.getLogger(__name__)


#: The files decoded last in the child, each as every frame's display pixels with the
#: model's input beside them (:meth:`engine.types.LoadedImage.for_model`): a file that is
#: thumbnailed, shown and analysed is decoded once. Bounded by count and bytes.
_RECENT: OrderedDict[tuple[str, int, int], list[LoadedImage]] = OrderedDict()
RECENT_FILES = 3
RECENT_BYTES = 256 << 20
_decodes = 0  # decodes done in this child (for tests and benchmarks)


def _nbytes(images: list[LoadedImage]) -> int:
    return sum(im.pixels.nbytes + (im.model_pixels.nbytes if im.model_pixels is not None else 0) for im in images)


def _decoded(path: str) -> list[LoadedImage]:
    """Every frame of ``path`` for display and model, from the recent files or decoded now."""
    global _decodes
    from engine.io import load_images

    try:
        st = os.stat(path)
        # The path as asked for, not its target: a LoadedImage names its source, and two
        # links to one file are two images to the viewer.
        key: tuple[str, int, int] | None = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    except OSError:
        key = None  # the loader says why (missing, a folder, ...)
    if key is not None and key in _RECENT:
        _RECENT.move_to_end(key)
        return _RECENT[key]
    images = load_images(path, apply_voi=False, model_input=True)
    _decodes += 1
    if key is not None and _nbytes(images) <= RECENT_BYTES:
        _RECENT[key] = images
        while len(_RECENT) > RECENT_FILES or sum(_nbytes(v) for v in _RECENT.values()) > RECENT_BYTES:
            _RECENT.popitem(last=False)
    return images


def _as_asked(image: LoadedImage, apply_voi: bool, model_input: bool) -> LoadedImage:
    if apply_voi:
        return image.for_model()
    return image if model_input or image.model_pixels is None else replace(image, model_pixels=None)


def _load_all(path: str, apply_voi: bool) -> list[LoadedImage]:
    return [_as_asked(im, apply_voi, False) for im in _decoded(path)]


def _load_one(path: str, frame: int, apply_voi: bool, model_input: bool = False) -> LoadedImage:
    frames = _decoded(path)
    if not 0 <= frame < len(frames):
        raise ImageLoadError(path, f"frame {frame} requested but the file has {len(frames)}")
    return _as_asked(frames[frame], apply_voi, model_input)


def _thumbnail(path: str, size: int) -> np.ndarray:
    from engine.io.thumbnails import make_thumbnail

    return make_thumbnail(_decoded(path)[0].for_model().pixels, size)


def _decode_count() -> int:
    return _decodes


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

    def load_image(self, path: str | Path, frame: int = 0, apply_voi: bool = True, model_input: bool = False) -> LoadedImage:
        """One frame of ``path`` (see :func:`engine.io.load_image`)."""
        return self._call(path, _load_one, frame, apply_voi, model_input)

    def thumbnail(self, path: str | Path, size: int = 64) -> np.ndarray:
        return self._call(path, _thumbnail, size)

    def decodes(self) -> int:
        """How many files the current child has decoded (the recent files are reused)."""
        return self._executor().submit(_decode_count).result()

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
