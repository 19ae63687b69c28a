"""The study browser (Patient ▸ Study ▸ Series ▸ Image) and the panel of per-file problems."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QTreeWidget, QTreeWidgetItem

from engine.io.study import StudyIndex

PATH_ROLE = Qt.ItemDataRole.UserRole


class StudyBrowser(QTreeWidget):
    """Tree of a :class:`StudyIndex`; image rows carry their file path in ``PATH_ROLE``."""

    imageActivated = Signal(object)  # Path of the image the user opened
    thumbnailsWanted = Signal(object)  # list[Path] of image rows now on screen without an icon

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setHeaderLabels(["Study", "Images"])
        self.setColumnWidth(0, 260)
        self.setIconSize(QSize(48, 48))
        self.itemActivated.connect(self._activated)
        # A single click or a keyboard move opens the image: a highlighted row must never
        # sit beside another image in the viewer.
        self.currentItemChanged.connect(lambda item, _prev: self._activated(item, 0) if item is not None else None)
        self._rows: dict[Path, QTreeWidgetItem] = {}
        # Scrolling and expanding emit many events; ask for thumbnails once they settle.
        self._visible_timer = QTimer(self, singleShot=True, interval=50)
        self._visible_timer.timeout.connect(self._emit_visible)
        self.verticalScrollBar().valueChanged.connect(lambda _v: self._visible_timer.start())
        self.itemExpanded.connect(lambda _i: self._visible_timer.start())

    def clear(self) -> None:
        self._rows = {}
        super().clear()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        super().resizeEvent(event)
        self._visible_timer.start()

    def visible_paths(self) -> list[Path]:
        """Image rows whose rectangle is on screen now (collapsed rows have none)."""
        view = self.viewport().rect()
        return [p for p, it in self._rows.items() if self.visualItemRect(it).intersects(view)]

    def _emit_visible(self) -> None:
        want = [p for p in self.visible_paths() if self._rows[p].icon(0).isNull()]
        if want:
            self.thumbnailsWanted.emit(want)

    def set_thumbnail(self, path: str | Path, thumb: np.ndarray) -> None:
        """Show a (h, w) uint8 thumbnail as the icon of ``path``'s row (if still listed)."""
        item = self._rows.get(Path(path))
        if item is None:
            return
        t = np.ascontiguousarray(thumb, dtype=np.uint8)
        image = QImage(t.data, t.shape[1], t.shape[0], t.strides[0], QImage.Format.Format_Grayscale8).copy()
        item.setIcon(0, QIcon(QPixmap.fromImage(image)))

    def set_index(self, index: StudyIndex) -> None:
        self.clear()
        for patient in index.patients.values():
            n_p = sum(len(se.images) for st in patient.studies.values() for se in st.series.values())
            label = patient.name if patient.name.strip("^ ") else "(no name)"
            if patient.patient_id and patient.patient_id not in label:
                label += f"  [{patient.patient_id}]"
            p_item = QTreeWidgetItem(self, [label, str(n_p)])
            for study in patient.studies.values():
                n_s = sum(len(se.images) for se in study.series.values())
                text = " ".join(x for x in (_date(study.date), study.description or "study", study.accession and f"acc. {study.accession}") if x)
                if study.label is not None:
                    text += "  (labelled abnormal)" if study.label else "  (labelled normal)"
                s_item = QTreeWidgetItem(p_item, [text, str(n_s)])
                for series in study.series.values():
                    head = " ".join(x for x in (series.number is not None and f"#{series.number}" or "", series.modality, series.description) if x)
                    if study.key.startswith("folder:") and series.key == study.key:
                        se_item = s_item  # a PNG/JPEG folder is its own study and series: one level, not "images ▸ images"
                    else:
                        se_item = QTreeWidgetItem(s_item, [head or "series", str(len(series.images))])
                    for im in series.images:
                        name = im.path.name + (f"  ({im.frames} frames)" if im.frames > 1 else "")
                        i_item = QTreeWidgetItem(se_item, [name, ""])
                        i_item.setData(0, PATH_ROLE, str(im.path))
                        i_item.setToolTip(0, str(im.path))
                        self._rows[Path(im.path)] = i_item
        self.expandAll()
        self._visible_timer.start()

    def image_paths(self) -> list[Path]:
        """Every image row's path, in tree order."""
        out: list[Path] = []

        def walk(item: QTreeWidgetItem) -> None:
            v = item.data(0, PATH_ROLE)
            if v:
                out.append(Path(v))
            for k in range(item.childCount()):
                walk(item.child(k))

        for i in range(self.topLevelItemCount()):
            walk(self.topLevelItem(i))
        return out

    def select_path(self, path: str | Path) -> None:
        """Make ``path``'s row the current one (the tree follows PgDn/PgUp) without
        re-opening it."""
        item = self._rows.get(Path(path))
        if item is not None and self.currentItem() is not item:
            self.blockSignals(True)
            self.setCurrentItem(item)
            self.blockSignals(False)
            self.scrollToItem(item)

    def _activated(self, item: QTreeWidgetItem, _column: int) -> None:
        v = item.data(0, PATH_ROLE)
        if v:
            self.imageActivated.emit(Path(v))


class ProblemPanel(QListWidget):
    """One row per file that could not be used: ``name — reason`` (full path as tooltip).
    The same file and reason, found again (on opening, thumbnailing, analysing), is listed once.
    ``countChanged`` keeps the status bar's count equal to what the panel lists."""

    countChanged = Signal(int)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._keys: set[str] = set()

    def clear(self) -> None:
        self._keys.clear()
        super().clear()
        self.countChanged.emit(0)

    def add_problem(self, path: str | Path, reason: str) -> None:
        key = f"{path}\n{reason}"
        if key in self._keys:
            return
        self._keys.add(key)
        item = QListWidgetItem(f"{Path(path).name} — {reason}")
        item.setToolTip(key)
        self.addItem(item)
        self.countChanged.emit(self.count())

    def rows(self) -> list[str]:
        return [self.item(i).text() for i in range(self.count())]

    def reason_for(self, path: str | Path) -> str | None:
        """The first reason listed for ``path``, None when it has no problem."""
        prefix = f"{path}\n"
        return next((k[len(prefix):] for k in sorted(self._keys) if k.startswith(prefix)), None)


def _date(d: str) -> str:
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else d
