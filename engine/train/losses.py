"""The paper's losses (§2.2, eq. 6-9; SPEC §3).

For a stage with logits (N, K) and integer targets (N,), with per-sample cross entropy
``CE_i`` and per-sample class weight ``w_i`` (WCE, by body part):

* ``ce``   : mean_i CE_i
* ``wce``  : mean_i w_i CE_i                                   (eq. 6)
* ``mfl``  : mean_i (1 - exp(-CE_i))^beta CE_i                  (eq. 7)
* ``afl``  : alpha (1 - exp(-CE))^beta CE, CE = mean_i CE_i      (eq. 8)
* ``awfl`` : alpha (1 - exp(-WCE))^beta WCE, WCE as above       (eq. 8 on eq. 6; default)

Total (eq. 9) = L(main) + L(object) + sum over the 7 parts of L(part_i).

``parts="bag"`` (SPEC §3b "Part supervision as a bag") replaces the sum over the parts by
one loss, weight 1, on the bag logits of the configured windows
(:func:`engine.model.msfm.bag_logits`): a fracture lies in one or two of the 7 windows, so
the image label says that *some* window is abnormal, not each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

LossName = Literal["ce", "wce", "mfl", "afl", "awfl"]
LOSSES: tuple[str, ...] = ("ce", "wce", "mfl", "afl", "awfl")


@dataclass(frozen=True)
class LossConfig:
    name: str = "awfl"
    alpha: float = 0.8
    beta: float = 2.0


def body_part_weights(labels: Sequence[int], parts: Sequence[str]) -> dict[str, tuple[float, float]]:
    """Class weights per body part j from training counts: ``(w_neg, w_pos)`` with
    ``w_pos = N_neg / N`` and ``w_neg = N_pos / N`` (the rarer class weighs more).
    A part with a single class falls back to the weights of the whole set."""
    def weights(c: Counter) -> tuple[float, float]:
        n = c[0] + c[1]
        return (c[1] / n, c[0] / n) if n and c[0] and c[1] else (0.5, 0.5)

    overall = weights(Counter(labels))
    per: dict[str, Counter] = {}
    for y, p in zip(labels, parts):
        per.setdefault(p, Counter())[y] += 1
    out = {p: (weights(c) if c[0] and c[1] else overall) for p, c in per.items()}
    out["*"] = overall
    return out


def sample_weights(labels: Tensor, parts: Sequence[str], table: dict[str, tuple[float, float]]) -> Tensor:
    """(N,) weight of each sample's class within its body part (``*`` for unknown parts)."""
    w = [table.get(p, table["*"])[int(y)] for y, p in zip(labels.tolist(), parts)]
    return torch.tensor(w, dtype=torch.float32, device=labels.device)


def stage_loss(logits: Tensor, target: Tensor, cfg: LossConfig, weights: Tensor | None = None) -> Tensor:
    """Loss of one stage: logits (N, K), target (N,), weights (N,) for wce/awfl."""
    ce = F.cross_entropy(logits.float(), target, reduction="none")
    name = cfg.name
    if name == "ce":
        return ce.mean()
    if name in ("wce", "awfl"):
        if weights is None:
            raise ValueError(f"loss {name} needs per-sample weights")
        wce = (weights * ce).mean()
        if name == "wce":
            return wce
        return cfg.alpha * (1 - torch.exp(-wce)) ** cfg.beta * wce
    if name == "mfl":
        return ((1 - torch.exp(-ce)) ** cfg.beta * ce).mean()
    if name == "afl":
        m = ce.mean()
        return cfg.alpha * (1 - torch.exp(-m)) ** cfg.beta * m
    raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")


def msfm_loss(main: Tensor, obj: Tensor | None, parts: Tensor | None, target: Tensor, cfg: LossConfig, weights: Tensor | None = None,
              parts_loss: str = "paper", abnormal_index: int = 1, n_parts: int | None = None) -> dict[str, Tensor]:
    """Eq. 9. ``main``/``obj``: (B, K); ``parts``: (B, P, K). ``obj``/``parts`` None: main only
    (warm-up epoch, or the plain-classifier baseline). ``parts_loss``: ``"paper"`` (one loss
    per window) or ``"bag"`` (one loss on the bag of the first ``n_parts`` windows, the
    configured ones; None: all)."""
    out = {"main": stage_loss(main, target, cfg, weights)}
    total = out["main"]
    if obj is not None and parts is not None:
        out["object"] = stage_loss(obj, target, cfg, weights)
        if parts_loss == "bag":
            from ..model.msfm import bag_logits

            out["parts"] = stage_loss(bag_logits(parts[:, :n_parts], abnormal_index), target, cfg, weights)
        elif parts_loss == "paper":
            out["parts"] = sum(stage_loss(parts[:, i], target, cfg, weights) for i in range(parts.shape[1]))  # type: ignore[assignment]
        else:
            raise ValueError(f"unknown parts_loss {parts_loss!r}; choose paper or bag")
        total = total + out["object"] + out["parts"]
    out["total"] = total
    return out
