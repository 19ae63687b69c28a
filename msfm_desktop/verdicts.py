"""Study and patient verdicts from the open study's per-image results (no Qt).

A study is abnormal when **any** of its images is: the verdict is that of its most
abnormal image (the maximum probability), and it points at that image. Verdicts are
given per patient and per study, never merged across patients, and a verdict over part
of the images says so (``complete`` False), because "normal" over 8 of 20 images is not
"normal".
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.types import Prediction

from .session import FailedResult, ImageRef, OpenStudy, OutOfScopeResult

SEVERITY = {"abnormal": 3, "borderline": 2, "possible": 1, "normal": 0}


@dataclass(frozen=True)
class GroupVerdict:
    """The verdict of one study (or one patient when ``study`` is None).

    ``n_images`` counts images (each frame of a multi-frame file) in the group;
    ``n_analysed`` those with a prediction; ``top`` is the image with the highest
    abnormal probability and ``verdict`` its category at the model's operating points
    (None when nothing was analysed).
    """

    patient: str
    study: str | None
    n_images: int
    n_analysed: int
    n_outside: int
    n_failed: int
    top: ImageRef | None
    top_probability: float | None
    verdict: str | None

    @property
    def complete(self) -> bool:
        return self.n_analysed + self.n_outside + self.n_failed >= self.n_images


def _units(ref: ImageRef) -> list[ImageRef]:
    return [ref.with_frame(f) for f in range(ref.frames)] if ref.frames > 1 else [ref]


def group_verdicts(session: OpenStudy, cal, by: str = "study") -> list[GroupVerdict]:
    """Verdicts per study (``by="study"``) or per patient (``by="patient"``), in tree order."""
    groups: dict[tuple[str, str], list[ImageRef]] = {}
    for ref in session.images:
        key = (ref.patient_key, ref.study_key if by == "study" else "")
        groups.setdefault(key, []).extend(_units(ref))
    out = []
    for refs in groups.values():
        preds: list[tuple[ImageRef, Prediction]] = []
        outside = failed = 0
        for r in refs:
            v = session.result(r)
            if isinstance(v, Prediction):
                preds.append((r, v))
            elif isinstance(v, OutOfScopeResult):
                outside += 1
            elif isinstance(v, FailedResult):
                failed += 1
        top = max(preds, key=lambda rp: rp[1].probability, default=None)
        out.append(GroupVerdict(
            patient=refs[0].patient_label, study=refs[0].study if by == "study" else None, n_images=len(refs),
            n_analysed=len(preds), n_outside=outside, n_failed=failed, top=top[0] if top else None,
            top_probability=top[1].probability if top else None, verdict=cal.verdict(top[1].probability) if top else None,
        ))
    return out
