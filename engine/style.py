"""What the evidence looks like and is called, wherever it is drawn: the desktop viewer
(``msfm_desktop.overlays``), the burned-in Secondary Capture and the report
(:mod:`engine.exports.burn`), the legend and the layer choices. One definition, so a
window of rank 2 is the same orange on screen, in the PACS and on paper.

Colours are ``#rrggbb``; :func:`rgb` gives the (r, g, b) tuple the OpenCV drawers take.
"""

from __future__ import annotations

#: Part windows by rank 1..7.
RANK_COLOURS: tuple[str, ...] = ("#ff0000", "#ff8000", "#ffff00", "#00c000", "#00c0ff", "#0040ff", "#c000ff")
LESION_COLOUR = "#ff00ff"  # the finding: lesion box and evidence peak
FUSED_COLOUR = "#ffffff"  # the region (fused box)
OBJECT_COLOUR = "#00ffff"  # stage 1's object box
TRUTH_COLOUR = "#40ff40"  # reference boxes of a labelled folder (boxes.csv)
RESEARCH_COLOUR = "#ffb000"  # the research-use mark outside the intended use (amber)
TONED_DOWN = "#a0a0a0"  # boxes of a normal result
#: The heat maps' colour map and its transparency ramp: transparent below ``ALPHA_FROM`` of
#: the scale, fully drawn from ``ALPHA_FULL``.
COLOUR_MAP = "turbo"
ALPHA_FROM, ALPHA_FULL = 0.35, 0.80
#: How much of the heat map a normal result keeps.
NORMAL_MAP_FACTOR = 0.3

#: Every evidence layer a model's prediction can draw, with its name in menus and settings.
LAYER_LABELS: dict[str, str] = {
    "evidence": "Evidence map E", "cam": "CAM (abnormal class)", "a": "Activation map A", "object": "Object box",
    "windows": "Part windows", "fused": "Region (fused box)", "lesion": "Lesion box and peak", "truth": "Reference boxes (boxes.csv)",
    "label": "Probability label",
}
#: Heat maps: one is drawn at a time, in this order of preference.
MAP_LAYERS: tuple[str, ...] = ("evidence", "cam", "a")

#: Verdicts (engine.model.calibration) in words and colour.
VERDICT_WORDS = {"abnormal": "ABNORMAL", "borderline": "BORDERLINE", "possible": "POSSIBLE", "normal": "normal"}
VERDICT_COLOURS = {"abnormal": "#ff5050", "borderline": "#ffb000", "possible": "#ffd060", "normal": "#80c080"}


def rgb(colour: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` -> (r, g, b)."""
    c = colour.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def rank_colour(rank: int) -> str:
    """The colour of the window of 0-based ``rank``."""
    return RANK_COLOURS[rank % len(RANK_COLOURS)]


__all__ = ["ALPHA_FROM", "ALPHA_FULL", "COLOUR_MAP", "FUSED_COLOUR", "LAYER_LABELS", "LESION_COLOUR", "MAP_LAYERS", "NORMAL_MAP_FACTOR",
           "OBJECT_COLOUR", "RANK_COLOURS", "RESEARCH_COLOUR", "TONED_DOWN", "TRUTH_COLOUR", "VERDICT_COLOURS", "VERDICT_WORDS", "rank_colour",
           "rgb"]
