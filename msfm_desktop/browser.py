"""The study browser (Patient ▸ Study ▸ Series ▸ Image) and the panel of per-file problems."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QTreeWidget, QTreeWidgetItem

from engine.study import StudyIndex

PATH_ROLE = Qt.ItemDataRole.UserRole


class StudyBrowser(QTreeWidget):
    """Tree of a :class:`StudyIndex`; image rows carry their file path in ``PATH_ROLE``."""

    imageActivated = Signal(object)  # Path of the image the user opened

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setHeaderLabels(["Study", "Images"])
        self.setColumnWidth(0, 260)
        self.itemActivated.connect(self._activated)

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
                    se_item = QTreeWidgetItem(s_item, [head or "series", str(len(series.images))])
                    for im in series.images:
                        name = im.path.name + (f"  ({im.frames} frames)" if im.frames > 1 else "")
                        i_item = QTreeWidgetItem(se_item, [name, ""])
                        i_item.setData(0, PATH_ROLE, str(im.path))
                        i_item.setToolTip(0, str(im.path))
            p_item.setExpanded(True)
        for i in range(self.topLevelItemCount()):
            for j in range(self.topLevelItem(i).childCount()):
                self.topLevelItem(i).child(j).setExpanded(True)

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

    def _activated(self, item: QTreeWidgetItem, _column: int) -> None:
        v = item.data(0, PATH_ROLE)
        if v:
            self.imageActivated.emit(Path(v))


class ProblemPanel(QListWidget):
    """One row per file that could not be used: ``name — reason`` (full path as tooltip)."""

    def add_problem(self, path: str | Path, reason: str) -> None:
        item = QListWidgetItem(f"{Path(path).name} — {reason}")
        item.setToolTip(f"{path}\n{reason}")
        self.addItem(item)

    def rows(self) -> list[str]:
        return [self.item(i).text() for i in range(self.count())]


def _date(d: str) -> str:
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else d
