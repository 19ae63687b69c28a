"""How long engine work runs (engine/tasks.py): generators of frozen events, driven to
their result, stopped by throwing Cancelled in. Real engine tasks: the study scan on the
DICOM corpus, the fine-tuning folder check on real radiographs, the DICOM export."""

import dataclasses

import pytest

from engine.errors import Cancelled
from engine.tasks import Progress, drive
from tests.conftest import DICOM, XRAY


def test_drive_returns_the_result_and_passes_every_event():
    def counting(n):
        for i in range(n):
            yield Progress(i + 1, n)
        return "done"

    seen = []
    assert drive(counting(3), seen.append) == "done" and seen == [Progress(1, 3), Progress(2, 3), Progress(3, 3)]
    with pytest.raises(dataclasses.FrozenInstanceError):
        seen[0].done = 5  # events are plain, frozen data


def test_a_cancel_is_thrown_in_once_and_a_task_may_return_its_partial_result():
    closed = []

    def winding_down():
        done = 0
        try:
            while True:
                done += 1
                yield done
        except Cancelled:
            yield "saving"  # it may still report while it winds down; no second Cancelled comes
            return f"stopped after {done}"
        finally:
            closed.append(True)

    events = []
    assert drive(winding_down(), events.append, cancel=lambda: len(events) >= 2) == "stopped after 2"
    assert events == [1, 2, "saving"] and closed == [True]

    def ignores_it():
        while True:
            yield 1

    assert drive(ignores_it(), cancel=lambda: True) is None  # no partial result: None, nothing raised


def test_a_cancelled_scan_returns_what_it_indexed_so_far():
    from engine.io.study import ScanProgress, scan_study

    events = []
    index = drive(scan_study([DICOM]), events.append, cancel=lambda: sum(e.total > 0 for e in events) >= 3)
    assert index.cancelled and len(index.images()) + len(index.problems) == 3
    assert all(isinstance(e, ScanProgress) for e in events) and events[0] == ScanProgress(0, 0, "")
    full = drive(scan_study([DICOM]))
    assert not full.cancelled and len(full.images()) == 21


def test_a_cancelled_folder_check_cannot_start_and_says_why(tmp_path):
    import shutil

    from engine.library.finetune import check_folder

    for name, label in (("normal", 0), ("abnormal", 1)):
        (tmp_path / name).mkdir()
    pngs = sorted((XRAY / "images").glob("*.png"))[:6]
    for i, src in enumerate(pngs):
        shutil.copy(src, tmp_path / ("normal" if i % 2 else "abnormal") / src.name)
    steps = []
    result = drive(check_folder(str(tmp_path)), steps.append, cancel=lambda: len(steps) >= 2)
    assert steps == [Progress(1, 6), Progress(2, 6)]
    assert not result.can_start and result.reason == "the check of the images was cancelled"
    whole = drive(check_folder(str(tmp_path)))
    assert whole.n == 6 and whole.n_listed == 6


def test_relay_runs_a_task_inside_another_and_passes_a_cancel_on_once():
    from engine.tasks import relay

    thrown = []

    def inner():
        done = 0
        try:
            while True:
                done += 1
                yield done
        except Cancelled:
            thrown.append(done)
            yield "winding down"  # still relayed; no second Cancelled reaches it
            return done

    def outer():
        result, cancelled = yield from relay(inner(), lambda e: [f"line {e}"] if e != 2 else [])  # event 2 is thinned away
        return result, cancelled

    events = []
    assert drive(outer(), events.append, cancel=lambda: len(events) >= 2) == (3, True)
    assert events == ["line 1", "line 3", "line winding down"] and thrown == [3]
