"""Fine-tuning jobs and the model store (engine side): previews of labelled folders that
count only images that exist and decode, runs that refuse too little usable data, runs
that finish, cancel, resume, fail on NaN and retry on out-of-memory, side-by-side
comparison with n and bootstrap intervals, and installs that never overwrite."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import XRAY


@pytest.fixture
def base(tmp_path, resnet18_model):
    from engine.model.checkpoint import save_checkpoint

    path = tmp_path / "base.pt"
    save_checkpoint(path, resnet18_model, {"name": "MSFM-base"}, config=resnet18_model.config.with_(input_size=128, part_size=64, window_scales=None))
    return path


def cfg(tiny_csv, base, **kw):
    from engine.library.finetune import FineTuneConfig

    return FineTuneConfig(data=str(tiny_csv.parent), base=str(base), epochs=kw.pop("epochs", 1), batch_size=4, device="cpu", **kw)


def test_preview_counts_classes_and_body_parts_and_names_problems(tmp_path, tiny_csv):
    from engine.library.finetune import MIN_PER_CLASS, preview

    p = preview(tiny_csv.parent)
    with open(tiny_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert p.layout and p.n == p.n_listed == len(rows) and p.can_start and not p.reason and p.decoded
    assert p.class_totals() == {"0": sum(r["label"] == "0" for r in rows), "1": sum(r["label"] == "1" for r in rows)}
    assert set(p.counts) == {r["body_part"] or "all" for r in rows}
    assert p.split_counts == {"train": {"0": 6, "1": 6}, "val": {"0": 4, "1": 4}}
    one = tmp_path / "one-class" / "normal"
    one.mkdir(parents=True)
    for src in sorted((XRAY / "images").glob("*.png"))[:3]:
        shutil.copy(src, one / src.name)
    (tmp_path / "one-class" / "abnormal").mkdir()
    bad = preview(tmp_path / "one-class")
    assert not bad.can_start and bad.class_totals() == {"0": 3, "1": 0}
    assert bad.reason == f"too few usable images: 3 normal and 0 abnormal; fine-tuning needs at least {MIN_PER_CLASS} of each class"
    missing = preview(tmp_path / "nowhere")
    assert not missing.can_start and "no such file or folder" in missing.reason and missing.problems == (missing.reason,)


def unresolvable_csv(root, xray_rows, n_per_class: int = 20):
    """A labels.csv naming real FracAtlas files, none of which is where it says: the CSV
    was copied without its images/ folder."""
    root.mkdir(parents=True)
    picked = [r for r in xray_rows if r["label"] == "0"][:n_per_class] + [r for r in xray_rows if r["label"] == "1"][:n_per_class]
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["file", "label"])
        w.writeheader()
        for r in picked:
            w.writerow({"file": r["file"], "label": r["label"]})
    return root


def test_unresolvable_paths_are_not_counted_and_no_run_can_start_on_them(tmp_path, xray_rows, base):
    from engine.library.finetune import FineTuneError, FineTuneRun, preview, run_finetune
    from engine.library.store import ModelStore

    folder = unresolvable_csv(tmp_path / "copied-csv", xray_rows)
    p = preview(folder)
    assert (p.layout, p.n_listed, p.n, p.n_missing, p.class_totals()) == ("labels-csv", 40, 0, 40, {"0": 0, "1": 0})
    assert not p.can_start and p.reason.startswith("none of the 40 listed images can be used (40 not found")
    assert any(m.startswith("40 of 40 listed images not found") and "images/ folder" in m and xray_rows[0]["file"] in m for m in p.problems)
    assert len(p.unusable_examples) == 3 and p.unusable_examples[0][1] == "file not found"

    store = ModelStore(tmp_path / "data")
    config = cfg(folder / "labels.csv", base)
    with pytest.raises(FineTuneError, match="none of the 40 listed images can be used"):
        FineTuneRun.create(store, config)
    with pytest.raises(FineTuneError):
        FineTuneRun.create(store, config, checked=p)
    assert not store.runs_dir.exists() or not any(store.runs_dir.iterdir())  # nothing recorded

    # A run recorded by other means (or resumed after its images went away) refuses to train, and says why.
    (tmp_path / "run").mkdir()
    run = FineTuneRun(tmp_path / "run", config)
    events = []
    with pytest.raises(FineTuneError, match="40 not found"):
        for ev in run_finetune(run):
            events.append(ev)
    assert events == [] and run.status == "failed" and "none of the 40 listed images" in run.message and not run.last.exists()


def test_preview_decodes_every_image_and_needs_enough_of_each_class(tmp_path, base):
    from engine.library.finetune import MIN_PER_CLASS, FineTuneConfig, FineTuneError, FineTuneRun, preview
    from engine.library.store import ModelStore

    pngs = sorted((XRAY / "images").glob("*.png"))
    root = tmp_path / "folders"
    for cls, files in (("normal", pngs[:MIN_PER_CLASS]), ("abnormal", pngs[MIN_PER_CLASS:2 * MIN_PER_CLASS])):
        (root / cls).mkdir(parents=True)
        for f in files:
            shutil.copy(f, root / cls / f.name)
    (root / "normal" / "cut.png").write_bytes(pngs[-1].read_bytes()[:400])  # a truncated copy: the header reads, the pixels do not
    (root / "normal" / "notes.png").write_text("not an image")
    p = preview(root)
    assert (p.n_listed, p.n, p.n_missing, p.n_undecodable) == (2 * MIN_PER_CLASS + 2, 2 * MIN_PER_CLASS, 0, 2) and p.can_start
    assert {Path(path).name for path, _ in p.unusable_examples} == {"cut.png", "notes.png"}
    assert any(m.startswith("2 of 22 images could not be decoded") for m in p.problems)
    quick = preview(root, decode=False)  # headers only: the truncated file passes, the text file does not
    assert quick.n_undecodable == 1 and not quick.decoded

    (root / "normal" / pngs[0].name).unlink()
    short = preview(root)
    assert not short.can_start and short.class_totals() == {"0": MIN_PER_CLASS - 1, "1": MIN_PER_CLASS}
    assert short.reason == (f"too few usable images: {MIN_PER_CLASS - 1} normal and {MIN_PER_CLASS} abnormal; "
                            f"fine-tuning needs at least {MIN_PER_CLASS} of each class")
    with pytest.raises(FineTuneError, match="too few usable images"):
        FineTuneRun.create(ModelStore(tmp_path / "data"), FineTuneConfig(data=str(root), base=str(base), device="cpu"))


def test_a_held_out_split_without_both_classes_cannot_start(tmp_path, xray_rows):
    from engine.library.finetune import preview
    from tests.conftest import make_tiny_csv

    root = tmp_path / "tiny"
    make_tiny_csv(root, xray_rows, n_train=20, n_val=8)  # 10 + 4 of each class
    with open(root / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    with open(root / "labels.csv", "w", newline="") as fh:  # the abnormal validation images become test images
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({**r, "split": "test" if (r["split"], r["label"]) == ("val", "1") else r["split"]})
    p = preview(root)
    assert not p.can_start and p.n_unused == 4 and any("4 images in other splits (test)" in m for m in p.problems)
    assert p.reason.startswith("the held-out validation split ('val') has no usable abnormal images")


def test_bootstrap_intervals_and_the_accept_verdict():
    from engine.library.finetune import assess_comparison, compare_predictions

    y = [0] * 20 + [1] * 12
    rng = np.random.default_rng(3)
    good = np.clip(np.array(y) * 0.4 + rng.random(32) * 0.6, 0, 1)
    poor = rng.random(32)
    cmp = compare_predictions(y, good, poor, 0.5, 0.5)
    again = compare_predictions(y, good, poor, 0.5, 0.5)
    assert cmp == again  # a fixed seed: the same intervals every time
    for key in ("previous", "new"):
        m = cmp[key]
        assert (m["n"], m["n_normal"], m["n_abnormal"]) == (32, 20, 12)
        for metric in ("auc", "kappa"):
            lo, hi = m[f"{metric}_ci"]
            assert lo <= m[metric] <= hi and hi - lo > 0.05
    assert cmp["bootstrap"] == {"resamples": 1000, "seed": 0, "level": 0.95, "stratified": True}
    d = cmp["delta"]["auc"]
    assert d["value"] == pytest.approx(cmp["new"]["auc"] - cmp["previous"]["auc"]) and d["ci"][0] <= d["value"] <= d["ci"][1]
    verdict = assess_comparison(cmp)
    assert verdict.acceptable and set(verdict.worse) == {"auc", "kappa"}
    assert assess_comparison(compare_predictions(y, poor, good, 0.5, 0.5)).worse == ()
    empty = assess_comparison(compare_predictions([], [], [], 0.5, 0.5))
    assert not empty.acceptable and empty.reason == "no held-out image could be evaluated with the current model (n = 0)"
    one_class = compare_predictions([0] * 5, [0.1] * 5, [0.2] * 5, 0.5, 0.5)
    assert one_class["new"]["auc_ci"] is None and "lack a class (5 normal, 0 abnormal)" in assess_comparison(one_class).reason
    assert not assess_comparison(None).acceptable


def test_store_installs_copies_that_are_never_overwritten(tmp_path, base):
    from engine.library.store import ModelStore, StoreError
    from engine.model.checkpoint import file_sha256

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
    from engine.library.finetune import FineTuneRun, assess_comparison, compare_models, held_out, list_runs, run_finetune
    from engine.library.store import ModelStore
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
    for m in (cmp["previous"], cmp["new"]):
        assert (m["n_normal"], m["n_abnormal"]) == (4, 4)
        assert m["auc_ci"][0] <= m["auc"] <= m["auc_ci"][1] and m["kappa_ci"][0] <= m["kappa"] <= m["kappa_ci"][1]
    assert cmp["delta"] is not None and cmp["skipped"] == [] and assess_comparison(cmp).acceptable
    assert cmp["previous"]["sha256"] != cmp["new"]["sha256"]
    assert [r.dir for r in list_runs(store)] == [run.dir] and not run.resumable()


def test_cancelled_run_keeps_a_resumable_checkpoint_and_resumes_after_a_restart(tmp_path, tiny_csv, base):
    from engine.library.finetune import FineTuneRun, list_runs, run_finetune
    from engine.library.store import ModelStore
    from engine.model.checkpoint import load_checkpoint
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
    from engine.library.finetune import FineTuneRun, run_finetune
    from engine.library.store import ModelStore
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
    import engine.library.finetune as ft
    from engine.library.finetune import FineTuneRun, run_finetune
    from engine.library.store import ModelStore
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
