"""The open study: one object that owns everything derived from what the user opened.

Patient safety rests on this module. The main window holds exactly one
:class:`OpenStudy`; opening anything else (another folder, a file, an empty folder, a
path that does not exist) *replaces* it, so the images, the shown image, every
prediction, the study verdict and the export selection go away together. Workers are
started with the session's ``token`` and their late results are dropped when it no
longer matches (:meth:`OpenStudy.accepts`).

Every image is an :class:`ImageRef` that names its patient, study and file (and frame),
so a finding, a table row and an export can always say whom it belongs to.

No Qt here: plain data, tested without a display.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Union

from engine.io.study import StudyIndex

_tokens = itertools.count(1)

NO_PATIENT = "(no name)"  # as the study tree shows it


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 image``, ``2 images``, ``0 images``."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


@dataclass(frozen=True)
class ImageRef:
    """One image of the open study and whom it belongs to.

    ``frame`` is the 0-based frame of a multi-frame DICOM (None for single-frame
    images); ``frames`` is how many the file holds. ``patient``/``study`` are display
    names; ``patient_key``/``study_key`` group images for verdicts.
    """

    path: Path
    frame: int | None
    frames: int
    patient: str
    patient_id: str
    study: str
    patient_key: str
    study_key: str
    modality: str = ""

    @property
    def key(self) -> tuple[str, int]:
        return (str(self.path), self.frame or 0)

    @property
    def image_name(self) -> str:
        """``file``, or ``file, frame k of n`` for multi-frame images."""
        if self.frames > 1:
            return f"{self.path.name}, frame {(self.frame or 0) + 1} of {self.frames}"
        return self.path.name

    @property
    def patient_label(self) -> str:
        if self.patient_id and self.patient_id not in self.patient:
            return f"{self.patient} [{self.patient_id}]"
        return self.patient

    def describe(self) -> str:
        """One line naming patient, study and image: what every finding is headed with."""
        return f"Patient {self.patient_label} · Study {self.study} · Image {self.image_name}"

    def with_frame(self, frame: int) -> "ImageRef":
        from dataclasses import replace

        return replace(self, frame=frame if self.frames > 1 else None)


@dataclass(frozen=True)
class OutOfScopeResult:
    """An image the model was not run on: it is outside the model's intended use."""

    reason: str


@dataclass(frozen=True)
class FailedResult:
    """An image that could not be decoded or analysed, with the reason."""

    reason: str


#: What the session knows of one image: a Prediction, or why there is none.
Result = Union["Prediction", OutOfScopeResult, FailedResult]  # noqa: F821 (engine.types.Prediction)


@dataclass
class StudyRun:
    """Progress of Analyse ▸ Analyse study over the session's images."""

    total: int
    done: int = 0
    cancelled: bool = False
    finished: bool = False

    @property
    def complete(self) -> bool:
        return self.finished and not self.cancelled and self.done >= self.total


@dataclass
class OpenStudy:
    """Everything derived from one opened path. Never reused for another path.

    ``state``: ``scanning`` while indexing, ``ready`` with images, ``empty`` (opened, no
    usable image) or ``failed`` (could not be opened); ``message`` says why for the last two.
    """

    path: str | None = None
    state: Literal["none", "scanning", "ready", "empty", "failed"] = "none"
    message: str = ""
    index: StudyIndex | None = None
    images: list[ImageRef] = field(default_factory=list)
    current: ImageRef | None = None
    results: dict[tuple[str, int], object] = field(default_factory=dict)
    run: StudyRun | None = None
    token: int = field(default_factory=lambda: next(_tokens))
    _truth: dict[str, list] = field(default_factory=dict)

    # ----- building
    @classmethod
    def opening(cls, path: str | Path) -> "OpenStudy":
        return cls(path=str(path), state="scanning")

    def set_index(self, index: StudyIndex) -> None:
        """Take the scan's result; the session is ``ready`` only with at least one image."""
        self.index = index
        self.images = list(refs_from_index(index))
        if self.images:
            self.state = "ready"
            self.message = ""
            return
        self.state = "failed" if any(p.reason == "no such file or folder" for p in index.problems) else "empty"
        if index.cancelled:
            self.message = "scan cancelled before any image was found"
        elif index.problems:
            self.message = f"no usable image: {plural(len(index.problems), 'file')} could not be used (see Problems)"
        else:
            self.message = "no PNG, JPEG or DICOM image in it"
        if self.state == "failed":
            self.message = "no such file or folder"

    # ----- lookups
    def accepts(self, token: int) -> bool:
        """Whether a worker started for session ``token`` may still deliver into this one."""
        return token == self.token

    def ref_for(self, path: str | Path, frame: int | None = None) -> ImageRef | None:
        """The image of this session at ``path`` (and frame), or None if it is not one of ours."""
        p = Path(path)
        for ref in self.images:
            if ref.path == p:
                return ref.with_frame(frame or 0) if ref.frames > 1 else ref
        return None

    def reference_boxes(self, ref: ImageRef) -> list:
        """Reference boxes of ``ref`` (xyxy source pixels) from a boxes.csv of its folder,
        read once per image; [] for DICOM frames and images without any."""
        from engine.data.sources import reference_boxes

        key = str(ref.path)
        if key not in self._truth:
            self._truth[key] = [] if ref.frames > 1 else reference_boxes(ref.path)
        return self._truth[key]

    def paths(self) -> list[Path]:
        return [r.path for r in self.images]

    def result(self, ref: ImageRef | None) -> object | None:
        return None if ref is None else self.results.get(ref.key)

    def store(self, ref: ImageRef, result: object) -> None:
        self.results[ref.key] = result

    def predictions(self) -> list:
        """Every prediction of this session, in image order (frames in order)."""
        from engine.types import Prediction

        order = {str(r.path): i for i, r in enumerate(self.images)}
        items = [(k, v) for k, v in self.results.items() if isinstance(v, Prediction)]
        items.sort(key=lambda kv: (order.get(kv[0][0], 1 << 30), kv[0][1]))
        return [v for _, v in items]

    def outside_use(self) -> list[tuple[ImageRef, str]]:
        out = []
        for ref in self.images:
            for key, v in self.results.items():
                if key[0] == str(ref.path) and isinstance(v, OutOfScopeResult):
                    out.append((ref.with_frame(key[1]), v.reason))
        return out


def refs_from_index(index: StudyIndex) -> Iterable[ImageRef]:
    """One :class:`ImageRef` per image file of the index, in tree order."""
    for patient in index.patients.values():
        name = patient.name if patient.name.strip("^ ") else NO_PATIENT
        for study in patient.studies.values():
            parts = [_date(study.date), study.description, study.accession and f"acc. {study.accession}"]
            label = " ".join(x for x in parts if x) or "(no description)"
            for series in study.series.values():
                for im in series.images:
                    yield ImageRef(
                        path=Path(im.path), frame=0 if im.frames > 1 else None, frames=max(1, im.frames), patient=name,
                        patient_id=patient.patient_id, study=label, patient_key=patient.key, study_key=study.key,
                        modality=im.modality or series.modality,
                    )


def _date(d: str) -> str:
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else d
