"""Frozen configuration dataclasses of the MSFM network (SPEC §3).

Every field is JSON-safe so a config can be stored in a checkpoint's metadata and
restored with :meth:`ModelConfig.from_dict`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from .errors import ConfigError
from .model.registry import NAMES, REGISTRY

#: A key of :data:`engine.model.registry.REGISTRY` (validated when a config is made).
BackboneName = str
#: The backbones one can build, from the registry (one entry adds one).
BACKBONES: tuple[str, ...] = NAMES

#: Window sizes (rows, cols) in feature-grid cells, grouped by scale. The paper lists
#: 6x6, 7x5 | 8x8, 6x10, 7x9 | 10x10, 9x11, 8x12; SPEC §3 adds the transposes because
#: radiographs come in both orientations.
DEFAULT_WINDOW_SCALES: tuple[tuple[tuple[int, int], ...], ...] = (
    ((6, 6), (5, 7), (7, 5)),
    ((8, 8), (6, 10), (10, 6), (7, 9), (9, 7)),
    ((10, 10), (9, 11), (11, 9), (8, 12), (12, 8)),
)
#: Lesion-sized windows (SPEC §3b "Windows that can be lesion-sized"), in cells of the
#: object stage's grid; appended as one extra scale when ``ModelConfig.lesion_windows`` is on.
LESION_WINDOW_SIZES: tuple[tuple[int, int], ...] = ((1, 1), (2, 2), (1, 2), (2, 1))
WINDOW_SCORES: tuple[str, ...] = ("a_o", "class", "product")
FMA_MODES: tuple[str, ...] = ("paper", "saturation", "off")
PAPER_WINDOW_SCALES: tuple[tuple[tuple[int, int], ...], ...] = (
    ((6, 6), (7, 5)),
    ((8, 8), (6, 10), (7, 9)),
    ((10, 10), (9, 11), (8, 12)),
)

STRIDE = 32  # output stride of every supported backbone


def scaled_window_scales(grid_size: int, base=DEFAULT_WINDOW_SCALES, base_grid: int = 14):
    """The paper's windows (defined on a 14 x 14 grid) scaled to another grid size.

    Each side is scaled by ``grid_size / 14``, rounded half up and clamped to
    ``[1, grid_size]``; duplicates within a scale are dropped. On a 14 grid this is
    ``base`` itself.
    """
    if grid_size == base_grid:
        return base
    f = grid_size / base_grid
    out = []
    for scale in base:
        sizes: list[tuple[int, int]] = []
        for h, w in scale:
            hw = (min(grid_size, max(1, int(h * f + 0.5))), min(grid_size, max(1, int(w * f + 0.5))))
            if hw not in sizes:
                sizes.append(hw)
        out.append(tuple(sizes))
    return tuple(out)


@dataclass(frozen=True)
class FMAConfig:
    """Feature-map augmentation (paper §2.6).

    Pixels whose attention is >= ``theta * max`` keep ``r`` of their intensity.
    ``theta_range`` (training only) draws theta uniformly per image.

    ``mode`` (SPEC §3b "FMA variants"): ``"paper"`` as above; ``"saturation"`` darkens only
    pixels that are also within ``saturation_levels`` grey levels (of 255) of the image's own
    maximum (burned-in markers and letters are saturated, bone is not); ``"off"`` skips FMA
    (same as ``enabled=False``, kept as a mode so an inference override needs one key). The
    authors' "mild" variant (keep 0.9, theta ~ U(0.1, 0.4)) is a training-time recipe and is
    not a mode here: it is ``r=0.9, theta_range=(0.1, 0.4), train_only=True``
    (``msfm train --fma-variant mild``).
    """

    enabled: bool = True
    theta: float = 0.6
    r: float = 0.15
    theta_range: tuple[float, float] | None = None
    #: Frozen ImageNet network that gives the attention map.
    network: Literal["efficientnet_lite0", "tf_efficientnet_lite0"] = "efficientnet_lite0"
    mode: Literal["paper", "saturation", "off"] = "paper"
    #: "saturation" mode: grey levels (of 255) below the image maximum that count as saturated.
    saturation_levels: float = 4.0
    #: Apply FMA while training only (the authors' code): an eval-mode model (every
    #: prediction) sees the image as it is.
    train_only: bool = False

    @property
    def active(self) -> bool:
        """Whether FMA runs at all."""
        return self.enabled and self.mode != "off"

    def __post_init__(self) -> None:
        if self.mode not in FMA_MODES:
            raise ConfigError(f"unknown FMA mode {self.mode!r}; choose one of {', '.join(FMA_MODES)}")
        if not 0.0 <= self.saturation_levels <= 255.0:
            raise ConfigError(f"FMA saturation_levels must be in [0, 255], got {self.saturation_levels}")
        if not 0.0 < self.theta <= 1.0:
            raise ConfigError(f"FMA theta must be in (0, 1], got {self.theta}")
        if not 0.0 <= self.r <= 1.0:
            raise ConfigError(f"FMA r must be in [0, 1], got {self.r}")
        if self.theta_range is not None:
            lo, hi = self.theta_range
            if not 0.0 < lo <= hi <= 1.0:
                raise ConfigError(f"FMA theta_range must satisfy 0 < lo <= hi <= 1, got {self.theta_range}")


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines an MSFM network and its inference behaviour.

    ``input_size`` S is the side of the square network input (a multiple of 32); the
    feature grid is ``g = S / 32``. Windows are in grid cells, (rows, cols).
    """

    backbone: str = "resnet50"
    input_size: int = 448
    part_size: int = 224
    class_names: tuple[str, ...] = ("normal", "abnormal")
    abnormal_index: int = 1
    #: None: the paper's windows scaled to this grid (:func:`scaled_window_scales`).
    window_scales: tuple[tuple[tuple[int, int], ...], ...] | None = None
    windows_per_scale: tuple[int, ...] = (2, 2, 3)
    nms_iou: float = 0.25
    gamma: float = 0.8
    threshold: float = 0.5
    #: Weights of (main, object, parts) in the ensemble probability; normalised on use.
    ensemble_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    #: Where the look-closer crop is taken from: the S x S network input, or the
    #: full-resolution source image (more detail when the source is larger than S).
    crop_from: Literal["input", "source"] = "input"
    fma: FMAConfig = field(default_factory=FMAConfig)
    #: Lesion box threshold (SPEC §3b): the box of the connected region of the evidence map
    #: E >= tau * E(peak) around the peak (:func:`engine.evidence.peak_and_box`). Tuned on
    #: validation boxes (``scripts/tune_lesion_tau.py``); a checkpoint without it gets 0.5.
    lesion_tau: float = 0.5
    #: Side of the look-closer crop the object and parts stages see (a multiple of 32); None:
    #: ``input_size`` (the paper). A larger crop gives the object stage a finer grid (640 on a
    #: 320 model: 20 x 20 cells); ``window_scales`` are given on the main grid and scaled to
    #: the object grid (:attr:`object_window_scales`), so windows cover the same share of the crop.
    object_size: int | None = None
    #: Add one scale of lesion-sized windows (:data:`LESION_WINDOW_SIZES`, object-grid cells),
    #: keeping ``lesion_windows_kept`` of them. They feed the evidence map E only: the parts
    #: probability and the eq. 11 fused box use the configured (paper) scales, because the
    #: weights were never trained on views that small.
    lesion_windows: bool = False
    lesion_windows_kept: int = 3
    #: What ranks windows: mean of ``A_o`` (paper), of the object stage's abnormal-class map
    #: ``m_object`` (``"class"``), or of their product after min-max normalising each per image.
    window_score: Literal["a_o", "class", "product"] = "a_o"
    #: What ranks the lesion-sized windows; None: ``window_score``. Ranking only them by the
    #: class map leaves the configured windows, hence the probabilities and the fused box, as
    #: ``window_score`` makes them.
    lesion_window_score: Literal["a_o", "class", "product"] | None = None
    #: Output stride of the object and parts stages (SPEC §3b "Finer features"): 16 runs the
    #: same weights with the last stride-2 stage dilated, so their class maps have 4x the
    #: cells (320 px crop: 20 x 20; 224 px part: 14 x 14). The main stage stays at 32: its
    #: map only places the crop.
    output_stride: Literal[32, 16] = 32
    #: Output stride of the parts stage alone; None: ``output_stride``. The parts stage is
    #: ~60 % of an image's network time (7 windows of 224 px against two 320 px views), so
    #: the object and parts stages' strides are separate switches to measure what each buys.
    part_output_stride: Literal[32, 16] | None = None
    #: How the parts stage's probability pools its windows (SPEC §3b "Part supervision as a
    #: bag"): ``"mean"`` of the per-window softmax (paper), or ``"lse"``, the sigmoid of the
    #: log-mean-exp of the per-window abnormal-vs-normal logit differences
    #: (:func:`engine.model.msfm.bag_logits`): a smooth maximum, so one abnormal window can
    #: carry the image, as a 0.4 % fracture lies in one or two. Models trained with the bag
    #: loss use ``"lse"``.
    parts_pool: Literal["mean", "lse"] = "mean"
    #: How the object and parts stages pool their cells into logits (a v2 option beside
    #: SPEC §3b's, measured in ``docs/model-experiments.md`` "Cell pooling"): ``"mean"``, GAP
    #: then the shared FC (paper), or ``"lse"``, a smooth maximum of the abnormal-class map:
    #: abnormal-vs-normal logit ``b_d + (1/r) log mean exp(r d)`` over the cells'
    #: ``d = (W_abn - W_norm) . F`` (:func:`engine.model.msfm.cell_lse_logits`; Pinheiro &
    #: Collobert, CVPR 2015). A few cells can then carry the label, so training pushes the
    #: map up where the lesion is rather than over the whole view. The main stage keeps GAP:
    #: its map only places the crop.
    cell_pool: Literal["mean", "lse"] = "mean"
    #: Sharpness r of ``"lse"`` cell pooling (r -> 0: the mean, r -> inf: the maximum).
    cell_pool_r: float = 1.0

    def __post_init__(self) -> None:
        if self.backbone not in REGISTRY:
            raise ConfigError(f"unknown backbone {self.backbone!r}; choose one of {', '.join(REGISTRY)}")
        if self.input_size <= 0 or self.input_size % STRIDE:
            raise ConfigError(f"input_size must be a positive multiple of {STRIDE}, got {self.input_size}")
        if self.part_size <= 0:
            raise ConfigError(f"part_size must be positive, got {self.part_size}")
        if self.object_size is not None and (self.object_size <= 0 or self.object_size % STRIDE):
            raise ConfigError(f"object_size must be a positive multiple of {STRIDE}, got {self.object_size}")
        if self.window_score not in WINDOW_SCORES:
            raise ConfigError(f"unknown window_score {self.window_score!r}; choose one of {', '.join(WINDOW_SCORES)}")
        if self.lesion_window_score is not None and self.lesion_window_score not in WINDOW_SCORES:
            raise ConfigError(f"unknown lesion_window_score {self.lesion_window_score!r}; choose one of {', '.join(WINDOW_SCORES)}")
        if self.lesion_windows_kept < 1:
            raise ConfigError("lesion_windows_kept must be >= 1")
        if self.parts_pool not in ("mean", "lse"):
            raise ConfigError(f"parts_pool must be mean or lse, got {self.parts_pool!r}")
        if self.parts_pool == "lse" and len(self.class_names) != 2:
            raise ConfigError("parts_pool 'lse' needs exactly two classes (it pools abnormal-vs-normal logits)")
        if self.cell_pool not in ("mean", "lse"):
            raise ConfigError(f"cell_pool must be mean or lse, got {self.cell_pool!r}")
        if self.cell_pool == "lse" and len(self.class_names) != 2:
            raise ConfigError("cell_pool 'lse' needs exactly two classes (it pools the abnormal-vs-normal map)")
        if not 0.0 < self.cell_pool_r <= 100.0:
            raise ConfigError(f"cell_pool_r must be in (0, 100], got {self.cell_pool_r}")
        if self.output_stride not in (32, 16):
            raise ConfigError(f"output_stride must be 32 or 16, got {self.output_stride!r}")
        if self.part_output_stride not in (None, 32, 16):
            raise ConfigError(f"part_output_stride must be 32, 16 or None, got {self.part_output_stride!r}")
        g = self.grid_size
        if self.window_scales is None:
            object.__setattr__(self, "window_scales", scaled_window_scales(g))
        scales = self.window_scales
        assert scales is not None
        if len(scales) != len(self.windows_per_scale):
            raise ConfigError("window_scales and windows_per_scale must have the same length")
        for scale in scales:
            if not scale:
                raise ConfigError("every window scale needs at least one window size")
            for h, w in scale:
                if not (1 <= h <= g and 1 <= w <= g):
                    raise ConfigError(f"window {h}x{w} does not fit the {g}x{g} grid of input size {self.input_size}")
        if any(k < 1 for k in self.windows_per_scale):
            raise ConfigError("windows_per_scale entries must be >= 1")
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"gamma must be in (0, 1], got {self.gamma}")
        if not 0.0 < self.nms_iou <= 1.0:
            raise ConfigError(f"nms_iou must be in (0, 1], got {self.nms_iou}")
        if not 0 <= self.abnormal_index < len(self.class_names) or len(self.class_names) < 2:
            raise ConfigError("class_names needs >= 2 classes and abnormal_index must index one")
        if sum(self.ensemble_weights) <= 0 or min(self.ensemble_weights) < 0:
            raise ConfigError("ensemble_weights must be non-negative with a positive sum")
        if not 0.0 <= self.lesion_tau <= 1.0:
            raise ConfigError(f"lesion_tau must be in [0, 1], got {self.lesion_tau}")

    @property
    def grid_size(self) -> int:
        return self.input_size // STRIDE

    @property
    def crop_size(self) -> int:
        """Side of the look-closer crop: ``object_size`` or, by default, ``input_size``."""
        return self.object_size or self.input_size

    @property
    def object_grid_size(self) -> int:
        """Cells per side of the object stage's feature grid (``crop_size / output_stride``)."""
        return self.crop_size // self.output_stride

    @property
    def object_window_scales(self) -> tuple[tuple[tuple[int, int], ...], ...]:
        """Window sizes on the object grid: ``window_scales`` scaled from the main grid to the
        object grid (identical when the two agree), plus the lesion scale when it is on."""
        scales = scaled_window_scales(self.object_grid_size, self.window_scales, self.grid_size)
        if self.lesion_windows:
            scales = tuple(scales) + (LESION_WINDOW_SIZES,)
        return tuple(scales)

    @property
    def object_windows_per_scale(self) -> tuple[int, ...]:
        """Windows kept per scale of :attr:`object_window_scales`."""
        return tuple(self.windows_per_scale) + ((self.lesion_windows_kept,) if self.lesion_windows else ())

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_windows(self) -> int:
        """P, all windows the parts stage sees (paper scales + lesion scale)."""
        return sum(self.object_windows_per_scale)

    @property
    def num_paper_windows(self) -> int:
        """The windows of the configured scales: the parts probability and eq. 11 use these."""
        return sum(self.windows_per_scale)

    def with_(self, **changes: Any) -> "ModelConfig":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def parts_stride(self) -> int:
        """Output stride the parts stage runs at (``part_output_stride`` or ``output_stride``)."""
        return int(self.part_output_stride or self.output_stride)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if "fma" in kw and isinstance(kw["fma"], dict):
            fma = dict(kw["fma"])
            if fma.get("theta_range") is not None:
                fma["theta_range"] = tuple(fma["theta_range"])
            kw["fma"] = FMAConfig(**fma)
        if kw.get("window_scales") is not None:
            kw["window_scales"] = tuple(tuple(tuple(int(v) for v in hw) for hw in s) for s in kw["window_scales"])
        for key in ("windows_per_scale", "class_names", "ensemble_weights"):
            if key in kw:
                kw[key] = tuple(kw[key])
        return cls(**kw)
