"""Fine-tuning a model on the user's own labelled folder, as one resumable job.

:func:`preview` reads a folder (labels CSV, MURA layout, or two class folders), checks
that every listed image exists and decodes, and says whether fine-tuning can start
(at least :data:`MIN_PER_CLASS` usable images of each class) and why not. A run cannot
be created (:meth:`FineTuneRun.create`) or started (:func:`run_finetune`) on data that
fails that check, so nothing ever trains on nothing. :func:`run_finetune` drives
:func:`engine.train.loop.train` from the chosen model, records the job in
``runs/<id>/job.json`` (so it can be resumed after the app restarts), retries with a
smaller batch when CUDA runs out of memory, and marks the job failed with the reason when
the loss goes NaN. :func:`compare_models` evaluates the previous and the new model on the
run's held-out validation images, side by side with n and bootstrap 95 % intervals, and
:func:`assess_comparison` says whether the new model may be accepted
(:meth:`engine.library.store.ModelStore.install`) and on which metrics it is worse.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError

from ..atomic import write_json_atomic
from ..data.sources import DataError, Sample, load_samples
from ..errors import ImageLoadError

# The comparison lives in its own module; these names stay importable from here.
from ..evaluation.comparison import (  # noqa: E402,F401
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    CI_LEVEL,
    DECISION_METRICS,
    ComparisonVerdict,
    assess_comparison,
    compare_models,
    compare_predictions,
    summarize_predictions,
)
from ..io import NOT_DICOM, claims_dicom, is_dicom, load_image, read_dataset
from ..model.checkpoint import describe_checkpoint, file_sha256
from ..train.events import TrainEvent, TrainFinished, TrainMessage, TrainStarted
from ..train.loop import TrainingError, train
from ..train.setup import TrainConfig, resolve_splits
from .store import ModelStore, now_id

RESUMABLE = ("running", "cancelled", "failed")

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
    """Read the labels of ``path`` and check every image training would read: that it
    exists and (``decode``, the default) decodes, exactly as training loads it. Only those
    are counted. Never raises for bad data: problems and the reason it cannot start are in
    the result. ``progress(done, total)`` is called per image; ``cancel()`` returning True
    stops early (the result then cannot start). ``decode=False`` checks headers only: a
    quick guard, not a preview to show."""
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
        if cancel is not None and cancel():
            return DataPreview(str(path), ss.layout, len(used), problems=("preview cancelled",), decoded=decode,
                               reason="the check of the images was cancelled")
        bad = _unusable(Path(s.path), decode)
        if bad is None:
            part = counts.setdefault(s.body_part or "all", {})
            part[str(s.label)] = part.get(str(s.label), 0) + 1
            if has_split:
                sc = split_counts.setdefault(s.split, {})
                sc[str(s.label)] = sc.get(str(s.label), 0) + 1
        else:
            (missing if bad[0] == "missing" else undecodable).append((_relative(Path(s.path), base), bad[1]))
        if progress is not None:
            progress(i + 1, len(used))
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


@dataclass
class FineTuneConfig:
    """The one-click defaults: a few epochs from the chosen model at a low learning rate.

    ``input_size`` None keeps the base model's; ``val_fraction`` is held out (stratified)
    when the folder has no validation split of its own."""

    data: str
    base: str
    epochs: int = 3
    batch_size: int = 5
    lr: float = 1e-4
    input_size: int | None = None
    val_fraction: float = 0.2
    device: str = "auto"
    seed: int = 0
    limit_train: int | None = None
    limit_val: int | None = None
    max_steps_per_epoch: int | None = None

    def train_config(self, out: Path, resume: bool = False) -> TrainConfig:
        base = describe_checkpoint(self.base)
        return TrainConfig(
            data=self.data, out=str(out), backbone=base["backbone"], init=self.base, model=base["kind"],
            input_size=self.input_size or base["input_size"], init_input_size=self.input_size,
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, optimizer="adamw", lr_step=max(1, self.epochs),
            val_fraction=self.val_fraction, seed=self.seed, device=self.device, resume=resume, checkpoint_every=10,
            limit_train=self.limit_train, limit_val=self.limit_val, max_steps_per_epoch=self.max_steps_per_epoch,
        )


@dataclass
class FineTuneRun:
    """A fine-tuning job on disk (``job.json`` in its run folder)."""

    dir: Path
    config: FineTuneConfig
    status: str = "running"  # running | cancelled | failed | finished | accepted | rejected
    message: str = ""
    base_sha256: str = ""
    started: str = ""
    updated: str = ""
    device: str = ""

    @property
    def last(self) -> Path:
        return self.dir / "last.pt"

    @property
    def best(self) -> Path:
        return self.dir / "best.pt"

    def resumable(self) -> bool:
        return self.status in RESUMABLE and self.last.is_file()

    def save(self, **changes: Any) -> None:
        for k, v in changes.items():
            setattr(self, k, v)
        self.updated = _dt.datetime.now().isoformat(timespec="seconds")
        write_json_atomic(self.dir / "job.json", {
            "config": asdict(self.config), "status": self.status, "message": self.message, "base_sha256": self.base_sha256,
            "started": self.started, "updated": self.updated, "device": self.device,
        })

    @classmethod
    def load(cls, folder: Path) -> "FineTuneRun | None":
        try:
            job = json.loads((folder / "job.json").read_text(encoding="utf-8"))
            cfg = FineTuneConfig(**job["config"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return cls(folder, cfg, job.get("status", "failed"), job.get("message", ""), job.get("base_sha256", ""),
                   job.get("started", ""), job.get("updated", ""), job.get("device", ""))

    @classmethod
    def create(cls, store: ModelStore, config: FineTuneConfig, checked: DataPreview | None = None) -> "FineTuneRun":
        """Record a new run, after checking its data: ``checked`` is a full (decoding)
        preview of ``config.data`` already made (the app previews off the UI thread);
        without one, the folder is previewed here. Raises :class:`FineTuneError` (and
        creates nothing) when there is too little usable data."""
        if checked is None or checked.path != str(config.data) or not checked.decoded:
            checked = preview(config.data)
        require_startable(checked)
        folder = store.runs_dir / now_id("run")
        folder.mkdir(parents=True, exist_ok=False)
        run = cls(folder, config, base_sha256=file_sha256(config.base), started=_dt.datetime.now().isoformat(timespec="seconds"))
        run.save()
        return run


def list_runs(store: ModelStore) -> list[FineTuneRun]:
    """Every recorded run, newest first."""
    if not store.runs_dir.is_dir():
        return []
    runs = [r for r in (FineTuneRun.load(d) for d in store.runs_dir.iterdir() if d.is_dir()) if r is not None]
    return sorted(runs, key=lambda r: r.started, reverse=True)


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def run_finetune(run: FineTuneRun, resume: bool = False) -> Iterator[TrainEvent]:
    """Train ``run`` (resuming from its ``last.pt`` when asked), yielding the training
    events. Data that fails the quick check of :func:`preview` (missing or unreadable
    images, too few per class) raises :class:`FineTuneError` before any training and marks
    the job ``failed``. Closing the generator cancels at the next batch: ``last.pt`` stays resumable
    and the job is marked ``cancelled``. CUDA out-of-memory halves the batch and resumes
    (with a :class:`TrainMessage`); a NaN loss or any other failure marks the job
    ``failed`` with the reason and re-raises."""
    cfg = run.config
    run.save(status="running", message="")
    outcome, message = "cancelled", "cancelled by the user"
    try:
        # Again here, not only in create(): a run may be resumed days later, after its
        # folder moved or emptied. Headers only, so a large folder costs seconds, not minutes.
        require_startable(preview(cfg.data, decode=False))
        while True:
            gen = train(cfg.train_config(run.dir, resume=resume and run.last.is_file()))
            try:
                for event in gen:
                    if isinstance(event, TrainStarted):
                        run.save(device=event.device)
                    elif isinstance(event, TrainFinished):
                        outcome, message = "finished", ""
                    yield event
                break
            except Exception as exc:
                if _is_oom(exc) and cfg.batch_size > 1:
                    gen.close()
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                    cfg.batch_size = max(1, cfg.batch_size // 2)
                    resume = True
                    run.save()
                    yield TrainMessage("warning", f"the GPU ran out of memory; retrying with batch size {cfg.batch_size}")
                    continue
                raise
            finally:
                gen.close()
    except TrainingError as exc:
        outcome, message = "failed", str(exc)
        raise
    except Exception as exc:
        outcome, message = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        run.save(status=outcome, message=message)


def held_out(run: FineTuneRun) -> list[Sample]:
    """The run's validation images (the same seeded split training used)."""
    _, val, _, _ = resolve_splits(run.config.train_config(run.dir))
    return val


__all__ = [
    "MIN_PER_CLASS", "FineTuneError", "DataPreview", "preview", "require_startable", "FineTuneConfig", "FineTuneRun", "list_runs",
    "run_finetune", "held_out", "summarize_predictions", "compare_predictions", "compare_models", "ComparisonVerdict",
    "assess_comparison",
]
