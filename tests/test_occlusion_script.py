"""scripts/measure_occlusion.py: the score it occludes is the engine's own probability, the
geometry of boxes, masks and candidate peaks is that of the source image, an occlusion that
changes nothing drops nothing, and only a validation split is accepted."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from engine.data import load_samples
from engine.infer import Predictor
from engine.io import load_image
from engine.model.checkpoint import load_checkpoint, save_checkpoint
from engine.model.preprocess import make_batch
from engine.resources import DEFAULT_MODEL
from tests.test_inference_settings_script import REPO, _small_val_set

sys.path.insert(0, str(REPO / "scripts"))
import measure_occlusion as mo  # noqa: E402


def run(*args: str):
    return subprocess.run([sys.executable, "scripts/measure_occlusion.py", *args], cwd=REPO, capture_output=True, text=True, timeout=900)


def test_boxes_masks_and_candidate_peaks_are_in_the_right_pixels():
    # A 1000 x 500 source resized to 100 x 100: x shrinks 10x, y 5x.
    b = mo.input_boxes(np.array([[100.0, 50.0, 300.0, 250.0]]), 1000, 500, 100)
    assert np.allclose(b, [[10, 10, 30, 50]])
    g = mo.grown(b, 0.25, 100)
    assert np.allclose(g, [[5, 0, 35, 60]])  # 0.25 of 20 = 5 px a side in x, 10 in y (clipped at 0)
    m = mo.box_mask(g, 100)
    assert m.sum() == 30 * 60 and m[0, 5] and not m[0, 4] and not m[60, 10]
    e = np.zeros((50, 100), np.float32)  # an evidence grid over a 400 x 200 source (4 px cells)
    e[10, 20], e[40, 90], e[11, 21] = 3.0, 2.0, 2.5  # the third lies beside the first: suppressed
    peaks = mo.candidate_peaks(e, 400, 200, 3)
    assert peaks[0] == (82.0, 42.0) and peaks[1] == (362.0, 162.0)
    assert all(abs(x - 86.0) > 1 for x, _ in peaks)  # (21, 11)'s centre is never a candidate


def test_an_occlusion_that_changes_nothing_drops_nothing():
    predictor = Predictor.from_checkpoint(DEFAULT_MODEL, "cpu", enforce_scope=False)
    s = next(s for s in load_samples(_labels_csv()).split("val") if s.label == 1)
    x = make_batch([load_image(s.path)], predictor.config.input_size)[0, 0].numpy()
    score = mo.Scorer(predictor.model, 8)
    base = float(score(x[None])[0])
    pts = np.array([[100.0, 100.0], [200.0, 150.0]])
    size = x.shape[0]
    unchanged = lambda m: x  # noqa: E731
    assert np.allclose(mo.occlusion_drops(score, unchanged, size, base, pts, 48), 0.0, atol=1e-5)
    drops = mo.occlusion_drops(score, lambda m: np.where(m, 0.0, x), size, base, pts, 48)  # black squares: the score moves
    assert np.abs(drops).max() > 1e-3
    sens = mo.sensitivity_map(score, unchanged, size, base, 160, 160)
    assert sens.shape == x.shape and np.allclose(sens, 0.0, atol=1e-5)
    for kind in ("blur", "inpaint"):  # both fills change the masked pixels only
        m = mo.rect_mask(size, 100, 50, 148, 98)
        v = mo.make_fill(x, kind, 8.0)(m)
        assert m.sum() == 48 * 48 and np.array_equal(v[~m], x[~m]) and not np.allclose(v[m], x[m])
    logits = mo.window_logits(predictor.model, x, pts, 64)
    assert logits.shape == (2,) and np.isfinite(logits).all() and logits[0] != logits[1]


def _labels_csv():
    from tests.test_inference_settings_script import XRAY

    return XRAY / "labels.csv"


def test_the_script_scores_the_engines_own_probability(tmp_path, resnet18_model):
    labels = _small_val_set(tmp_path / "data", n_each=2)
    plain = tmp_path / "plain.pt"
    msfm_size = load_checkpoint(DEFAULT_MODEL).config.input_size
    other_size = 320 if msfm_size != 320 else 448
    save_checkpoint(plain, resnet18_model, {"name": "random resnet18"}, config=resnet18_model.config.with_(input_size=other_size, window_scales=None))
    js = tmp_path / "occ.json"
    small = ["--controls", "2", "--patch", "160", "--stride", "160", "--candidates", "2", "--rerank-patches", "32", "--rerank-windows", "64"]
    done = run(str(DEFAULT_MODEL), "--labels", str(labels), "--plain", str(plain), "--json", str(js), *small)
    # a plain file of another size is refused
    assert done.returncode == 2 and f"input size {other_size}, the MSFM file's is {msfm_size}" in done.stderr
    fractured = [s for s in load_samples(labels).split("val") if s.label == 1]
    with open(labels.parent / "meta.csv", "w") as f:  # the first fractured image carries metal hardware
        f.write("file,hardware\n" + "".join(f"{s.path.name},{int(i == 0)}\n" for i, s in enumerate(fractured)))
    done = run(str(DEFAULT_MODEL), "--labels", str(labels), "--json", str(js), *small)
    assert done.returncode == 0, done.stderr
    record = json.loads(js.read_text())
    assert "| msfm | all (2) |" in done.stdout and "| msfm | no hardware (1) |" in done.stdout
    assert "re-ranked, no hardware (1 images" in done.stdout
    again = run(str(DEFAULT_MODEL), "--labels", str(labels), "--from-json", str(js))
    assert again.returncode == 0 and again.stdout == done.stdout  # the same tables, no model run
    assert [r["path"] for r in record["images"]] == [str(s.path) for s in fractured]
    preds = Predictor.from_checkpoint(DEFAULT_MODEL, "cpu", enforce_scope=False).predict_batch([load_image(s.path) for s in fractured])
    for r, p in zip(record["images"], preds):
        assert abs(r["msfm"]["base"] - math.log(p.probability / (1 - p.probability))) < 1e-4
        assert r["candidates"]["hit"][0] == r["e_hit"]  # the first candidate is E's own peak
        assert len(r["candidates"]["occlusion"]["32"]) == len(r["candidates"]["window"]["64"]) == 2
        assert r["mask_share"] > 0 and r["n_controls"] <= 2
    assert "| E's peak (as shipped) |" in done.stdout and "| oracle: best of the top k |" in done.stdout
    assert "| occlusion, msfm |" in done.stdout and "Gaussian blur σ 8 px" in done.stdout

    js2 = tmp_path / "inpaint.json"
    done = run(str(DEFAULT_MODEL), "--labels", str(labels), "--json", str(js2), *small, "--fill", "inpaint", "--patch", "0")
    assert done.returncode == 0, done.stderr
    assert "inpainting (Telea)" in done.stdout and "| occlusion, msfm |" not in done.stdout  # no sensitivity maps asked for
    other = json.loads(js2.read_text())["images"]
    assert [r["msfm"]["base"] for r in other] == [r["msfm"]["base"] for r in record["images"]]
    assert [r["msfm"]["true_drop"] for r in other] != [r["msfm"]["true_drop"] for r in record["images"]]  # another fill


def test_a_file_that_crops_from_the_source_is_refused(tmp_path):
    from engine.model.checkpoint import load_checkpoint

    ck = load_checkpoint(DEFAULT_MODEL)
    other = tmp_path / "source.pt"
    save_checkpoint(other, ck.model, {"name": "crops from the source"}, config=dataclasses.replace(ck.config, crop_from="source"))
    done = run(str(other), "--labels", str(_labels_csv()), "--limit", "1")
    assert done.returncode == 2 and "cut from the source, not the network input" in done.stderr


@pytest.mark.parametrize("split", ["train", "test"])
def test_train_and_test_splits_are_refused(split):
    done = run(str(DEFAULT_MODEL), "--labels", "x.csv", "--split", split)
    assert done.returncode == 2 and "validation data only" in done.stderr
