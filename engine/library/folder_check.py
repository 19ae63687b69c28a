"""Checking a labelled folder before fine-tuning on it (:func:`check_folder`, :func:`preview`).

A folder (labels CSV, MURA layout, or two class folders) is read as training would read
it; every listed image is checked to exist and decode, and the answer says whether
fine-tuning can start (at least :data:`MIN_PER_CLASS` usable images of each class) and
why not. Bad data never raises here: the problems are in the :class:`DataPreview`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..data.sources import DataError, load_samples
from ..errors import Cancelled, ImageLoadError
from ..io import NOT_DICOM, claims_dicom, is_dicom, load_image, read_dataset
from ..tasks import Progress, drive

#: Fewest usable (found and decoded) images of each class that fine-tuning starts with.
#: Below this the held-out comparison has a handful of images per class and says nothing.
MIN_PER_CLASS = 10
#: How many unusable files a preview names (the rest are counted).
EXAMPLES_SHOWN = 3
#: Splits that training reads when a source has splits (``resolve_splits``); others are unused.
TRAINING_SPLITS = ("train", "val")


class FineTuneError(DataError):
    """Fine-tuning cannot start on this data; the message says why."""


@dataclass(frozen=True)
class DataPreview:
    """What a labelled folder holds, counting only images that exist and decode.

    ``n_listed``: images the layout lists that training would read (other splits such as
    ``test`` are counted in ``n_unused``); ``n``: those usable; ``counts``: usable images
    per body part and class (``{"hand": {"0": 40, "1": 12}}``); ``split_counts``: usable
    images per split and class when the source has splits. ``n_missing`` were not found,
    ``n_undecodable`` were found but could not be decoded; ``unusable_examples`` names the
    first few of each as ``(path, reason)``. ``decoded`` is False for the quick check
    (headers only) that :func:`run_finetune` repeats. ``can_start`` says whether a run may
    start; ``reason`` says why not (empty when it may)."""

    path: str
    layout: str = ""
    n_listed: int = 0
    n: int = 0
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    split_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    n_missing: int = 0
    n_undecodable: int = 0
    n_unused: int = 0
    unusable_examples: tuple[tuple[str, str], ...] = ()
    problems: tuple[str, ...] = ()
    decoded: bool = True
    can_start: bool = False
    reason: str = ""

    def class_totals(self) -> dict[str, int]:
        """Usable images per class: ``{"0": normal, "1": abnormal}``."""
        out = {"0": 0, "1": 0}
        for c in self.counts.values():
            for k, v in c.items():
                out[k] = out.get(k, 0) + v
        return out


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _unreadable_header(path: Path) -> str | None:
    """The quick check: why ``path`` cannot be an image, from its header alone (None: it
    looks like one). Misses damage in the pixel data; :func:`preview` decodes for that."""
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        if is_dicom(path):
            # defer_size: element values above 1 KB (the pixels) are not read, only located.
            ds = read_dataset(path, defer_size="1 KB")
            if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
                return "DICOM without pixel data; not an image"
            return None
        if claims_dicom(path):
            return NOT_DICOM
        with Image.open(path) as im:
            if im.format not in ("PNG", "JPEG"):
                return f"unsupported image format {im.format or 'unknown'} (PNG, JPEG or DICOM expected)"
    except UnidentifiedImageError:
        return "not a PNG, JPEG or DICOM file"
    except Exception as exc:  # parsers raise many types on damaged headers; all mean "unusable"
        return f"unreadable header: {type(exc).__name__}: {exc}"
    return None


def _unusable(path: Path, decode: bool) -> tuple[str, str] | None:
    """``("missing" | "undecodable", reason)`` for a file training could not use, else None.
    With ``decode`` the file is decoded exactly as training will (:func:`engine.io.load_image`)."""
    if not path.is_file():
        return ("missing", "is a folder, not an image file" if path.is_dir() else "file not found")
    if not decode:
        reason = _unreadable_header(path)
        return None if reason is None else ("undecodable", reason)
    try:
        load_image(path)
    except ImageLoadError as exc:
        return ("undecodable", exc.reason)
    except Exception as exc:  # a decoder bug must not stop the preview; the file is unusable all the same
        return ("undecodable", f"{type(exc).__name__}: {exc}")
    return None


def _start_verdict(totals: dict[str, int], split_counts: dict[str, dict[str, int]], n_listed: int, n_missing: int, n_undecodable: int) -> str:
    """Why fine-tuning cannot start on these usable counts ("" when it can)."""
    if n_listed == 0:
        return "the folder lists no images that training would read"
    if totals["0"] + totals["1"] == 0:
        return (f"none of the {n_listed} listed images can be used ({n_missing} not found, {n_undecodable} could not be decoded); "
                "nothing to train on")
    if totals["0"] < MIN_PER_CLASS or totals["1"] < MIN_PER_CLASS:
        return (f"too few usable images: {totals['0']} normal and {totals['1']} abnormal; fine-tuning needs at least "
                f"{MIN_PER_CLASS} of each class")
    if not split_counts:
        return ""  # no splits of its own: training holds out a stratified share, so both classes are in both parts
    for split, role in (("train", "training"), ("val", "held-out validation")):
        c = split_counts.get(split)
        if split == "val" and not c:
            continue  # no validation split: a stratified share of the training split is held out
        for k, name in (("0", "normal"), ("1", "abnormal")):
            if not (c or {}).get(k):
                return (f"the {role} split ({split!r}) has no usable {name} images; both classes are needed"
                        + (" for the held-out comparison" if split == "val" else ""))
    return ""


def preview(path: str | Path, decode: bool = True, progress: Callable[[int, int], None] | None = None,
            cancel: Callable[[], bool] | None = None) -> DataPreview:
    """:func:`check_folder` run to its end: ``progress(done, total)`` per image;
    ``cancel()`` returning True stops early (the result then cannot start)."""
    report = None if progress is None else (lambda p: progress(p.done, p.total))
    result = drive(check_folder(path, decode), report, cancel)
    assert result is not None  # check_folder returns on cancel too
    return result


def check_folder(path: str | Path, decode: bool = True) -> Generator[Progress, None, DataPreview]:
    """Read the labels of ``path`` and check every image training would read: that it
    exists and (``decode``, the default) decodes, exactly as training loads it. Only those
    are counted. A task (:mod:`engine.tasks`): yields :class:`~engine.tasks.Progress` per
    image and returns the :class:`DataPreview`; never raises for bad data: problems and
    the reason it cannot start are in the result. :class:`~engine.errors.Cancelled` thrown in
    returns a preview that cannot start. ``decode=False`` checks headers only: a quick guard,
    not a preview to show."""
    root = Path(path)
    try:
        ss = load_samples(path)
    except (DataError, OSError) as exc:
        msg = str(exc)
        return DataPreview(str(path), problems=(msg,), decoded=decode, reason=msg)
    has_split = any(s.split for s in ss.samples)
    used = [s for s in ss.samples if s.split in TRAINING_SPLITS] if has_split else list(ss.samples)
    unused = {s.split or "no split" for s in ss.samples} - set(TRAINING_SPLITS) if has_split else set()
    counts: dict[str, dict[str, int]] = {}
    split_counts: dict[str, dict[str, int]] = {}
    missing: list[tuple[str, str]] = []
    undecodable: list[tuple[str, str]] = []
    base = root if root.is_dir() else root.parent
    for i, s in enumerate(used):
        bad = _unusable(Path(s.path), decode)
        if bad is None:
            part = counts.setdefault(s.body_part or "all", {})
            part[str(s.label)] = part.get(str(s.label), 0) + 1
            if has_split:
                sc = split_counts.setdefault(s.split, {})
                sc[str(s.label)] = sc.get(str(s.label), 0) + 1
        else:
            (missing if bad[0] == "missing" else undecodable).append((_relative(Path(s.path), base), bad[1]))
        try:
            yield Progress(i + 1, len(used))
        except Cancelled:
            return DataPreview(str(path), ss.layout, len(used), problems=("preview cancelled",), decoded=decode,
                               reason="the check of the images was cancelled")
    problems = list(ss.problems)
    if missing:
        hint = (" (file names in labels.csv are read relative to the images/ folder beside it, or to its own folder "
                "when there is none)" if ss.layout == "labels-csv" else "")
        problems.append(f"{len(missing)} of {len(used)} listed images not found{hint}: "
                        + ", ".join(p for p, _ in missing[:EXAMPLES_SHOWN]) + (" …" if len(missing) > EXAMPLES_SHOWN else ""))
    if undecodable:
        problems.append(f"{len(undecodable)} of {len(used)} images could not be {'decoded' if decode else 'read'}: "
                        + "; ".join(f"{p}: {r}" for p, r in undecodable[:EXAMPLES_SHOWN]) + (" …" if len(undecodable) > EXAMPLES_SHOWN else ""))
    n_unused = len(ss.samples) - len(used)
    if n_unused:
        problems.append(f"{n_unused} images in other splits ({', '.join(sorted(unused))}) are not used for fine-tuning")
    counts = {k: counts[k] for k in sorted(counts)}
    out = DataPreview(str(path), ss.layout, len(used), sum(sum(c.values()) for c in counts.values()), counts, split_counts,
                      len(missing), len(undecodable), n_unused,
                      tuple(missing[:EXAMPLES_SHOWN] + undecodable[:EXAMPLES_SHOWN]), tuple(problems), decode)
    totals = out.class_totals()
    reason = _start_verdict(totals, split_counts, len(used), len(missing), len(undecodable))
    return replace(out, can_start=not reason, reason=reason)


def require_startable(p: DataPreview) -> None:
    """Raise :class:`FineTuneError` with the reason when ``p`` says fine-tuning cannot start."""
    if not p.can_start:
        raise FineTuneError(f"cannot fine-tune on {p.path}: {p.reason}")
