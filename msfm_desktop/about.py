"""Help ▸ About: versions of the application and the libraries it runs on, and the card of
the active model (the bundled ``MODEL_CARD.md`` for the default model; the checkpoint's own
description for any other)."""

from __future__ import annotations

import html
import platform
from importlib import metadata
from pathlib import Path

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTabWidget, QTextBrowser, QVBoxLayout, QWidget

from engine import __version__
from engine.model.described import CheckpointInfo
from engine.resources import DEFAULT_MODEL, MODEL_CARD

LIBRARIES = ("torch", "torchvision", "timm", "numpy", "pydicom", "pylibjpeg", "opencv-python-headless", "pyqtgraph")


def versions() -> dict[str, str]:
    """Installed versions, "not installed" where a library is missing; torch's includes
    its build (``+cpu``, ``+cu130``), and CUDA says which GPU the app would use."""
    import torch

    out = {"MSFM Desktop": __version__, "Python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    import PySide6

    out["torch"] = torch.__version__
    out["PySide6 (Qt)"] = f"{PySide6.__version__} (Qt {PySide6.QtCore.qVersion()})"
    out["CUDA"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available (CPU only)"
    return out


def model_card_markdown(model: Path, info: CheckpointInfo | None) -> str:
    if model == DEFAULT_MODEL and MODEL_CARD.is_file():
        return MODEL_CARD.read_text(encoding="utf-8")
    if info is None:
        return f"# No usable model\n\n`{model}` could not be read."
    lines = [f"# {info.name}", "", f"Checkpoint `{model}`", ""]
    lines += [f"- **{k}**: {v}" for k, v in info.to_json().items() if k not in ("name", "metrics")]
    for k, v in (info.metrics or {}).items():
        lines.append(f"- **val {k}**: {v:.3f}" if isinstance(v, float) else f"- **val {k}**: {v}")
    lines += ["", "_Decision support, not a diagnosis._"]
    return "\n".join(lines)


class AboutDialog(QDialog):
    def __init__(self, model: Path, info: CheckpointInfo | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About MSFM Desktop")
        self.resize(720, 560)
        self.about = about = QTextBrowser()
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td><b>{html.escape(v)}</b></td></tr>" for k, v in versions().items())
        about.setHtml(
            "<h2>MSFM Desktop</h2><p>Weakly supervised abnormality localisation in radiographs: "
            "MSFM (Kumar et al., ICCV 2023 workshops). Offline; nothing leaves this computer "
            "except an explicit PACS send.</p><p><i>Decision support, not a diagnosis.</i></p>"
            f"<table cellpadding='3'>{rows}</table>"
        )
        self.card = QTextBrowser()
        self.card.setMarkdown(model_card_markdown(model, info))
        tabs = QTabWidget()
        tabs.addTab(about, "About")
        tabs.addTab(self.card, "Model card")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(tabs)
        lay.addWidget(buttons)
        self.tabs = tabs
