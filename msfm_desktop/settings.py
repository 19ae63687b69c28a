"""Persistent settings (QSettings) and the Settings dialog.

Kept: the device (auto / CPU / CUDA), the model checkpoint (empty = the bundled default),
which overlays start visible and the map opacity, and whether images are analysed as
soon as they open. QSettings stores everything as strings in INI files, so the typed
accessors here are the only readers.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
    QLineEdit, QPushButton, QSpinBox, QVBoxLayout, QWidget,
)

from engine.checkpoint import describe_checkpoint
from engine.errors import CheckpointError
from engine.resources import DEFAULT_MODEL

from .overlays import DEFAULT_VISIBLE, LAYERS

DEVICES = ("auto", "cpu", "cuda")
LAYER_LABELS = {"cam": "CAM (abnormal class)", "a": "Activation map A", "object": "Object box", "windows": "Part windows", "fused": "Fused box"}


def _bool(v: object, default: bool) -> bool:
    if v is None:
        return default
    return v is True or str(v).lower() in ("true", "1", "yes")


class AppSettings:
    """Typed view of the application's QSettings."""

    def __init__(self, qs: QSettings | None = None) -> None:
        self.qs = qs or QSettings("MSFM", "MSFM Desktop")

    @property
    def device(self) -> str:
        v = str(self.qs.value("device", "auto"))
        return v if v in DEVICES else "auto"

    @device.setter
    def device(self, v: str) -> None:
        self.qs.setValue("device", v if v in DEVICES else "auto")

    @property
    def model(self) -> Path:
        """The checkpoint to use: the user's choice, or the bundled default."""
        v = str(self.qs.value("model", "") or "")
        return Path(v) if v else DEFAULT_MODEL

    @model.setter
    def model(self, p: str | Path | None) -> None:
        self.qs.setValue("model", "" if p is None or Path(p) == DEFAULT_MODEL else str(p))

    @property
    def auto_analyse(self) -> bool:
        return _bool(self.qs.value("auto_analyse"), False)

    @auto_analyse.setter
    def auto_analyse(self, on: bool) -> None:
        self.qs.setValue("auto_analyse", bool(on))

    def overlay_visible(self, layer: str) -> bool:
        return _bool(self.qs.value(f"overlays/{layer}"), DEFAULT_VISIBLE[layer])

    def set_overlay_visible(self, layer: str, on: bool) -> None:
        self.qs.setValue(f"overlays/{layer}", bool(on))

    @property
    def opacity(self) -> int:
        """Map opacity in percent."""
        try:
            return max(0, min(100, int(self.qs.value("overlays/opacity", 60))))
        except (TypeError, ValueError):
            return 60

    @opacity.setter
    def opacity(self, v: int) -> None:
        self.qs.setValue("overlays/opacity", int(v))

    def recent(self) -> list[str]:
        v = self.qs.value("recent", [])
        return [v] if isinstance(v, str) else list(v or [])

    def set_recent(self, paths: list[str]) -> None:
        self.qs.setValue("recent", paths)


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


class SettingsDialog(QDialog):
    """Edits :class:`AppSettings`; writes them only on OK, after checking the checkpoint."""

    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.settings = settings
        self.device = QComboBox()
        self.device.addItems(["auto (CUDA when available)", "CPU", "CUDA"])
        self.device.setCurrentIndex(DEVICES.index(settings.device))
        if not cuda_available():
            self.device.model().item(2).setEnabled(False)
            self.device.setToolTip("No CUDA device on this computer.")
        self.model = QLineEdit("" if settings.model == DEFAULT_MODEL else str(settings.model))
        self.model.setPlaceholderText(f"bundled default ({DEFAULT_MODEL.name})")
        browse, default = QPushButton("Browse…"), QPushButton("Default")
        browse.clicked.connect(self._browse)
        default.clicked.connect(self.model.clear)
        row = QHBoxLayout()
        for w in (self.model, browse, default):
            row.addWidget(w)
        self.auto = QCheckBox("Analyse each image as it opens")
        self.auto.setChecked(settings.auto_analyse)
        self.layers = {k: QCheckBox(LAYER_LABELS[k]) for k in LAYERS}
        for k, box in self.layers.items():
            box.setChecked(settings.overlay_visible(k))
        self.opacity = QSpinBox()
        self.opacity.setRange(0, 100)
        self.opacity.setSuffix(" %")
        self.opacity.setValue(settings.opacity)
        self.error = QLabel("")
        self.error.setStyleSheet("color: #c00000")
        self.error.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Device", self.device)
        form.addRow("Model checkpoint", row)
        form.addRow("Analysis", self.auto)
        shown = QVBoxLayout()
        for box in self.layers.values():
            shown.addWidget(box)
        form.addRow("Overlays shown", shown)
        form.addRow("Map opacity", self.opacity)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.error)
        lay.addWidget(self.buttons)

    def _browse(self) -> None:
        f, _ = QFileDialog.getOpenFileName(self, "Model checkpoint", "", "Checkpoints (*.pt);;All files (*)")
        if f:
            self.model.setText(f)

    def accept(self) -> None:
        text = self.model.text().strip()
        if text:
            try:
                describe_checkpoint(Path(text))
            except CheckpointError as exc:
                self.error.setText(f"Cannot use this checkpoint: {exc}")
                return
        s = self.settings
        s.device = DEVICES[self.device.currentIndex()]
        s.model = Path(text) if text else None
        s.auto_analyse = self.auto.isChecked()
        for k, box in self.layers.items():
            s.set_overlay_visible(k, box.isChecked())
        s.opacity = self.opacity.value()
        super().accept()
