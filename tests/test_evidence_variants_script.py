"""scripts/measure_evidence_variants.py: other compositions of E from the very view maps the
predictor reads; the shipped composition reproduces the predictor's peaks; val only."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import torch

from engine.evidence import evidence_map, view_maps
from engine.infer import Predictor
from engine.io import load_image
from engine.resources import DEFAULT_MODEL
from tests.test_inference_settings_script import REPO, _small_val_set

sys.path.insert(0, str(REPO / "scripts"))
from measure_evidence_variants import VARIANTS, box_cells, brightness_rank  # noqa: E402
from tune_lesion_tau import point_hits  # noqa: E402


def _views():
    g = torch.Generator().manual_seed(0)
    m_main, m_obj, m_parts = torch.randn(10, 10, generator=g), torch.randn(10, 10, generator=g), torch.randn(3, 7, 7, generator=g)
    obj = torch.tensor([40.0, 20.0, 200.0, 180.0])
    win = torch.tensor([[40.0, 20.0, 120.0, 100.0], [100.0, 80.0, 200.0, 180.0], [60.0, 60.0, 140.0, 140.0]])
    return (m_main, m_obj, m_parts, obj, win, 300, 240)


def test_the_shipped_variant_is_the_engines_evidence_map_and_the_others_differ():
    args = _views()
    v = view_maps(*args)
    shipped = VARIANTS["max over parts (shipped)"](v)
    assert torch.equal(shipped, evidence_map(*args))
    for name, compose in VARIANTS.items():
        e = compose(v)
        assert e.shape == shipped.shape and torch.isfinite(e).all(), name
        if name != "max over parts (shipped)":
            assert not torch.equal(e, shipped), name
    outside = ~v.obj_cov
    assert torch.equal(VARIANTS["main map alone"](v), v.main)
    assert torch.allclose(VARIANTS["object + main"](v)[outside], 2 * v.main[outside])


def test_brightness_ranks_follow_the_radiograph_and_boxes_find_their_cells():
    pixels = np.zeros((400, 800), np.float32)
    pixels[:, 400:] = 0.9  # the right half is "bone"
    pixels[180:220, 600:640] = 1.0  # the brightest spot
    r = brightness_rank(pixels, (100, 200))
    assert r.shape == (100, 200) and r.min() == 0.0 and r.max() < 1.0
    assert r[:, :90].max() < 0.5 <= r[:, 110:].min()  # every dark cell ranks below every bright one
    assert np.unravel_index(np.argmax(r), r.shape) in {(i, j) for i in range(45, 55) for j in range(150, 160)}
    rows, cols = box_cells(np.array([600.0, 180.0, 640.0, 220.0]), 800, 400, (100, 200))
    assert (rows, cols) == (slice(45, 55), slice(150, 160))
    rows, cols = box_cells(np.array([799.0, 399.0, 800.0, 400.0]), 800, 400, (100, 200))  # the last pixel: the last cell
    assert (rows, cols) == (slice(99, 100), slice(199, 200))


def test_rows_score_the_predictors_own_reads(tmp_path):
    labels = _small_val_set(tmp_path / "data", n_each=2)
    js = tmp_path / "ev.json"
    done = subprocess.run([sys.executable, "scripts/measure_evidence_variants.py", str(DEFAULT_MODEL), "--labels", str(labels), "--json", str(js),
                           "--bright", "0", "0.999"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    record = json.loads(js.read_text())
    bright = ["shipped E on cells of brightness rank >= 0", "shipped E on cells of brightness rank >= 0.999"]
    assert record["n"] == 2 and [r["variant"] for r in record["rows"]] == [*VARIANTS, *bright]
    shipped, every_cell = record["rows"][0], record["rows"][-2]
    assert {k: v for k, v in every_cell.items() if k != "variant"} == {k: v for k, v in shipped.items() if k != "variant"}
    assert "brightness rank of the brightest cell of the true boxes" in done.stdout
    predictor = Predictor.from_checkpoint(DEFAULT_MODEL, "cpu", enforce_scope=False)
    preds = predictor.predict_batch([load_image(f) for f in record["files"]])
    boxes = {}
    for r in csv.DictReader(open(labels.parent / "boxes.csv")):
        boxes.setdefault(r["file"], []).append([float(r[k]) for k in ("x0", "y0", "x1", "y1")])
    hits = [point_hits(p.peak, np.array(boxes[f.split("/")[-1]])) for p, f in zip(preds, record["files"])]
    assert record["rows"][0]["pointing"] == np.mean(hits)
    assert "| max over parts (shipped) |" in done.stdout


def test_train_and_test_splits_are_refused():
    for split in ("train", "test"):
        done = subprocess.run([sys.executable, "scripts/measure_evidence_variants.py", str(DEFAULT_MODEL), "--labels", "x.csv", "--split", split],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and "validation data only" in done.stderr
