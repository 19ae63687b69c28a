"""The msfm command line as a user runs it (SPEC §5), including kill -9 + --resume and DDP."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.model.checkpoint import load_checkpoint
from tests.conftest import DICOM

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def msfm(*args, timeout=900, **kw):
    return subprocess.run([str(BIN / "msfm"), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV, **kw)


@pytest.fixture(scope="module")
def trained_run(tiny_csv, tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    res = msfm("train", tiny_csv, "--backbone", "efficientnet_lite0", "--input-size", "224", "--epochs", "1",
               "--batch-size", "4", "--out", run, "--quiet", "--time-budget-s", "3600", "--no-amp")
    assert res.returncode == 0, res.stderr
    return run


def test_train_writes_checkpoints_that_evaluate_and_predict_load(trained_run, tiny_csv, tmp_path):
    assert (trained_run / "best.pt").is_file() and (trained_run / "last.pt").is_file()
    tc = load_checkpoint(trained_run / "best.pt").meta["train_config"]
    assert tc["time_budget_s"] == 3600.0 and tc["amp"] is False  # the flags reach the run and its record
    out = tmp_path / "m.json"
    res = msfm("evaluate", tiny_csv, "--checkpoint", trained_run / "best.pt", "--json", out, "--quiet")
    assert res.returncode == 0, res.stderr
    m = json.loads(out.read_text())
    for key in ("n", "accuracy", "kappa", "auc", "f1_abnormal", "f1_normal", "jpe", "sensitivity", "specificity", "per_body_part", "localization", "baselines"):
        assert key in m, key
    assert m["n"] == 8 and m["split"] == "val"
    assert m["n_out_of_scope"] == 0 and m["out_of_scope"] == []  # FracAtlas is what the model is for
    assert set(m["localization"]) >= {"n_images", "iou50", "iou30", "iou10", "pointing"}
    assert set(m["baselines"]) >= {"plain_classifier", "cam_box"}
    assert set(m["baselines"]["cam_box"]) >= {"iou50", "iou30", "iou10", "pointing"}
    # SPEC §3b: pointing within 15 px, lesion and region hit rates, intervals, FMA suppression.
    loc = m["localization"]
    assert loc["n_images"] == 4 and loc["peak"] == "evidence" and 0 <= loc["pointing"] <= loc["pointing15"] <= 1
    for box in ("lesion", "region"):
        assert set(loc[box]) >= {"iou10", "iou30", "iou50"} and loc[box]["iou50"] <= loc[box]["iou30"] <= loc[box]["iou10"]
    assert loc["iou10"] == loc["region"]["iou10"]  # SPEC §5's flat keys stay the region box
    assert set(m["ci"]) >= {"auc", "kappa", "pointing", "pointing15", "lesion_iou10", "lesion_iou30", "lesion_iou50", "region_iou10"}
    assert m["ci"]["auc"][0] <= m["auc"] <= m["ci"]["auc"][1] and m["ci"]["pointing"][0] <= loc["pointing"] <= m["ci"]["pointing"][1]
    assert m["bootstrap"] == {"resamples": 1000, "seed": 0, "level": 0.95, "stratified": True, "method": "percentile"}
    cam = m["baselines"]["cam_box"]
    assert {"pointing15", "ci"} <= set(cam) and set(cam["ci"]) >= {"pointing", "pointing15", "iou10"}
    fma = m["fma_suppression"]
    assert fma["enabled"] is True and fma["n_images"] == 4 and 0 <= fma["gt_area_darkened"] <= 1 and 0 <= fma["half_cut"] <= 1
    assert 0 < fma["image_area_darkened_all"] < 1
    assert any("localization" in v for v in m["per_body_part"].values())
    assert "no_hardware" not in m and "meta.csv" in m["no_hardware_note"]  # the tiny copy has no meta.csv
    assert "pointing" in res.stderr and "lesion box IoU" in res.stderr

    pred = tmp_path / "p.json"
    csv_out = tmp_path / "p.csv"
    images = tiny_csv.parent / "images"
    res = msfm("predict", images, DICOM / "pydicom_test-SR.dcm", "--checkpoint", trained_run / "best.pt",
               "--json", pred, "--csv", csv_out, "--overlays", tmp_path / "ov", "--quiet")
    assert res.returncode == 0, res.stderr
    doc = json.loads(pred.read_text())
    assert len(doc["predictions"]) == 20
    sha = load_checkpoint(trained_run / "best.pt").sha256
    p0 = doc["predictions"][0]
    assert p0["model"]["sha256"] == sha and p0["model"]["input_size"] == 224 and len(p0["windows"]) == 7
    assert doc["errors"][0]["path"].endswith("pydicom_test-SR.dcm") and "no pixel data" in doc["errors"][0]["reason"]
    assert len(csv_out.read_text().strip().splitlines()) == 21
    assert len(list((tmp_path / "ov").glob("*.png"))) == 20


def test_init_input_size_continues_an_msfm_at_another_size_and_its_absence_keeps_the_own(trained_run, tiny_csv, tmp_path):
    """``--init-input-size S`` rebuilds the --init MSFM at S (parts scaled alike, windows of the new grid)."""
    parent = load_checkpoint(trained_run / "best.pt")
    assert (parent.config.input_size, parent.config.part_size) == (224, 224)
    common = ["train", tiny_csv, "--init", trained_run / "best.pt", "--epochs", "1", "--max-steps", "1", "--batch-size", "2", "--quiet"]
    res = msfm(*common, "--init-input-size", "288", "--out", tmp_path / "big")
    assert res.returncode == 0, res.stderr
    big = load_checkpoint(tmp_path / "big" / "best.pt")
    assert (big.config.input_size, big.config.part_size, big.config.grid_size) == (288, 288, 9)
    assert big.config.window_scales != parent.config.window_scales  # derived for the 9 x 9 grid, not the 7 x 7 one
    res = msfm(*common, "--out", tmp_path / "own")
    assert res.returncode == 0, res.stderr
    assert load_checkpoint(tmp_path / "own" / "best.pt").config.input_size == 224  # the CLI's default 448 does not apply to --init


def test_evaluate_with_a_plain_baseline_checkpoint(trained_run, tiny_csv, tmp_path):
    base = tmp_path / "plain"
    res = msfm("train", tiny_csv, "--model", "plain", "--backbone", "efficientnet_lite0", "--input-size", "224",
               "--epochs", "1", "--batch-size", "4", "--out", base, "--quiet")
    assert res.returncode == 0, res.stderr
    out = tmp_path / "m.json"
    res = msfm("evaluate", tiny_csv, "--checkpoint", trained_run / "best.pt", "--baseline", base / "best.pt", "--json", out, "--quiet")
    assert res.returncode == 0, res.stderr
    b = json.loads(out.read_text())["baselines"]
    assert b["source"] == "plain classifier checkpoint"
    # names the classifier it scored (scripts/ablation.py reads a retrained one's figures by it)
    assert b["sha256"] == hashlib.sha256((base / "best.pt").read_bytes()).hexdigest()
    assert b["budget"] == {"input_size": 224, "epochs": 1, "best_epoch": 1}  # what the card calls its budget


def test_evaluate_repeats_every_figure_without_hardware_images(trained_run, tiny_csv, tmp_path):
    """meta.csv beside labels.csv flags metal hardware; the no_hardware block leaves those images out."""
    import csv as _csv

    data = tmp_path / "data"
    data.mkdir()
    (data / "images").symlink_to(tiny_csv.parent / "images")
    for name in ("labels.csv", "boxes.csv"):
        (data / name).write_text((tiny_csv.parent / name).read_text())
    with open(tiny_csv, newline="") as fh:
        rows = list(_csv.DictReader(fh))
    flagged = next(r["file"] for r in rows if r["split"] == "val" and r["label"] == "1")
    with open(data / "meta.csv", "w", newline="") as fh:
        w = _csv.writer(fh)
        w.writerow(["file", "group", "hardware"])
        w.writerows([r["file"], 0, int(r["file"] == flagged)] for r in rows)
    out = tmp_path / "m.json"
    res = msfm("evaluate", data / "labels.csv", "--checkpoint", trained_run / "best.pt", "--json", out, "--quiet")
    assert res.returncode == 0, res.stderr
    m = json.loads(out.read_text())
    nh = m["no_hardware"]
    assert nh["n"] == 7 and nh["n_abnormal"] == 3 and nh["n_excluded_hardware"] == 1 and nh["n_excluded_unknown"] == 0
    assert nh["localization"]["n_images"] == 3 and set(nh["localization"]) >= {"pointing", "pointing15", "lesion", "region"}
    assert set(nh) >= {"auc", "kappa", "ci", "baselines", "fma_suppression", "per_body_part"}
    assert "without metal hardware" in res.stderr


def test_bad_input_exits_non_zero_with_one_line(tmp_path):
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"garbage")
    res = msfm("predict", DICOM / "RG3_UNC.dcm", "--checkpoint", bad)
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0 and "not a readable checkpoint" in res.stderr
    res = msfm("train", tmp_path / "missing.csv", "--out", tmp_path / "r")
    assert res.returncode == 2 and "no such file or folder" in res.stderr
    res = msfm("evaluate", tmp_path / "missing.csv", "--checkpoint", bad)
    assert res.returncode == 2


def test_kill_mid_epoch_then_resume(tiny_csv, tmp_path):
    run = tmp_path / "killed"
    args = ["train", tiny_csv, "--backbone", "resnet18", "--pretrained", "none", "--input-size", "128", "--part-size", "64",
            "--epochs", "2", "--batch-size", "2", "--checkpoint-every", "1", "--out", run, "--quiet"]
    proc = subprocess.Popen([str(BIN / "msfm"), *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            if (run / "last.pt").exists():
                try:
                    st = load_checkpoint(run / "last.pt").train_state
                except Exception:
                    st = None
                if st and st["step"] >= 1:  # step > 0: saved mid-epoch
                    break
            time.sleep(0.2)
        else:
            pytest.fail("no mid-epoch checkpoint appeared")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(run / "last.pt").train_state
    assert (killed_at["epoch"], killed_at["step"]) < (2, 0)  # killed before the end
    res = msfm(*[a for a in args if a != "--quiet"], "--resume")
    assert res.returncode == 0, res.stderr
    assert f"resuming at epoch {killed_at['epoch'] + 1}, step {killed_at['step']}" in res.stderr
    final = load_checkpoint(run / "last.pt").train_state
    assert (final["epoch"], final["step"]) == (2, 0)
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [1, 2]



def test_torchrun_ddp_two_gloo_processes_end_with_identical_weights(tiny_csv, tmp_path):
    run = tmp_path / "ddp"
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "engine.cli", "train", str(tiny_csv),
           "--backbone", "resnet18", "--pretrained", "none", "--input-size", "128", "--part-size", "64",
           "--epochs", "1", "--batch-size", "2", "--max-steps", "3", "--device", "cpu", "--out", str(run), "--quiet"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**ENV, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    h0 = (run / "ddp" / "rank0.sha256").read_text()
    h1 = (run / "ddp" / "rank1.sha256").read_text()
    assert h0 == h1 and len(h0) == 64
    # Rank 0's checkpoint holds those weights, and training moved them from the seeded start.
    import torch

    from engine.model.checkpoint import state_sha256
    from engine.model.msfm import MSFM

    ck = load_checkpoint(run / "last.pt")
    assert state_sha256(ck.model) == h0
    torch.manual_seed(0)
    assert state_sha256(MSFM(ck.config, pretrained="none")) != h0


# ---------------------------------------------------------------- intended use (issue 16)

@pytest.fixture(scope="module")
def small_checkpoint(resnet18_model, tmp_path_factory):
    from engine.model.checkpoint import save_checkpoint

    path = tmp_path_factory.mktemp("ck") / "m.pt"
    save_checkpoint(path, resnet18_model, {"name": "MSFM-test"})
    return path


def _mixed_folder(root: Path) -> Path:
    """Two FracAtlas radiographs, a hip CR, a chest CR, a CT slice, a 10-frame MR, a grey
    step wedge and an SR (no pixels): what a user's export folder may hold."""
    import cv2
    import numpy as np

    from tests.conftest import XRAY

    root.mkdir()
    for png in sorted((XRAY / "images").glob("*.png"))[:2]:
        (root / png.name).symlink_to(png)
    for name in ("RG2_J2KI.dcm", "RG1_J2KI.dcm", "pydicom_CT_small.dcm", "pydicom-data_emri_small_jpeg_ls_lossless.dcm", "pydicom_test-SR.dcm"):
        (root / name).symlink_to(DICOM / name)
    wedge = np.repeat(np.repeat(np.arange(12, dtype=np.uint8) * 23, 40)[None], 400, axis=0)
    cv2.imwrite(str(root / "wedge.png"), wedge)
    return root


def test_predict_lists_out_of_scope_inputs_without_label_or_boxes(small_checkpoint, tmp_path):
    import csv

    folder = _mixed_folder(tmp_path / "in")
    out, table = tmp_path / "p.json", tmp_path / "p.csv"
    res = msfm("predict", folder, "--checkpoint", small_checkpoint, "--device", "cpu", "--json", out, "--csv", table,
               "--overlays", tmp_path / "ov", "--quiet")
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    assert set(doc) == {"predictions", "errors", "out_of_scope"}
    names = lambda items, key="file": [Path(i[key]).name for i in items]  # noqa: E731
    assert sorted(names(doc["predictions"])) == sorted([p.name for p in folder.glob("IMG*.png")] + ["RG2_J2KI.dcm"])
    assert all("outside_intended_use" not in p and "research_use_only" not in p for p in doc["predictions"])
    refused = doc["out_of_scope"]
    assert names(refused) == ["RG1_J2KI.dcm"] + ["pydicom-data_emri_small_jpeg_ls_lossless.dcm"] * 10 + ["pydicom_CT_small.dcm", "wedge.png"]
    by = {}
    for o in refused:
        by.setdefault(Path(o["file"]).name, []).append(o)
        assert set(o) <= {"file", "reason", "frame", "sop_instance_uid"}  # no label, probability or boxes
        assert o["reason"] and "\n" not in o["reason"]
    assert set(by) == {"RG1_J2KI.dcm", "pydicom_CT_small.dcm", "pydicom-data_emri_small_jpeg_ls_lossless.dcm", "wedge.png"}
    assert by["RG1_J2KI.dcm"][0]["reason"] == "body part CHEST: the model was trained on limb, shoulder and hip radiographs"
    assert by["pydicom_CT_small.dcm"][0]["reason"] == "modality CT: the model reads radiographs (CR, DX, DR, RF)"
    assert by["wedge.png"][0]["reason"].startswith("looks like a test pattern or synthetic image: only 12 grey levels")
    mr = by["pydicom-data_emri_small_jpeg_ls_lossless.dcm"]
    assert [o["frame"] for o in mr] == list(range(10)) and all(o["reason"].startswith("modality MR") for o in mr)
    assert "frame" not in by["RG1_J2KI.dcm"][0]
    assert names(doc["errors"], "path") == ["pydicom_test-SR.dcm"]
    assert "3 image(s) predicted, 13 outside the model's intended use (not analysed), 1 skipped" in res.stderr
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 3 + 13
    assert [r["intended_use"] for r in rows[:3]] == [""] * 3
    assert all(r["intended_use"].startswith("outside the model's intended use: ") and r["label"] == r["probability"] == r["fused_x0"] == ""
               for r in rows[3:])
    assert len(list((tmp_path / "ov").glob("*.png"))) == 3  # no overlay for images that were not analysed

    # Only out-of-scope inputs: nothing is labelled, and that is a result, not a failure.
    only = msfm("predict", DICOM / "pydicom_CT_small.dcm", "--checkpoint", small_checkpoint, "--device", "cpu", "--quiet")
    assert only.returncode == 0, only.stderr
    line = json.loads(only.stdout.strip())
    assert line["out_of_scope"] == "outside the model's intended use: modality CT: the model reads radiographs (CR, DX, DR, RF)"
    assert "probability" not in line and "label" not in line


def test_research_override_predicts_them_and_marks_every_output(small_checkpoint, tmp_path):
    import csv

    import pydicom

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("RG1_J2KI.dcm", "RG2_J2KI.dcm"):
        (folder / name).symlink_to(DICOM / name)
    out, table = tmp_path / "p.json", tmp_path / "p.csv"
    res = msfm("predict", folder, "--checkpoint", small_checkpoint, "--device", "cpu", "--json", out, "--csv", table,
               "--overlays", tmp_path / "ov", "--dicom-sc", tmp_path / "sc", "--research-outside-intended-use", "--quiet")
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    assert doc["out_of_scope"] == [] and len(doc["predictions"]) == 2
    chest, hip = sorted(doc["predictions"], key=lambda p: p["file"])
    assert chest["outside_intended_use"].startswith("body part CHEST") and chest["research_use_only"] is True
    assert chest["label"] in (0, 1) and len(chest["windows"]) == 7
    assert "outside_intended_use" not in hip and "research_use_only" not in hip
    assert "2 image(s) predicted (1 outside the model's intended use, for research use only)" in res.stderr
    assert "RG1_J2KI.dcm: outside the model's intended use: body part CHEST" in res.stderr
    rows = {Path(r["file"]).name: r for r in csv.DictReader(table.open())}
    assert rows["RG1_J2KI.dcm"]["intended_use"].endswith("; analysed anyway for research use only") and rows["RG1_J2KI.dcm"]["label"]
    assert rows["RG2_J2KI.dcm"]["intended_use"] == ""
    assert sorted(p.name for p in (tmp_path / "ov").iterdir()) == ["RG1_J2KI_msfm_research-use-only.png", "RG2_J2KI_msfm.png"]
    assert sorted(p.name for p in (tmp_path / "sc").iterdir()) == ["RG1_J2KI.msfm-sc.dcm", "RG2_J2KI.msfm-sc.dcm"]
    assert pydicom.dcmread(tmp_path / "sc" / "RG1_J2KI.msfm-sc.dcm").BurnedInAnnotation == "YES"
