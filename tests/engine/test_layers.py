"""Evidence layers (engine/layers.py): a prediction carries what it shows, and every
output draws whatever layers it has.

MSFM's own layers are checked against its fields; then a layer no output knows (a
"fracture line" a future localisation method might add, a box, a point and a map) is put
into a real prediction's ``extra_layers`` and must reach the burned-in Secondary
Capture pixels, the GSPS (as its own graphic layer, conformant per dciodvfy) and the CSV
(its own columns, explained in the companion file) without any of them being edited.
The desktop viewer's half of this is in tests/desktop/test_app_lesion.py.
"""

import csv
import io
import json
from dataclasses import replace

import numpy as np
import pydicom
import pytest

from engine import style
from engine.layers import MapLayer, ShapeLayer, drawing_order, finding_box, msfm_layers
from tests.conftest import DICOM, dciodvfy_errors

#: Far from MSFM's boxes' colours, so its pixels can be told apart in the burned-in image.
LINE_COLOUR = "#00ff80"


@pytest.fixture(scope="module")
def pred(resnet18_model):
    from engine.infer import Predictor

    (p,) = Predictor(resnet18_model, device="cpu", enforce_scope=False).predict([DICOM / "RG3_UNC.dcm"])
    return p


def with_fracture_line(p):
    w, h = p.width, p.height
    line = ShapeLayer("fracture_line", "Fracture line", "finding", LINE_COLOUR, boxes=((0.1 * w, 0.6 * h, 0.3 * w, 0.8 * h),),
                      points=((0.2 * w, 0.7 * h),), description="fracture line end points", csv_box="line", csv_point="line_mid")
    heat = MapLayer("line_map", "Fracture line map", np.eye(4, dtype=np.float32), (0.0, 0.0, w / 2, h / 2), default_visible=True)
    return replace(p, extra_layers=(line, heat)), line


def test_msfm_layers_describe_the_prediction_fields(pred):
    layers = {layer.name: layer for layer in pred.evidence_layers()}
    assert list(layers) == ["evidence", "cam", "a", "object", "windows", "fused", "lesion"]
    assert layers["evidence"].values is pred.maps.evidence and layers["evidence"].extent == (0, 0, pred.width, pred.height)
    assert layers["windows"].boxes == tuple(w.box for w in pred.windows) and layers["windows"].numbered
    assert layers["windows"].box_colours[:2] == (style.RANK_COLOURS[0], style.RANK_COLOURS[1])
    assert layers["lesion"].boxes == (pred.lesion_box,) and layers["lesion"].points == (pred.peak,) and layers["lesion"].role == "finding"
    assert [s.name for s in drawing_order(pred.evidence_layers())] == ["object", "windows", "fused", "lesion"]
    assert finding_box(pred.evidence_layers()) == pred.lesion_box
    # Without an evidence map there is no finding layer; the region is what to look at.
    old = replace(pred, lesion_box=None, peak=None)
    assert "lesion" not in [layer.name for layer in msfm_layers(old)] and finding_box(old.evidence_layers()) == pred.fused_box


def test_a_new_layer_reaches_the_burned_in_image_the_gsps_and_the_csv(pred, tmp_path):
    from engine.exports.burn import render_overlay
    from engine.exports.csvout import companion_text, csv_text
    from engine.exports.dicom_objects import presentation_state
    from engine.io import load_image, read_dataset

    p, line = with_fracture_line(pred)
    pixels = load_image(DICOM / "RG3_UNC.dcm").pixels
    # Burned in: the new box in its own colour; its map (one map at a time: when E is not
    # chosen) tints its quarter of the image.
    before, after = render_overlay(pred, pixels, layers=("fused",)), render_overlay(p, pixels, layers=("fused",))
    x0, y0, x1, y1 = (int(round(v)) for v in line.boxes[0])
    edge = after[y0 + 5:y1 - 5, x0]
    assert (np.abs(edge.astype(int) - np.array(style.rgb(LINE_COLOUR))).sum(axis=1) < 30).mean() > 0.9
    quarter = (slice(0, p.height // 2), slice(0, p.width // 2))
    assert not np.array_equal(before[quarter], after[quarter])
    assert np.array_equal(before[p.height // 2:, p.width // 2:], after[p.height // 2:, p.width // 2:])  # nothing else changed there
    # GSPS: its own graphic layer with the box as a closed polyline and the point.
    ds = presentation_state(p, read_dataset(DICOM / "RG3_UNC.dcm"), "1.2.3")
    names = [g.GraphicLayer for g in ds.GraphicLayerSequence]
    assert names == ["MSFM WINDOWS", "MSFM FUSED", "MSFM LESION", "MSFM FRACTURE_LI"]
    ann = next(a for a in ds.GraphicAnnotationSequence if a.GraphicLayer == "MSFM FRACTURE_LI")
    kinds = [g.GraphicType for g in ann.GraphicObjectSequence]
    assert kinds == ["POLYLINE", "POINT"]
    poly = np.asarray(ann.GraphicObjectSequence[0].GraphicData, dtype=float).reshape(-1, 2)
    assert poly.min(axis=0) == pytest.approx(line.boxes[0][:2], abs=0.01) and poly.max(axis=0) == pytest.approx(line.boxes[0][2:], abs=0.01)
    out = tmp_path / "gsps.dcm"
    ds.save_as(out, enforce_file_format=True)
    assert dciodvfy_errors(out) == []
    assert pydicom.dcmread(out).GraphicLayerSequence[3].GraphicLayerDescription == "MSFM fracture line end points"
    # CSV: new columns after the known ones, with their meaning in the companion file.
    rows = list(csv.DictReader(io.StringIO(csv_text([p]))))
    assert float(rows[0]["line_x0"]) == pytest.approx(line.boxes[0][0], abs=0.01)
    assert float(rows[0]["line_mid_y"]) == pytest.approx(line.points[0][1], abs=0.01)
    header = csv_text([p]).splitlines()[0].split(",")
    assert header[-6:] == ["line_x0", "line_y0", "line_x1", "line_y1", "line_mid_x", "line_mid_y"]
    assert float(rows[0]["lesion_x0"]) == pytest.approx(pred.lesion_box[0], abs=0.01)  # MSFM's own columns unchanged
    meaning = json.loads(companion_text([p]))["columns"]
    assert meaning["line_x0"].startswith("fracture line end points, pixels of the source image")
    # A prediction without the layer leaves those columns empty in a shared CSV.
    both = list(csv.DictReader(io.StringIO(csv_text([p, pred]))))
    assert both[1]["line_x0"] == "" and both[0]["line_x0"] != ""
