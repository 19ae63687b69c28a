"""Fine-tuning a model on the user's own labelled folder, as one resumable job.

:func:`preview` reads a folder (labels CSV, MURA layout, or two class folders) and says
what is in it. :func:`run_finetune` drives :func:`engine.train.loop.train` from the
chosen model, records the job in ``runs/<id>/job.json`` (so it can be resumed after the
app restarts), retries with a smaller batch when CUDA runs out of memory, and marks the
job failed with the reason when the loss goes NaN. :func:`compare_models` evaluates the
previous and the new model on the run's held-out validation images, side by side, before
the user decides to accept the new one (:meth:`engine.store.ModelStore.install`).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .checkpoint import describe_checkpoint, file_sha256
from .data.sources import DataError, Sample, load_samples
from .evaluate import predict_samples
from .infer import Predictor
from .metrics import classification_metrics
from .store import ModelStore, now_id, write_json_atomic
from .train.events import TrainEvent, TrainFinished, TrainMessage, TrainStarted
from .train.loop import TrainingError, train
from .train.setup import TrainConfig, resolve_splits

RESUMABLE = ("running", "cancelled", "failed")


@dataclass
class DataPreview:
    """What a labelled folder holds: its layout, counts per body part and class
    (``{"hand": {"0": 40, "1": 12}}``), and the problems found while reading it."""

    path: str
    layout: str = ""
    n: int = 0
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    usable: bool = False

    def class_totals(self) -> dict[str, int]:
        out = {"0": 0, "1": 0}
        for c in self.counts.values():
            for k, v in c.items():
                out[k] = out.get(k, 0) + v
        return out


def preview(path: str | Path) -> DataPreview:
    """Read the labels of ``path`` without decoding images; never raises for bad data."""
    out = DataPreview(str(path))
    try:
        ss = load_samples(path)
    except (DataError, OSError) as exc:
        out.problems.append(str(exc))
        return out
    out.layout, out.n, out.counts, out.problems = ss.layout, len(ss.samples), ss.counts(), list(ss.problems)
    totals = out.class_totals()
    if totals["0"] and totals["1"] and out.n >= 4:
        out.usable = True
    else:
        out.problems.append(f"needs images of both classes (found {totals['0']} normal, {totals['1']} abnormal)")
    return out


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
    def create(cls, store: ModelStore, config: FineTuneConfig) -> "FineTuneRun":
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
    events. Closing the generator cancels at the next batch: ``last.pt`` stays resumable
    and the job is marked ``cancelled``. CUDA out-of-memory halves the batch and resumes
    (with a :class:`TrainMessage`); a NaN loss or any other failure marks the job
    ``failed`` with the reason and re-raises."""
    cfg = run.config
    run.save(status="running", message="")
    outcome, message = "cancelled", "cancelled by the user"
    try:
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


def compare_models(old: str | Path, new: str | Path, samples: Sequence[Sample], device: str = "auto",
                   progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Both models on the same images, each at its own threshold: n, AUC, κ, accuracy,
    sensitivity, specificity, plus each model's SHA-256 and the images that could not be read."""
    out: dict[str, Any] = {}
    total = 2 * len(samples)
    for i, (key, path) in enumerate((("previous", old), ("new", new))):
        predictor = Predictor.from_checkpoint(path, device)
        step = (lambda d, _t, i=i: progress(i * len(samples) + d, total)) if progress else None
        kept, preds, errors = predict_samples(predictor, samples, step)
        m = classification_metrics([s.label for s in kept], [p.probability for p in preds], predictor.model.config.threshold)
        out[key] = {k: m.get(k) for k in ("n", "auc", "kappa", "accuracy", "sensitivity", "specificity")}
        out[key]["sha256"] = predictor.info.sha256
        out[key]["threshold"] = predictor.model.config.threshold
        out["skipped"] = [{"path": p, "reason": r} for p, r in errors]
    return out


__all__ = ["DataPreview", "preview", "FineTuneConfig", "FineTuneRun", "list_runs", "run_finetune", "held_out", "compare_models"]
