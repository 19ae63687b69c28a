"""The desktop's one worker model (msfm_desktop/workers.py): every long task is a Task on
a worker thread; its events, result and errors reach the UI thread in order; a cancel
reaches the engine generator, which may answer with its partial result."""

import threading
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from engine.errors import Cancelled  # noqa: E402
from engine.tasks import Progress  # noqa: E402
from msfm_desktop.workers import run_task, stop_task  # noqa: E402


def test_events_result_and_end_reach_the_ui_thread_in_order(qtbot):
    main, got = threading.current_thread(), []

    def counting(n):
        for i in range(n):
            yield Progress(i + 1, n)
        return sum(range(n))

    task = run_task(counting, 4, yielded=lambda e: got.append(("event", e.done, threading.current_thread() is main)),
                    returned=lambda r: got.append(("result", r, threading.current_thread() is main)),
                    finished=lambda: got.append(("end", None, threading.current_thread() is main)))
    qtbot.waitUntil(lambda: not task.running(), timeout=10000)
    # running() turns False only once every signal has been delivered: nothing arrives after.
    assert got == [("event", 1, True), ("event", 2, True), ("event", 3, True), ("event", 4, True), ("result", 6, True), ("end", None, True)]


def test_an_error_is_delivered_not_raised_and_a_plain_call_is_a_task_too(qtbot):
    errors, results = [], []

    def broken():
        yield 1
        raise ValueError("unreadable label file")

    failing = run_task(broken, errored=errors.append, returned=results.append)
    plain = run_task(lambda a, b: a * b, 6, 7, returned=results.append)
    qtbot.waitUntil(lambda: not failing.running() and not plain.running(), timeout=10000)
    assert [str(e) for e in errors] == ["unreadable label file"] and results == [42]


def test_cancel_reaches_the_generator_which_returns_what_it_has(qtbot):
    gate, got = threading.Event(), []

    def slow():
        done = 0
        try:
            while True:
                gate.wait(5)
                done += 1
                yield done
        except Cancelled:
            return f"partial: {done}"

    task = run_task(slow, returned=got.append)
    cancelled = []
    task.cancelled.connect(lambda: cancelled.append(True))
    task.cancel()
    gate.set()
    stop_task(task)  # joins the thread
    qtbot.waitUntil(lambda: not task.running(), timeout=10000)
    assert got == ["partial: 1"] and task.was_cancelled and cancelled == [True]


def test_no_code_in_the_desktop_makes_threads_of_its_own():
    """The one worker model: QThread, threading.Thread and QThreadPool appear only in
    workers.py (and the parent watchdog that runs inside the decoder and training child
    processes, which is not the app's work)."""
    root = Path(__file__).resolve().parents[2] / "msfm_desktop"
    offenders = [f"{p.name}: {word}" for p in sorted(root.glob("*.py")) if p.name != "workers.py"
                 for word in ("QThread", "threading.Thread", "QThreadPool", "QRunnable") if word in p.read_text()]
    assert offenders == ["decoder.py: threading.Thread"]
