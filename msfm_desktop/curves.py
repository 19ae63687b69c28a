"""Live training curves: loss per stage per step, validation AUC/κ/accuracy per epoch."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtWidgets import QHBoxLayout, QWidget

LOSS_COLOURS = {"main": "#1f77b4", "object": "#2ca02c", "parts": "#ff7f0e", "total": "#d62728"}
VAL_COLOURS = {"auc": "#9467bd", "kappa": "#d62728", "accuracy": "#17becf"}


class TrainingCurves(QWidget):
    """Two plots; ``loss_points``/``val_points`` hold what was drawn (x, y) per curve."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.loss_plot = pg.PlotWidget(title="Training loss per stage")
        self.loss_plot.setLabel("bottom", "step")
        self.loss_plot.addLegend(offset=(-5, 5), brush=(0, 0, 0, 170))
        self.val_plot = pg.PlotWidget(title="Validation (held-out images)")
        self.val_plot.setLabel("bottom", "epoch")
        self.val_plot.setYRange(-0.1, 1.0)
        self.val_plot.addLegend(offset=(-5, -5), brush=(0, 0, 0, 170))
        self.loss_curves = {k: self.loss_plot.plot([], [], pen=pg.mkPen(c, width=1.5), name=k) for k, c in LOSS_COLOURS.items()}
        self.val_curves = {k: self.val_plot.plot([], [], pen=pg.mkPen(c, width=2), symbol="o", symbolSize=6, symbolBrush=c, name=k)
                           for k, c in VAL_COLOURS.items()}
        self.loss_points: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in LOSS_COLOURS}
        self.val_points: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in VAL_COLOURS}
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.loss_plot)
        lay.addWidget(self.val_plot)

    def clear(self) -> None:
        for d in (self.loss_points, self.val_points):
            for xs, ys in d.values():
                xs.clear()
                ys.clear()
        self._redraw()

    def add_losses(self, x: float, losses: dict[str, float]) -> None:
        for k, (xs, ys) in self.loss_points.items():
            if k in losses:
                xs.append(x)
                ys.append(float(losses[k]))
                self.loss_curves[k].setData(xs, ys)

    def add_validation(self, epoch: int, val: dict) -> None:
        for k, (xs, ys) in self.val_points.items():
            if val.get(k) is not None:
                xs.append(epoch)
                ys.append(float(val[k]))
                self.val_curves[k].setData(xs, ys)

    def _redraw(self) -> None:
        for d, curves in ((self.loss_points, self.loss_curves), (self.val_points, self.val_curves)):
            for k, (xs, ys) in d.items():
                curves[k].setData(xs, ys)
