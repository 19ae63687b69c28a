"""Issue 17 in the app: the lesion box and the evidence peak are the finding, the evidence
map is the heat layer, the folder's reference boxes (boxes.csv) are drawn beside them,
and the Findings panel says where. Real widgets (offscreen), the bundled default model,
a fractured demo radiograph with its true box."""

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402

from tests.desktop.test_app_panels import window  # noqa: E402
from tests.desktop.test_app_window import open_and_wait  # noqa: E402


def test_the_finding_is_the_lesion_box_beside_the_reference_box(qtbot, tmp_path):
    import shutil

    from engine.resources import DEFAULT_MODEL, DEMO_STUDY

    study = tmp_path / "forearm"
    study.mkdir()
    shutil.copy(DEMO_STUDY / "IMG0000188.png", study / "IMG0000188.png")
    shutil.copy(DEMO_STUDY / "boxes.csv", study / "boxes.csv")
    win = window(qtbot, QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat), DEFAULT_MODEL)
    open_and_wait(qtbot, win, study)
    qtbot.waitUntil(lambda: win.viewer.image is not None and not win.loading(), timeout=60000)
    win.analyse()
    qtbot.waitUntil(lambda: win.prediction is not None, timeout=120000)
    p = win.prediction
    assert p.lesion_box is not None and p.peak is not None
    assert win.overlays.boxes("truth") == [pytest.approx((175.4, 354.9, 192.3, 370.5), abs=1e-3)]
    assert win.overlays.boxes("lesion") == [pytest.approx(tuple(p.lesion_box), abs=1e-3)]
    text = win.findings.text.text()
    assert "Reference: 1 box(es) from boxes.csv" in text and "lesion box IoU" in text and "Where: lesion box" in text
    # The lesion box is the most prominent layer: drawn above every other box.
    z = {layer: max((it.zValue() for it in items), default=0) for layer, items in win.overlays.items.items()}
    assert z["lesion"] > max(v for k, v in z.items() if k != "lesion")
    # The finding's box is smaller than the region it sits in (eq. 11 cannot be lesion-sized).
    area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
    assert area(p.lesion_box) < area(p.fused_box)


def test_a_layer_the_viewer_does_not_know_is_drawn_toggled_and_exported(qtbot, tmp_path):
    """A prediction that brings its own evidence layer (here a box with a point and a map,
    as another localisation method might) is drawn by the viewer with the layer's colour
    and role, can be hidden by name, and is part of what an export burns in."""
    from dataclasses import replace

    from PySide6.QtWidgets import QGraphicsRectItem

    from engine.resources import DEFAULT_MODEL, DEMO_STUDY
    from tests.engine.test_layers import LINE_COLOUR, with_fracture_line

    win = window(qtbot, QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat), DEFAULT_MODEL)
    open_and_wait(qtbot, win, DEMO_STUDY)
    qtbot.waitUntil(lambda: win.viewer.image is not None and not win.loading(), timeout=60000)
    win.analyse()
    qtbot.waitUntil(lambda: win.prediction is not None, timeout=120000)
    p, line = with_fracture_line(replace(win.prediction, probability=0.99, label=1))  # drawn as an abnormal result
    win.session.store(win.session.current, p)
    win.show_result(win.session.current, p)
    rects = [it for it in win.overlays.items["fracture_line"] if isinstance(it, QGraphicsRectItem)]
    assert win.overlays.boxes("fracture_line") == [pytest.approx(line.boxes[0], abs=1e-3)]
    assert rects[0].pen().color().name() == LINE_COLOUR and rects[0].isVisible()
    # A finding: above MSFM's region and windows, like the lesion box.
    assert rects[0].zValue() == max(it.zValue() for it in win.overlays.items["lesion"])
    (heat,) = win.overlays.items["line_map"]
    assert heat.isVisible() and heat.boundingRect().width() > 0
    win.overlays.set_visible("fracture_line", False)
    assert not any(it.isVisible() for it in win.overlays.items["fracture_line"])
    assert "fracture_line" not in win.overlays.visible_layers() and "line_map" in win.overlays.visible_layers()
    win.overlays.set_visible("fracture_line", True)
    assert "fracture_line" in win.overlays.visible_layers()
