"""scripts/measure_flip_tta.py: the flip test-time augmentation measurement reads each image
and its mirror with the engine's own path, and refuses anything but a validation split."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from sklearn.metrics import roc_auc_score

from engine.infer import Predictor
from engine.io import load_image
from engine.resources import DEFAULT_MODEL
from engine.types import LoadedImage
from tests.test_inference_settings_script import REPO, _small_val_set

sys.path.insert(0, str(REPO / "scripts"))
from measure_flip_tta import mirrored  # noqa: E402


def test_mirrored_flips_left_to_right_and_leaves_the_source_alone():
    pixels = np.arange(12, dtype=np.float32).reshape(3, 4) / 12
    before = pixels.copy()
    m = mirrored(LoadedImage(pixels))
    assert np.array_equal(m.pixels, before[:, ::-1]) and m.pixels.flags.c_contiguous
    assert np.array_equal(pixels, before)


def test_both_readings_are_the_engines_and_the_mean_is_scored(tmp_path):
    labels = _small_val_set(tmp_path / "data", n_each=2)
    js = tmp_path / "tta.json"
    done = subprocess.run([sys.executable, "scripts/measure_flip_tta.py", str(DEFAULT_MODEL), "--labels", str(labels), "--json", str(js)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    record = json.loads(js.read_text())
    assert [r["reading"] for r in record["rows"]] == ["as stored", "mirror only", "mean of both", "mean of both, τ re-tuned"]
    assert record["n"] == 4 and record["n_boxed"] == 2
    predictor = Predictor.from_checkpoint(DEFAULT_MODEL, "cpu", enforce_scope=False)
    images = [load_image(f) for f in record["files"]]
    direct = [p.probability for p in predictor.predict_batch(images)]
    mirror = [p.probability for p in predictor.predict_batch([mirrored(im) for im in images])]
    np.testing.assert_allclose(record["p_image"], direct, atol=1e-6)
    np.testing.assert_allclose(record["p_mirror"], mirror, atol=1e-6)
    assert not np.allclose(direct, mirror)  # the mirror is a different input, not the same one twice
    y = [0, 0, 1, 1]  # _small_val_set: normals first
    mean = (np.array(direct) + np.array(mirror)) / 2
    assert record["rows"][2]["auc"] == roc_auc_score(y, mean)
    assert "| mean of both |" in done.stdout


def test_train_and_test_splits_are_refused(tmp_path):
    for split in ("train", "test"):
        done = subprocess.run([sys.executable, "scripts/measure_flip_tta.py", str(DEFAULT_MODEL), "--labels", "x.csv", "--split", split],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and "validation data only" in done.stderr
