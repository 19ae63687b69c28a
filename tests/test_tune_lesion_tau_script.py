"""scripts/tune_lesion_tau.py as train_default.sh and the ablation use it: on a calibrated
checkpoint (the shipped file) the copy gets the chosen τ and nothing else — same weights, same
calibration, same other configuration — and the source is never modified."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from engine.config import ModelConfig
from engine.model.checkpoint import read_checkpoint
from engine.resources import DEFAULT_MODEL
from tests.test_inference_settings_script import REPO, _small_val_set


def test_a_calibrated_checkpoint_gets_the_chosen_tau_and_keeps_its_calibration(tmp_path):
    labels = _small_val_set(tmp_path / "data")
    out, js = tmp_path / "copy.pt", tmp_path / "tau.json"
    original = read_checkpoint(DEFAULT_MODEL)
    meta0 = json.loads(original["meta"])
    assert "calibration" in meta0  # the case the copy's check must handle
    done = subprocess.run([sys.executable, "scripts/tune_lesion_tau.py", str(DEFAULT_MODEL), "--labels", str(labels), "--split", "val",
                           "--out", str(out), "--json", str(js), "--check", "2", "--grid", "0.3", "0.9"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr + done.stdout
    tau = float(json.loads(js.read_text())["tau"])
    assert tau in (0.3, 0.9)
    written = read_checkpoint(out)
    cfg0 = ModelConfig.from_dict(json.loads(original["config"]))
    cfg = ModelConfig.from_dict(json.loads(written["config"]))
    assert cfg.lesion_tau == tau and cfg == cfg0.with_(lesion_tau=tau)
    meta = json.loads(written["meta"])
    assert meta["calibration"] == meta0["calibration"] and meta["lesion_tau_tuning"]["tau"] == tau
    assert all(torch.equal(original["state_dict"][k], v) for k, v in written["state_dict"].items())
    assert ModelConfig.from_dict(json.loads(read_checkpoint(DEFAULT_MODEL)["config"])) == cfg0


def test_train_and_test_splits_are_refused(tmp_path):
    done = subprocess.run([sys.executable, "scripts/tune_lesion_tau.py", str(DEFAULT_MODEL), "--labels", "x.csv", "--split", "test"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "tune on validation data only" in done.stderr
