"""Plain-data events of the training generator (:func:`engine.train.loop.train`).

A front end consumes them to draw progress and curves; closing the generator cancels the
run at the next batch, after saving a resumable ``last.pt``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union


@dataclass(frozen=True)
class TrainStarted:
    run_dir: str
    device: str
    n_train: int
    n_val: int
    epochs: int
    steps_per_epoch: int
    start_epoch: int
    start_step: int
    data: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BatchEnd:
    epoch: int  # 0-based
    step: int  # 1-based within the epoch
    steps: int
    losses: dict[str, float]  # main / object / parts / total
    lr: float
    images: int
    seconds: float
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class EpochEnd:
    epoch: int
    train_loss: float
    val: dict[str, Any] | None
    best: bool
    seconds: float
    seconds_per_image: float


@dataclass(frozen=True)
class CheckpointSaved:
    path: str
    kind: str  # "last" | "best" | "cancel"
    sha256: str


@dataclass(frozen=True)
class TrainMessage:
    level: str  # "info" | "warning"
    text: str


@dataclass(frozen=True)
class TrainFinished:
    run_dir: str
    best_path: str | None
    last_path: str
    best_metrics: dict[str, Any] | None


TrainEvent = Union[TrainStarted, BatchEnd, EpochEnd, CheckpointSaved, TrainMessage, TrainFinished]
