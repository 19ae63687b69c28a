"""Training configuration, data splits and model construction."""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..config import FMAConfig, ModelConfig
from ..data.sources import DataError, Sample, check_usable, load_samples
from ..errors import ConfigError

#: ``msfm train --fma-variant`` (SPEC §3b "FMA variants").
FMA_VARIANTS: tuple[str, ...] = ("paper", "mild", "saturation", "off")


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``msfm train`` accepts (SPEC §3 optimisation defaults)."""

    data: str
    val: str | None = None
    out: str = "runs/msfm"
    backbone: str = "efficientnet_lite0"
    pretrained: str = "auto"  # auto | none | FILE
    init: str | None = None  # fine-tune from this checkpoint
    init_input_size: int | None = None  # rebuild the --init MSFM at this input size (parts scaled alike)
    model: str = "msfm"  # msfm | plain (the baseline classifier: backbone + GAP + FC)
    input_size: int = 448
    part_size: int = 224
    fma: bool = True
    fma_theta_range: tuple[float, float] | None = None
    crop_from: str | None = None  # input | source; None: input for a new model, an --init MSFM's own
    epochs: int = 10
    batch_size: int = 5
    lr: float | None = None  # None: 1e-3 from random init, 1e-4 from pretrained weights
    optimizer: str = "sgd"  # sgd | adamw
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_step: int | None = None  # epochs per step decay; None: ceil(2/3 of the epochs)
    lr_gamma: float = 0.1
    loss: str = "awfl"
    alpha: float = 0.8
    beta: float = 2.0
    warmup_epochs: int = 0  # epochs of main-stage loss only
    # Wall-clock budget of this invocation (a GPU lease, a lunch hour): after its first epoch
    # the run trains as many epochs as fit (at most ``epochs``) and, unless ``lr_step`` is
    # given, moves the x0.1 step to 2/3 of them. None: train ``epochs``.
    time_budget_s: float | None = None
    # Lesion-localisation training options (SPEC §3b, issue 18); defaults are the v1 recipe.
    fma_variant: str = "paper"  # paper | mild (keep 0.9, theta ~ U(0.1, 0.4), training only) | saturation | off
    parts_loss: str = "paper"  # paper (a loss per window) | bag (one loss on the windows' bag; parts_pool lse)
    window_score: str = "a_o"  # a_o | class | product: what ranks the windows
    output_stride: int = 32  # 32 | 16 for the object and parts stages
    # Stride of the object and part stages in the training steps; None: the model's own.
    # Validation, the threshold and the saved file keep the model's own (fine-tuning the
    # stride-16 default takes its steps at 32: 2.4x faster, as its weights were trained).
    train_output_stride: int | None = None
    # Cell pooling of the object and parts stages (SPEC §3b): mean | lse; None: a fresh model
    # gets mean, an --init MSFM keeps its own. cell_pool_r: lse's sharpness.
    cell_pool: str | None = None
    cell_pool_r: float = 1.0
    freeze_blocks: int = 0  # stem + this many of the backbone's first block stages get no gradient (speed)
    augment: bool = True
    val_fraction: float = 0.15
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # CUDA only
    compile: bool = False  # torch.compile the network (long GPU runs)
    num_workers: int = 0
    checkpoint_every: int = 50  # steps between mid-epoch last.pt saves (0: epoch ends only)
    resume: bool = False
    limit_train: int | None = None
    limit_val: int | None = None
    max_steps_per_epoch: int | None = None
    val_batch_size: int = 8
    tune_threshold: bool = True
    tune_gamma: bool = True

    def __post_init__(self) -> None:
        if self.model not in ("msfm", "plain"):
            raise ConfigError(f"model must be msfm or plain, got {self.model!r}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ConfigError(f"optimizer must be sgd or adamw, got {self.optimizer!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch size must be >= 1")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError("val_fraction must be in (0, 1)")
        if self.fma_variant not in FMA_VARIANTS:
            raise ConfigError(f"fma_variant must be one of {', '.join(FMA_VARIANTS)}, got {self.fma_variant!r}")
        if self.parts_loss not in ("paper", "bag"):
            raise ConfigError(f"parts_loss must be paper or bag, got {self.parts_loss!r}")
        if self.crop_from not in (None, "input", "source"):
            raise ConfigError(f"crop_from must be input or source, got {self.crop_from!r}")
        if self.cell_pool not in (None, "mean", "lse"):
            raise ConfigError(f"cell_pool must be mean or lse, got {self.cell_pool!r}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ConfigError(f"time_budget_s must be > 0 seconds, got {self.time_budget_s!r}")
        if self.freeze_blocks < 0:
            raise ConfigError("freeze_blocks must be >= 0")
        if self.train_output_stride not in (None, 32, 16):
            raise ConfigError(f"train_output_stride must be 32, 16 or None, got {self.train_output_stride!r}")
        if self.compile and getattr(sys, "frozen", False):
            # The desktop bundle leaves Triton out, and torch.compile needs a C compiler.
            raise ConfigError("--compile is not available in the desktop bundle (torch.compile needs Triton and a C "
                              "compiler at run time); train without it, or from a source install")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def default_lr(self, pretrained_weights: bool) -> float:
        return self.lr if self.lr is not None else (1e-4 if pretrained_weights else 1e-3)

    def step_size(self) -> int:
        return self.lr_step or max(1, math.ceil(self.epochs * 2 / 3))

    def plan_epochs(self, epochs_done: int, elapsed_s: float, last_epoch_s: float) -> int:
        """Epochs (counted from 0, resumed ones included) that fit ``time_budget_s``.

        ``elapsed_s``: wall time of this invocation so far; ``last_epoch_s``: the latest
        epoch's time, validation included (the most representative: the first epochs pay for
        worker start-up, a warm-up epoch trains the main stage only). At least
        ``epochs_done``, at most ``epochs``.
        """
        if self.time_budget_s is None:
            return self.epochs
        more = int(max(0.0, self.time_budget_s - elapsed_s) // max(last_epoch_s, 1e-9))
        return max(epochs_done, min(self.epochs, epochs_done + more))

    def model_config(self) -> ModelConfig:
        on = self.fma and self.model == "msfm" and self.fma_variant != "off"
        if self.fma_variant == "mild":
            # The authors' code: keep 90 %, theta ~ U(0.1, 0.4) per image, training only.
            fma = FMAConfig(enabled=on, r=0.9, theta_range=self.fma_theta_range or (0.1, 0.4), train_only=True)
        else:
            mode = "saturation" if self.fma_variant == "saturation" else "paper"
            fma = FMAConfig(enabled=on, theta_range=self.fma_theta_range, mode=mode)  # type: ignore[arg-type]
        return ModelConfig(backbone=self.backbone, input_size=self.input_size, part_size=self.part_size, fma=fma, crop_from=self.crop_from or "input",  # type: ignore[arg-type]
                           window_score=self.window_score, output_stride=self.output_stride,  # type: ignore[arg-type]
                           parts_pool="lse" if self.parts_loss == "bag" else "mean",
                           cell_pool=self.cell_pool or "mean", cell_pool_r=self.cell_pool_r)  # type: ignore[arg-type]


def _balanced_subset(samples: list[Sample], n: int | None) -> list[Sample]:
    """The first ``n`` samples taking classes in turn (deterministic, keeps both classes)."""
    if n is None or n >= len(samples):
        return samples
    by = {0: [s for s in samples if s.label == 0], 1: [s for s in samples if s.label == 1]}
    out: list[Sample] = []
    i = 0
    while len(out) < n and (i < len(by[0]) or i < len(by[1])):
        for c in (1, 0):
            if i < len(by[c]) and len(out) < n:
                out.append(by[c][i])
        i += 1
    return out


def resolve_splits(cfg: TrainConfig) -> tuple[list[Sample], list[Sample], dict[str, Any], list[str]]:
    """Train and validation samples: the source's own ``train``/``val`` splits when it has
    them, ``--val DATA`` when given, else a stratified, seeded hold-out."""
    ss = load_samples(cfg.data)
    problems = list(ss.problems)
    has_split = any(s.split for s in ss.samples)
    train = ss.split("train") if has_split else list(ss.samples)
    if cfg.val:
        vs = load_samples(cfg.val)
        problems += vs.problems
        val = vs.split("val") or vs.samples
    elif has_split:
        val = ss.split("val")
    else:
        val = []
    if not val:
        check_usable(train, str(cfg.data))
        labels = [s.label for s in train]
        from sklearn.model_selection import train_test_split  # 2.5 s import, for this split only

        train, val = train_test_split(train, test_size=cfg.val_fraction, stratify=labels, random_state=cfg.seed)
    train = _balanced_subset(train, cfg.limit_train)
    val = _balanced_subset(val, cfg.limit_val)
    check_usable(train, f"{cfg.data} (training split)")
    if not val:
        raise DataError(f"{cfg.data}: no validation images")
    summary = {
        "source": Path(cfg.data).name,
        "layout": ss.layout,
        "n_train": len(train),
        "n_val": len(val),
        "train_counts": {"0": sum(s.label == 0 for s in train), "1": sum(s.label == 1 for s in train)},
        "val_counts": {"0": sum(s.label == 0 for s in val), "1": sum(s.label == 1 for s in val)},
        "body_parts": sorted({s.body_part for s in train if s.body_part}),
    }
    return train, val, summary, problems
