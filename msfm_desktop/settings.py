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
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from engine.device import DEVICES
from engine.errors import CheckpointError
from engine.model.described import describe as describe_checkpoint
from engine.resources import DEFAULT_MODEL
from engine.style import LAYER_LABELS

from .overlays import DEFAULT_VISIBLE, LAYERS


def _bool(v: object, default: bool) -> bool:
    if v is None:
        return default
    return v is True or str(v).lower() in ("true", "1", "yes")


class AppSettings:
    """Typed view of the application's QSettings."""

    def __init__(self, qs: QSettings | None = None) -> None:
        self.qs = qs or QSettings("MSFM", "MSFM Desktop")
        self._research = False

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

    @property
    def research_outside_use(self) -> bool:
        """Analyse images outside the model's intended use anyway (research only: every
        output then marks them). Off by default, and not remembered across sessions on
        purpose: a clinical reading must never start with it on."""
        return self._research

    @research_outside_use.setter
    def research_outside_use(self, on: bool) -> None:
        self._research = bool(on)

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

    # ----- exports and PACS
    @property
    def export_dir(self) -> Path:
        """Where exports go unless the user picks another folder: never a source folder."""
        v = str(self.qs.value("export/dir", "") or "")
        if v:
            return Path(v)
        import platformdirs

        return Path(platformdirs.user_documents_dir()) / "MSFM exports"

    @export_dir.setter
    def export_dir(self, p: str | Path) -> None:
        self.qs.setValue("export/dir", str(p))

    def pacs(self):
        """The configured PACS (:class:`engine.exports.pacs.PacsConfig`), or None."""
        from engine.exports.pacs import PacsConfig

        host = str(self.qs.value("pacs/host", "") or "")
        ae = str(self.qs.value("pacs/ae_title", "") or "")
        try:
            port = int(self.qs.value("pacs/port", 0) or 0)
        except (TypeError, ValueError):
            port = 0
        if not host or not ae or not 0 < port < 65536:
            return None
        return PacsConfig(ae, host, port, str(self.qs.value("pacs/calling_ae", "MSFM") or "MSFM"))

    def set_pacs(self, ae_title: str, host: str, port: int, calling_ae: str = "MSFM") -> None:
        for k, v in (("ae_title", ae_title), ("host", host), ("port", int(port)), ("calling_ae", calling_ae)):
            self.qs.setValue(f"pacs/{k}", v)

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
        self.research = QCheckBox("Research use: also analyse images outside the model's intended use (marked in every output)")
        self.research.setChecked(settings.research_outside_use)
        self.research.setToolTip("Chest, spine, skull, CT, MR and other images the model was not trained on are normally not labelled.")
        self.layers = {k: QCheckBox(LAYER_LABELS[k]) for k in LAYERS}
        for k, box in self.layers.items():
            box.setChecked(settings.overlay_visible(k))
        self.opacity = QSpinBox()
        self.opacity.setRange(0, 100)
        self.opacity.setSuffix(" %")
        self.opacity.setValue(settings.opacity)
        self.pacs_ae, self.pacs_host, self.pacs_calling = QLineEdit(), QLineEdit(), QLineEdit()
        self.pacs_port = QSpinBox()
        self.pacs_port.setRange(0, 65535)
        cfg = settings.pacs()
        self.pacs_ae.setText(cfg.ae_title if cfg else "")
        self.pacs_host.setText(cfg.host if cfg else "")
        self.pacs_port.setValue(cfg.port if cfg else 104)
        self.pacs_calling.setText(cfg.calling_ae if cfg else "MSFM")
        self.verify_button = QPushButton("Verify (C-ECHO)")
        self.verify_button.clicked.connect(self.verify_pacs)
        self.pacs_status = QLabel("")
        self.pacs_status.setWordWrap(True)
        self._echo = None
        self.error = QLabel("")
        self.error.setStyleSheet("color: #c00000")
        self.error.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Device", self.device)
        form.addRow("Model checkpoint", row)
        form.addRow("Analysis", self.auto)
        form.addRow("", self.research)
        shown = QVBoxLayout()
        for box in self.layers.values():
            shown.addWidget(box)
        form.addRow("Overlays shown", shown)
        form.addRow("Map opacity", self.opacity)
        form.addRow("PACS AE title", self.pacs_ae)
        form.addRow("PACS host", self.pacs_host)
        form.addRow("PACS port", self.pacs_port)
        form.addRow("Our AE title", self.pacs_calling)
        form.addRow(self.verify_button, self.pacs_status)
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

    def pacs_from_form(self):
        from engine.exports.pacs import PacsConfig

        ae, host = self.pacs_ae.text().strip(), self.pacs_host.text().strip()
        if not ae or not host or not self.pacs_port.value():
            return None
        return PacsConfig(ae, host, self.pacs_port.value(), self.pacs_calling.text().strip() or "MSFM")

    def verify_pacs(self) -> None:
        """C-ECHO the PACS in the form, in a worker thread (it may take the whole timeout)."""
        from engine.exports.pacs import echo

        from .workers import run_task

        cfg = self.pacs_from_form()
        if cfg is None:
            self.pacs_status.setText("Enter AE title, host and port first.")
            return
        self.pacs_status.setText(f"Contacting {cfg.describe()}…")
        self.verify_button.setEnabled(False)
        self._echo = run_task(echo, cfg, returned=self._on_echo, errored=self._on_echo)

    def _on_echo(self, result) -> None:
        self.verify_button.setEnabled(True)
        ok, msg = result if isinstance(result, tuple) else (False, str(result))
        self.pacs_status.setText(("✔ " if ok else "✘ ") + msg)

    def done(self, result: int) -> None:  # noqa: D401 (Qt override)
        if self._echo is not None:  # a C-ECHO in flight ends within its timeout
            self._echo.wait()
        super().done(result)

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
        s.research_outside_use = self.research.isChecked()
        for k, box in self.layers.items():
            s.set_overlay_visible(k, box.isChecked())
        s.opacity = self.opacity.value()
        s.set_pacs(self.pacs_ae.text().strip(), self.pacs_host.text().strip(), self.pacs_port.value(), self.pacs_calling.text().strip() or "MSFM")
        super().accept()
