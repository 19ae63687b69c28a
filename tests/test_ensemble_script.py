"""scripts/measure_ensemble.py: every file reads the images with the engine's own path, the
mean of their probabilities and maps is what is scored, the cache gives the same figures
without predicting again, and only a validation split is accepted."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from sklearn.metrics import roc_auc_score

from engine.data import load_samples
from engine.infer import Predictor
from engine.io import load_image
from engine.model.checkpoint import save_checkpoint
from engine.resources import DEFAULT_MODEL
from tests.test_inference_settings_script import REPO, _small_val_set


def run(*args: str):
    return subprocess.run([sys.executable, "scripts/measure_ensemble.py", *args], cwd=REPO, capture_output=True, text=True, timeout=600)


def test_the_mean_of_the_files_is_scored_and_the_cache_repeats_it(tmp_path, resnet18_model):
    labels = _small_val_set(tmp_path / "data", n_each=2)
    other = tmp_path / "resnet18.pt"
    save_checkpoint(other, resnet18_model, {"name": "random resnet18"})
    files = [str(DEFAULT_MODEL), str(other)]
    js, cache = tmp_path / "ens.json", tmp_path / "cache"
    done = run(*files, "--labels", str(labels), "--cache", str(cache), "--json", str(js))
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("s per image") == 2  # both files predicted
    record = json.loads(js.read_text())
    assert [r["reading"] for r in record["rows"]] == [*files, "mean of all 2"]
    assert record["n"] == 4 and record["n_boxed"] == 2
    images = [load_image(s.path) for s in load_samples(labels).split("val")]  # the script's order
    probs = [[p.probability for p in Predictor.from_checkpoint(f, "cpu", enforce_scope=False).predict_batch(images)] for f in files]
    assert not np.allclose(probs[0], probs[1])  # two different readers, not one twice
    y = [0, 0, 1, 1]  # _small_val_set: normals first
    assert record["rows"][0]["auc"] == roc_auc_score(y, probs[0])
    assert abs(record["rows"][2]["auc"] - roc_auc_score(y, np.mean(probs, axis=0))) < 1e-12
    assert "| mean of all 2 |" in done.stdout and "minus the first file's" in done.stdout

    again = run(*files, "--labels", str(labels), "--cache", str(cache), "--json", str(tmp_path / "again.json"))
    assert again.returncode == 0, again.stderr
    assert "s per image" not in again.stderr  # read from the cache
    assert json.loads((tmp_path / "again.json").read_text())["rows"] == record["rows"]


def test_one_file_and_train_or_test_splits_are_refused(tmp_path):
    done = run(str(DEFAULT_MODEL), "--labels", "x.csv")
    assert done.returncode == 2 and "at least two checkpoints" in done.stderr
    for split in ("train", "test"):
        done = run(str(DEFAULT_MODEL), str(DEFAULT_MODEL), "--labels", "x.csv", "--split", split)
        assert done.returncode == 2 and "validation data only" in done.stderr


def test_an_unreadable_image_is_named_and_left_out_for_every_file(tmp_path):
    labels = _small_val_set(tmp_path / "data", n_each=2)
    (tmp_path / "data" / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    with open(labels, "a") as f:
        f.write("broken.png,0,hand,val\n")
    js = tmp_path / "ens.json"
    done = run(str(DEFAULT_MODEL), str(DEFAULT_MODEL), "--labels", str(labels), "--json", str(js))
    assert done.returncode == 0, done.stderr
    assert "skipped" in done.stderr and "broken.png" in done.stderr
    record = json.loads(js.read_text())
    assert record["n"] == 4 and record["n_boxed"] == 2
