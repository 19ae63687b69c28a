"""scripts/sweep_inference.py as train_default.sh uses it to set the shipped file's inference
settings: the override is stored, the decision threshold re-tuned for κ on the split, the
calibration dropped (the probabilities moved), the weights untouched."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import torch

from engine.config import ModelConfig
from engine.evaluation.metrics import best_kappa_threshold
from engine.model.checkpoint import read_checkpoint
from engine.resources import DEFAULT_MODEL
from tests.conftest import XRAY

REPO = Path(__file__).resolve().parents[1]


def _small_val_set(root: Path, n_each: int = 3) -> Path:
    """labels.csv + boxes.csv + images/ (links to the real radiographs) of a few val images."""
    rows = [r for r in csv.DictReader(open(XRAY / "labels.csv")) if r["split"] == "val"]
    boxed = {r["file"] for r in csv.DictReader(open(XRAY / "boxes.csv"))}
    pick = [r for r in rows if r["label"] == "0"][:n_each] + [r for r in rows if r["label"] == "1" and r["file"] in boxed][:n_each]
    (root / "images").mkdir(parents=True)
    for r in pick:
        (root / "images" / r["file"]).symlink_to(XRAY / "images" / r["file"])
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(pick[0]))
        w.writeheader()
        w.writerows(pick)
    names = {r["file"] for r in pick}
    with open(XRAY / "boxes.csv") as src, open(root / "boxes.csv", "w", newline="") as dst:
        reader = csv.DictReader(src)
        w = csv.DictWriter(dst, fieldnames=reader.fieldnames)
        w.writeheader()
        w.writerows(r for r in reader if r["file"] in names)
    return root / "labels.csv"


def test_the_override_is_written_with_a_threshold_retuned_for_kappa(tmp_path):
    labels = _small_val_set(tmp_path / "data")
    out, js = tmp_path / "copy.pt", tmp_path / "copy.json"
    original = read_checkpoint(DEFAULT_MODEL)
    stride = 48 - ModelConfig.from_dict(json.loads(original["config"])).output_stride  # the other one: 32 <-> 16
    done = subprocess.run([sys.executable, "scripts/sweep_inference.py", str(DEFAULT_MODEL), "--labels", str(labels), "--split", "val",
                           "--set", f"output_stride={stride}", "--retune-threshold", "--write", str(out), "--json", str(js), "--check", "2"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "threshold re-tuned for κ on val" in done.stderr
    record = json.loads(js.read_text())
    y = [int(r["label"]) for r in csv.DictReader(open(labels))]
    want = best_kappa_threshold(y, record["probabilities"])
    written = read_checkpoint(out)
    cfg, meta = ModelConfig.from_dict(json.loads(written["config"])), json.loads(written["meta"])
    assert cfg.output_stride == stride and cfg.threshold == record["threshold"] == want
    assert "calibration" not in meta  # measured on other probabilities: recalibrate
    assert meta["inference_settings"]["overrides"] == [f"output_stride={stride}"]
    # The figures the app shows beside the model are the copy's, training's kept apart.
    assert meta["metrics"]["kappa"] == record["kappa"] and meta["metrics"]["threshold"] == cfg.threshold and meta["metrics"]["n"] == 6
    assert meta["metrics_as_trained"] == json.loads(original["meta"])["metrics"]
    assert all(torch.equal(original["state_dict"][k], v) for k, v in written["state_dict"].items())
    # The source file is never modified.
    assert ModelConfig.from_dict(json.loads(read_checkpoint(DEFAULT_MODEL)["config"])) == ModelConfig.from_dict(json.loads(original["config"]))
