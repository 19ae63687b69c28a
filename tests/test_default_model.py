"""The bundled default model and demo study, as a user meets them (issue 4 acceptance)."""

import csv
import json
import re

import pytest

from engine.resources import DEFAULT_MODEL, DEMO_STUDY, MODEL_CARD, resolve_checkpoint
from tests.conftest import XRAY
from tests.engine.test_cli import msfm


def demo_boxes() -> dict[str, list[tuple[float, ...]]]:
    out: dict[str, list[tuple[float, ...]]] = {}
    with open(DEMO_STUDY / "boxes.csv") as f:
        for r in csv.DictReader(f):
            out.setdefault(r["file"], []).append(tuple(float(r[k]) for k in ("x0", "y0", "x1", "y1")))
    return out


def test_default_resolves_to_the_bundled_model():
    assert resolve_checkpoint("default") == DEFAULT_MODEL and DEFAULT_MODEL.is_file()
    assert resolve_checkpoint("x.pt").name == "x.pt"


def test_predict_demo_with_the_default_model(tmp_path):
    out = tmp_path / "demo.json"
    res = msfm("predict", DEMO_STUDY, "--checkpoint", "default", "--json", out, "--overlays", tmp_path / "ov", "--quiet")
    assert res.returncode == 0, res.stderr
    preds = {p["file"].split("/")[-1]: p for p in json.loads(out.read_text())["predictions"]}
    labels = {r["file"]: int(r["label"]) for r in csv.DictReader(open(DEMO_STUDY / "labels.csv"))}
    assert set(labels) <= set(preds) and "IMG0002447.dcm" in preds  # PNGs and the DICOM copies
    assert preds["IMG0002447.dcm"]["probability"] == pytest.approx(preds["IMG0002447.png"]["probability"], abs=1e-4)
    # Known misses of the shipped model (issue 18; the 448 px file of 2026-12-04, threshold 0.568):
    # the leg fracture IMG0001980 at p 0.36 and the normal IMG0000033 at p 0.63 (the 320 px file
    # before it missed the same two, at 0.41 and 0.57).
    assert sum(preds[f]["label"] == y for f, y in labels.items()) >= 5
    # On the femur the lesion box (the finding) and the fused box (the region) hold the
    # annotated fracture (boxes never seen in training); on the forearm the peak sits at the
    # wrist edge, about 160 px from the radius fracture: the known localisation miss.
    x0, y0, x1, y1 = demo_boxes()["IMG0002447.png"][0]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    for key in ("lesion_box", "fused_box"):
        bx0, by0, bx1, by1 = preds["IMG0002447.png"][key]
        assert bx0 <= cx <= bx1 and by0 <= cy <= by1, key
    assert len(list((tmp_path / "ov").glob("*.png"))) == len(preds)


@pytest.mark.slow
def test_evaluate_default_reproduces_the_model_card(tmp_path):
    out = tmp_path / "val.json"
    res = msfm("evaluate", XRAY / "labels.csv", "--checkpoint", "default", "--json", out, "--quiet")
    assert res.returncode == 0, res.stderr
    m = json.loads(out.read_text())
    row = next(line for line in MODEL_CARD.read_text().splitlines() if line.startswith("| MSFM (ensemble)"))
    auc, kappa, acc = (float(v) for v in re.findall(r"\d\.\d{3}", row)[:3])
    assert m["auc"] == pytest.approx(auc, abs=5e-4) and m["kappa"] == pytest.approx(kappa, abs=5e-4) and m["accuracy"] == pytest.approx(acc, abs=5e-4)
