"""Fine-tuning jobs and the model store (engine side): previews of labelled folders,
runs that finish, cancel, resume, fail on NaN and retry on out-of-memory, side-by-side
comparison, and installs that never overwrite."""

import csv
import json
import shutil

import pytest
import torch

from tests.conftest import XRAY


@pytest.fixture
def base(tmp_path, resnet18_model):
    from engine.checkpoint import save_checkpoint

    path = tmp_path / "base.pt"
    save_checkpoint(path, resnet18_model, {"name": "MSFM-base"}, config=resnet18_model.config.with_(input_size=128, part_size=64, window_scales=None))
    return path


def cfg(tiny_csv, base, **kw):
    from engine.finetune import FineTuneConfig

    return FineTuneConfig(data=str(tiny_csv.parent), base=str(base), epochs=kw.pop("epochs", 1), batch_size=4, device="cpu", **kw)


def test_preview_counts_classes_and_body_parts_and_names_problems(tmp_path, tiny_csv):
    from engine.finetune import preview

    p = preview(tiny_csv.parent)
    with open(tiny_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert p.layout and p.n == len(rows) and p.usable
    assert p.class_totals() == {"0": sum(r["label"] == "0" for r in rows), "1": sum(r["label"] == "1" for r in rows)}
    assert set(p.counts) == {r["body_part"] or "all" for r in rows}
    one = tmp_path / "one-class" / "normal"
    one.mkdir(parents=True)
    for src in sorted((XRAY / "images").glob("*.png"))[:3]:
        shutil.copy(src, one / src.name)
    (tmp_path / "one-class" / "abnormal").mkdir()
    bad = preview(tmp_path / "one-class")
    assert not bad.usable and any("both classes" in m or "class" in m for m in bad.problems)
    missing = preview(tmp_path / "nowhere")
    assert not missing.usable and "no such file or folder" in missing.problems[0]


def test_store_installs_copies_that_are_never_overwritten(tmp_path, base):
    from engine.checkpoint import file_sha256
    from engine.store import ModelStore, StoreError

    store = ModelStore(tmp_path / "data")
    a = store.install(base, "first", data={"source": "x"}, metrics={"auc": 0.7})
    b = store.install(base, "second")
    assert a.path != b.path and a.path.parent.parent == store.models_dir
    assert a.sha256 == b.sha256 == file_sha256(base) and store.verify(a)
    names = [m.name for m in store.list()]
    assert names[0].endswith("(bundled)") and set(names[1:]) == {"first", "second"}
    with pytest.raises(StoreError, match="cannot be deleted"):
        store.delete("default")
    store.delete(a.id)
    assert not a.path.exists() and b.path.exists()
    b.path.write_bytes(b.path.read_bytes()[:-10] + b"0123456789")  # tampered
    assert not store.verify(store.get(b.id))
    (store.models_dir / "broken").mkdir()
    (store.models_dir / "broken" / "info.json").write_text("{not json")
    assert [m.id for m in store.list() if not m.builtin] == [b.id]  # the damaged folder is skipped
    with pytest.raises(Exception):
        store.install(tmp_path / "missing.pt", "nothing")
    assert len([m for m in store.list() if not m.builtin]) == 1  # a failed install leaves nothing


def test_finished_run_then_comparison_on_the_held_out_images(tmp_path, tiny_csv, base):
    from engine.finetune import FineTuneRun, compare_models, held_out, list_runs, run_finetune
    from engine.store import ModelStore
    from engine.train.events import BatchEnd, EpochEnd, TrainFinished

    store = ModelStore(tmp_path / "data")
    run = FineTuneRun.create(store, cfg(tiny_csv, base))
    events = list(run_finetune(run))
    assert isinstance(events[-1], TrainFinished) and any(isinstance(e, BatchEnd) for e in events)
    assert [e.epoch for e in events if isinstance(e, EpochEnd)] == [0]
    assert run.status == "finished" and run.best.is_file() and json.loads((run.dir / "job.json").read_text())["status"] == "finished"
    val = held_out(run)
    assert len(val) == 8 and {s.label for s in val} == {0, 1}
    cmp = compare_models(base, run.best, val, "cpu")
    assert cmp["previous"]["n"] == cmp["new"]["n"] == 8
    assert cmp["previous"]["sha256"] != cmp["new"]["sha256"]
    assert [r.dir for r in list_runs(store)] == [run.dir] and not run.resumable()


def test_cancelled_run_keeps_a_resumable_checkpoint_and_resumes_after_a_restart(tmp_path, tiny_csv, base):
    from engine.checkpoint import load_checkpoint
    from engine.finetune import FineTuneRun, list_runs, run_finetune
    from engine.store import ModelStore
    from engine.train.events import BatchEnd, TrainFinished, TrainStarted

    store = ModelStore(tmp_path / "data")
    run = FineTuneRun.create(store, cfg(tiny_csv, base, epochs=2))
    gen = run_finetune(run)
    for ev in gen:
        if isinstance(ev, BatchEnd):
            break
    gen.close()  # what Cancel does
    assert run.status == "cancelled" and run.resumable()
    assert load_checkpoint(run.last).train_state["step"] == 1
    again = list_runs(ModelStore(tmp_path / "data"))[0]  # as read back by a restarted app
    assert again.status == "cancelled" and again.resumable()
    events = list(run_finetune(again, resume=True))
    started = next(e for e in events if isinstance(e, TrainStarted))
    assert (started.start_epoch, started.start_step) == (0, 1) and isinstance(events[-1], TrainFinished)
    assert again.status == "finished"


def test_nan_loss_fails_the_job_with_the_reason(tmp_path, tiny_csv, base, monkeypatch):
    import engine.train.loop as loop
    from engine.finetune import FineTuneRun, run_finetune
    from engine.store import ModelStore
    from engine.train.loop import TrainingError

    real = loop.msfm_loss

    def nan_loss(*a, **k):
        out = real(*a, **k)
        out["total"] = out["total"] * float("nan")
        return out

    monkeypatch.setattr(loop, "msfm_loss", nan_loss)
    run = FineTuneRun.create(ModelStore(tmp_path / "data"), cfg(tiny_csv, base))
    with pytest.raises(TrainingError, match="loss became nan"):
        list(run_finetune(run))
    assert run.status == "failed" and "loss became nan" in run.message and run.last.is_file()


def test_out_of_memory_retries_with_a_smaller_batch(tmp_path, tiny_csv, base, monkeypatch):
    import engine.finetune as ft
    from engine.finetune import FineTuneRun, run_finetune
    from engine.store import ModelStore
    from engine.train.events import TrainFinished, TrainMessage

    real, calls = ft.train, []

    def flaky(tc):
        calls.append(tc.batch_size)
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        yield from real(tc)

    monkeypatch.setattr(ft, "train", lambda tc: flaky(tc))
    run = FineTuneRun.create(ModelStore(tmp_path / "data"), cfg(tiny_csv, base))
    events = list(run_finetune(run))
    assert calls == [4, 2]
    assert any(isinstance(e, TrainMessage) and "batch size 2" in e.text for e in events) and isinstance(events[-1], TrainFinished)
    assert run.status == "finished" and json.loads((run.dir / "job.json").read_text())["config"]["batch_size"] == 2
