"""The one way the desktop runs long work: a :class:`Task` on a worker thread.

Every long job (indexing a study, decoding an image, analysing, exporting, sending to a
PACS, checking a fine-tuning folder, training in its child process, making thumbnails)
is an engine generator of plain, frozen events that returns its result
(:mod:`engine.tasks`), or a plain call. :func:`run_task` runs it on a worker thread as a
:class:`Task`: superqt's generator worker (``superqt.utils.GeneratorWorker``, the field's
well-kept one), driven by :func:`engine.tasks.drive`, so one loop decides how events
flow and how a task stops. Its signals reach the UI thread (queued): ``yielded(event)``
per event, ``returned(result)`` at the end, also after a cancel when the task had a
partial result, ``errored(exception)`` instead when it raised, then ``finished``.
:meth:`Task.cancel` throws :class:`engine.errors.Cancelled` in at the next ``yield``;
:meth:`Task.wait` joins it. Nothing else in the desktop makes a thread.
"""

from __future__ import annotations

import gc
import inspect
import threading
from collections.abc import Callable, Generator
from typing import Any

from PySide6.QtCore import QThreadPool, Signal
from superqt.utils import GeneratorWorker
from superqt.utils._qthreading import GeneratorWorkerSignals

from engine.tasks import drive

#: Threads for tasks: a scan, thumbnails, a decode, analyses and an export must not queue
#: behind each other (they mostly wait on the decoder process or on torch, which release
#: the GIL). No task waits idle, so these are only ever busy with work.
MAX_THREADS = 16


class TaskSignals(GeneratorWorkerSignals):
    """superqt's generator-worker signals (``yielded``, ``returned``, ``errored``,
    ``finished``, ...) plus ``cancelled``, emitted when a cancel reached the task."""

    cancelled = Signal()


class Task(GeneratorWorker):
    """One long job on a worker thread (see the module docstring).

    ``fn(*args, **kwargs)`` is a generator function (its events are yielded) or a plain
    function (no events; its value is the result). Connect the signals before
    :meth:`start`; they are delivered in the UI thread in the order emitted.
    """

    _pool: QThreadPool | None = None

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if not inspect.isgeneratorfunction(fn):
            call = fn

            def fn(*a: Any, **k: Any) -> Generator[None, None, Any]:  # a plain call: no events
                return call(*a, **k)
                yield  # never reached: makes this a generator function

        super().__init__(fn, *args, SignalsClass=TaskSignals, **kwargs)
        # Python owns the task (superqt's worker set holds it until ``finished`` is delivered);
        # the pool must not delete the C++ object under the wrapper when ``run`` returns.
        self.setAutoDelete(False)
        self._done = threading.Event()  # set in the worker thread when the work ended
        self._delivered = False  # set in the UI thread once ``finished`` (the last signal) arrived
        self.was_cancelled = False
        self._started = False
        self.finished.connect(self._on_finished)

    def _on_finished(self) -> None:
        self._delivered = True

    def cancel(self) -> None:
        """Thread-safe: :class:`engine.errors.Cancelled` is thrown in at the task's next
        ``yield`` (a plain call runs to its end)."""
        self.quit()

    def _cancel_requested(self) -> bool:
        if self.abort_requested and not self.was_cancelled:
            self.was_cancelled = True
            self.cancelled.emit()
        return self.abort_requested

    def work(self) -> Any:
        return drive(self._gen, self.yielded.emit, self._cancel_requested)

    def run(self) -> None:  # in the pool thread (QRunnable)
        self.started.emit()
        self._running = True
        try:
            self.returned.emit(self.work())
        except Exception as exc:  # the caller decides what the user sees; nothing is raised in the thread
            self.errored.emit(exc)
        finally:
            self._running = False
            self._done.set()
            self.finished.emit()
            self._finished.emit(self)

    def start(self) -> None:
        """Run on the desktop's thread pool, now (superqt's ``start`` defers by a timer
        tick, and a window closing right after would wait for a task that never began)."""
        if Task._pool is None:
            Task._pool = QThreadPool()
            Task._pool.setMaxThreadCount(MAX_THREADS)
        self._started = True
        self._worker_set.add(self)  # superqt's reference keeping the Python object alive
        self._finished.connect(self._set_discard)
        Task._pool.start(self)

    def running(self) -> bool:
        """Started, and its results not yet all delivered to the UI thread (so a caller that
        sees False has seen every event and the result)."""
        return self.is_started and not self._delivered

    @property
    def is_started(self) -> bool:
        return self._started

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the task has finished (True) or ``timeout`` seconds passed (False)."""
        return self._done.wait(timeout)


def run_task(fn: Callable[..., Any], *args: Any, yielded: Callable | None = None, returned: Callable | None = None,
             errored: Callable | None = None, finished: Callable | None = None, **kwargs: Any) -> Task:
    """Start ``fn(*args, **kwargs)`` as a :class:`Task` with the given slots connected;
    returns it (to cancel or wait on). Slots run in the UI thread."""
    task = Task(fn, *args, **kwargs)
    for signal, slot in (("yielded", yielded), ("returned", returned), ("errored", errored), ("finished", finished)):
        if slot is not None:
            getattr(task, signal).connect(slot)
    task.start()
    return task


def stop_task(task: Task | None, wait: bool = True) -> None:
    """Cancel ``task`` (if any) and, with ``wait``, join it: a dialog, panel or window
    closing never leaves work running behind it."""
    if task is not None:
        task.cancel()
        if wait:
            task.wait()


_warm = False
_warm_lock = threading.Lock()


def warm_up_engine() -> None:
    """Pay the engine's one-time costs once per process: importing the model code, timm
    (the backbones import it lazily), ONNX Runtime and the torch-free predictor, torch's first ``torch.load`` (it initialises its
    pytree registry), the ImageNet Lite0 weights every FMA network starts from (a legacy
    pickle), and a full garbage collection. Each holds the GIL: measured, each stalled the
    event loop by 140–220 ms when it happened in a worker while the user worked. So a
    window pays them on the UI thread before it shows, except at the app's launch, where
    the model-loading task pays them right after the window shows (the stalls fall in the
    first seconds, before anyone works; the window comes 1.5 s sooner). Afterwards a model
    loads in a worker with no stall above ~20 ms (``benchmarks/ui_responsiveness.py``).
    Thread-safe: a second caller waits for the first."""
    global _warm
    with _warm_lock:
        if _warm:
            return
        _warm_up()
        _warm = True


def _warm_up() -> None:
    import importlib
    import io

    import torch

    from engine.model.backbones import load_lite0_imagenet_state

    for module in ("timm", "engine.infer", "engine.lite.predictor"):
        importlib.import_module(module)
    from engine.model import ort

    ort.available()  # imports ONNX Runtime (0.2 s, GIL held): not in the first analysis' worker

    ort.EXPORT_IN_CHILD = True  # a model's first ONNX export (seconds, GIL held) happens in a child, not beside the UI

    buf = io.BytesIO()
    torch.save({"w": torch.zeros(1)}, buf)
    buf.seek(0)
    torch.load(buf, weights_only=True)
    load_lite0_imagenet_state()
    # A full collection walks every live object with the GIL held: with torch, Qt and
    # pyqtgraph loaded that is 150-200 ms, and building a model allocates enough to set
    # one off in a worker. Objects alive now live as long as the app; freezing them
    # keeps later collections short.
    gc.collect()
    gc.freeze()
