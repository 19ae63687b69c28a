"""Fine-tuning a model on the user's own labelled folder, as one resumable job.

:func:`preview` (:mod:`.folder_check`) reads a folder (labels CSV, MURA layout, or two
class folders), checks that every listed image exists and decodes, and says whether
fine-tuning can start (at least :data:`MIN_PER_CLASS` usable images of each class) and why not. A run cannot
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
from collections.abc import Generator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..atomic import write_json_atomic
from ..data.sources import Sample

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
from ..model.described import describe, file_sha256
from ..train.events import TrainEvent, TrainFinished, TrainMessage, TrainStarted
from ..train.setup import TrainConfig
from .folder_check import (  # noqa: F401  (the folder check's names stay importable from here)
    EXAMPLES_SHOWN,
    MIN_PER_CLASS,
    TRAINING_SPLITS,
    DataPreview,
    FineTuneError,
    check_folder,
    preview,
    require_startable,
)
from .store import ModelStore, now_id

RESUMABLE = ("running", "cancelled", "failed")

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
        base = describe(self.base)
        return TrainConfig(
            data=self.data, out=str(out), backbone=base.backbone, init=self.base, model=base.kind,
            input_size=self.input_size or base.input_size, init_input_size=self.input_size,
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, optimizer="adamw", lr_step=max(1, self.epochs),
            val_fraction=self.val_fraction, seed=self.seed, device=self.device, resume=resume, checkpoint_every=10,
            limit_train=self.limit_train, limit_val=self.limit_val, max_steps_per_epoch=self.max_steps_per_epoch,
            train_output_stride=32,  # steps at 32, validation and the new file at the base's own (ADR 0012)
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
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def run_finetune(run: FineTuneRun, resume: bool = False) -> Iterator[TrainEvent]:
    """Train ``run`` (resuming from its ``last.pt`` when asked), yielding the training
    events. Data that fails the quick check of :func:`preview` (missing or unreadable
    images, too few per class) raises :class:`FineTuneError` before any training and marks
    the job ``failed``. Closing the generator cancels at the next batch: ``last.pt`` stays resumable
    and the job is marked ``cancelled``. CUDA out-of-memory halves the batch and resumes
    (with a :class:`TrainMessage`); a NaN loss or any other failure marks the job
    ``failed`` with the reason and re-raises."""
    from ..train.loop import TrainingError

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
                    import torch

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


def train(cfg: TrainConfig) -> Generator[TrainEvent, None, None]:
    """:func:`engine.train.loop.train`, imported when a run starts: the model code pulls in
    torchvision and timm (seconds), and the app imports this module at launch."""
    from ..train.loop import train as run_training

    return run_training(cfg)


def held_out(run: FineTuneRun) -> list[Sample]:
    """The run's validation images (the same seeded split training used)."""
    from ..train.setup import resolve_splits

    _, val, _, _ = resolve_splits(run.config.train_config(run.dir))
    return val


__all__ = [
    "MIN_PER_CLASS", "FineTuneError", "DataPreview", "preview", "require_startable", "FineTuneConfig", "FineTuneRun", "list_runs",
    "run_finetune", "held_out", "summarize_predictions", "compare_predictions", "compare_models", "ComparisonVerdict",
    "assess_comparison",
]
