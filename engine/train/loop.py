"""The training loop as a generator of plain-data events (SPEC §3, issue 3).

``for event in train(cfg): ...`` runs one epoch after another, validating on the
validation split after each and keeping the best model by Cohen's κ. Closing the
generator (``gen.close()``, or breaking out of the loop) cancels at the next batch and
leaves a resumable ``last.pt``. Run it under ``torchrun --nproc_per_node=N`` for DDP.

Files in ``cfg.out``: ``last.pt`` (resumable: optimiser, scheduler, epoch, step),
``best.pt`` (best κ on validation, with the κ-tuned threshold, validation-tuned γ and
the validation calibration in ``meta["calibration"]``, :mod:`engine.model.calibration`),
``history.json``.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Generator
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler

from ..accel import amp_context, prepare_for_device, to_device
from ..data.dataset import AugmentConfig, RadiographDataset, collate
from ..device import resolve_device
from ..errors import MSFMError
from ..evaluation.evaluate import evaluate_predictions, plain_outputs, predict_samples, tune_gamma
from ..evaluation.metrics import best_kappa_threshold, classification_metrics
from ..infer import Predictor
from ..model.calibration import MAP_KINDS, calibrate
from ..model.checkpoint import load_checkpoint, save_checkpoint, state_sha256
from ..model.msfm import MSFM
from ..types import ModelInfo
from . import ddp
from .events import BatchEnd, CheckpointSaved, EpochEnd, TrainEvent, TrainFinished, TrainMessage, TrainStarted
from .losses import LossConfig, body_part_weights, msfm_loss, sample_weights
from .setup import TrainConfig, resolve_splits


class TrainingError(MSFMError):
    """Training cannot go on (NaN loss, nothing to resume, ...)."""


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch, sharded over DDP ranks, that can skip what a resumed
    run already saw."""

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def _indices(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        if self.world > 1:
            perm += perm[: (-len(perm)) % self.world]  # equal shards
            perm = perm[self.rank :: self.world]
        return perm

    def per_epoch(self) -> int:
        return len(self._indices())

    def __iter__(self):
        return iter(self._indices()[self.skip :])

    def __len__(self) -> int:
        return max(0, self.per_epoch() - self.skip)


#: What a validation pass keeps for the calibration of ``best.pt``: the probabilities, the
#: labels and, per map kind, the maps of the same images (None when not available).
CalibrationInputs = tuple[list[float], list[int], dict[str, list[np.ndarray]] | None]


def _validate(model: MSFM, val, device, cfg: TrainConfig, info: ModelInfo) -> tuple[dict, float, float, CalibrationInputs]:
    """Validation metrics at 0.5 and at the κ-best threshold; returns (metrics, threshold,
    gamma, calibration inputs). The maps come free with the predictions (the same
    ``Prediction.maps`` the app draws), so the calibration gets a fixed map scale."""
    # float32: the threshold, γ and calibration saved with the file are the ones it shows on a CPU.
    predictor = Predictor(model, info, device, cfg.val_batch_size, amp=False)
    kept, preds, _ = predict_samples(predictor, val)
    model.train()
    y = [s.label for s in kept]
    prob = [p.probability for p in preds]
    maps = {kind: [getattr(p.maps, kind) for p in preds] for kind in MAP_KINDS}
    thr = best_kappa_threshold(y, prob) if cfg.tune_threshold else 0.5
    metrics = evaluate_predictions(kept, preds, thr)
    metrics["at_0.5"] = {k: v for k, v in evaluate_predictions(kept, preds, 0.5).items() if k in ("accuracy", "kappa", "f1_abnormal", "f1_normal")}
    gamma = model.config.gamma
    if cfg.tune_gamma and cfg.model == "msfm":
        g, table = tune_gamma(kept, preds)
        if not math.isnan(g):
            gamma = g
            metrics["gamma_table"] = table
    metrics["threshold"], metrics["gamma"] = thr, gamma
    return metrics, thr, gamma, (prob, y, maps)


def _compact(m: dict) -> dict:
    keys = ("n", "accuracy", "kappa", "auc", "f1_abnormal", "f1_normal", "jpe", "sensitivity", "specificity", "threshold", "gamma")
    out = {k: m.get(k) for k in keys}
    out["localization"] = m.get("localization")
    out["stages_auc"] = {k: v.get("auc") for k, v in m.get("stages", {}).items()}
    return out


def train(cfg: TrainConfig) -> Generator[TrainEvent, None, None]:
    """Train MSFM (or the plain baseline) as configured, yielding events; see module doc."""
    dist = ddp.dist_from_env()
    device = ddp.init(dist, resolve_device(cfg.device))
    torch.manual_seed(cfg.seed)
    run = Path(cfg.out)
    run.mkdir(parents=True, exist_ok=True)
    last_path, best_path = run / "last.pt", run / "best.pt"
    train_s, val_s, summary, problems = resolve_splits(cfg)

    state: dict | None = None
    if cfg.resume:
        if not last_path.is_file():
            raise TrainingError(f"--resume: no {last_path} to resume from")
        ck = load_checkpoint(last_path, "cpu")
        if ck.train_state is None:
            raise TrainingError(f"{last_path} holds no training state; cannot resume")
        model, state, pretrained_weights = ck.model, ck.train_state, True
    elif cfg.init:
        model, pretrained_weights = _init_model(cfg), True
    else:
        model = MSFM(cfg.model_config(), pretrained=cfg.pretrained)
        pretrained_weights = model.backbone.pretrained_source != "random"
    mcfg = model.config
    frozen = freeze_early_layers(model.backbone, cfg.freeze_blocks)
    model.to(device)
    prepare_for_device(model, device)
    model.train()

    lr = cfg.default_lr(pretrained_weights)
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size(), gamma=cfg.lr_gamma)
    start_epoch, start_step, best_kappa, history = 0, 0, -math.inf, []
    best_entry: dict | None = None
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, start_step = int(state["epoch"]), int(state["step"])
        best_kappa, history = float(state["best_kappa"]), json.loads(state["history"])
        best_entry = max(history, key=lambda h: h.get("kappa") if h.get("kappa") is not None else -1.0) if history else None
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if dist.enabled else model
    if cfg.compile:
        net = torch.compile(net)  # checkpoints still save ``model``'s own state dict

    loss_cfg = LossConfig(cfg.loss, cfg.alpha, cfg.beta)
    # The model's own pooling decides (a fine-tuned or resumed checkpoint keeps the loss it
    # was trained with); a fresh model's config took it from cfg.parts_loss.
    parts_loss = "bag" if mcfg.parts_pool == "lse" else "paper"
    weight_table = body_part_weights([s.label for s in train_s], [s.body_part for s in train_s])
    ds = RadiographDataset(train_s, mcfg.input_size, AugmentConfig() if cfg.augment else None, cfg.seed, with_source=mcfg.crop_from == "source")
    sampler = EpochSampler(len(ds), cfg.seed, dist.rank, dist.world_size)
    steps_per_epoch = math.ceil(sampler.per_epoch() / cfg.batch_size)
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    amp_ctx, amp_dtype = amp_context(device, cfg.amp)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    meta_base = {
        "name": f"MSFM-{mcfg.backbone}" if cfg.model == "msfm" else f"plain-{mcfg.backbone}",
        "kind": cfg.model, "data": summary, "train_config": cfg.to_dict(),
        "pretrained": getattr(model.backbone, "pretrained_source", "checkpoint"),
        "frozen_parameters": frozen,
    }

    def save_last(epoch: int, step: int) -> str:
        ts = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "epoch": epoch, "step": step, "best_kappa": best_kappa, "history": json.dumps(history)}
        return save_checkpoint(last_path, model, {**meta_base, "history": history}, train_state=ts)

    yield TrainStarted(str(run), str(device), len(train_s), len(val_s), cfg.epochs, steps_per_epoch, start_epoch, start_step, summary, problems)
    if dist.is_main and start_epoch == 0 and start_step == 0 and not last_path.exists():
        save_last(0, 0)  # a resumable starting point before the first step
    epoch, step, finished = start_epoch, start_step, False
    t_run, planned, step_planned = time.perf_counter(), cfg.epochs, state is not None or cfg.lr_step is not None
    try:
        for epoch in range(start_epoch, cfg.epochs):
            if epoch >= planned:
                break
            t_epoch, n_images, loss_sum, n_batches = time.perf_counter(), 0, 0.0, 0
            step = start_step if epoch == start_epoch else 0
            ds.set_epoch(epoch)
            sampler.set_epoch(epoch, step * cfg.batch_size)
            loader = DataLoader(ds, batch_size=cfg.batch_size, sampler=sampler, collate_fn=collate, num_workers=cfg.num_workers,
                                pin_memory=device.type == "cuda")
            main_only = cfg.model == "plain" or epoch < cfg.warmup_epochs
            for batch in loader:
                if step >= steps_per_epoch:
                    break
                t0 = time.perf_counter()
                if batch["x"] is None:
                    step += 1
                    yield BatchEnd(epoch, step, steps_per_epoch, {}, opt.param_groups[0]["lr"], 0, 0.0, batch["errors"])
                    continue
                x = to_device(batch["x"], device)
                y = batch["label"].to(device)
                w = sample_weights(y, [train_s[i].body_part for i in batch["index"].tolist()], weight_table)
                theta = model.fma.sample_theta(len(y)) if model.fma is not None else None
                with amp_ctx, model.strides(cfg.train_output_stride):
                    out = net(x, sources=batch["source"], theta=theta, main_only=main_only)
                    losses = msfm_loss(out.main_logits, out.object_logits, out.part_logits, y, loss_cfg, w,
                                       parts_loss, mcfg.abnormal_index, mcfg.num_paper_windows)
                total = losses["total"]
                if not torch.isfinite(total):
                    raise TrainingError(f"loss became {float(total.detach())} at epoch {epoch + 1}, step {step + 1}; stopped "
                                        f"(the last good checkpoint {last_path} is kept). Try a lower learning rate.")
                opt.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(total).backward()
                    scaler.step(opt)
                    scaler.update()
                else:
                    total.backward()
                    opt.step()
                step += 1
                n_images += len(y)
                loss_sum += float(total.detach())
                n_batches += 1
                yield BatchEnd(epoch, step, steps_per_epoch, {k: float(v.detach()) for k, v in losses.items()}, opt.param_groups[0]["lr"],
                               len(y), time.perf_counter() - t0, batch["errors"])
                if dist.is_main and cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < steps_per_epoch:
                    yield CheckpointSaved(str(last_path), "last", save_last(epoch, step))
            train_seconds = time.perf_counter() - t_epoch
            ddp.sync_buffers(dist, model)
            # Recorded per epoch: a run fitted into --time-budget-s may move an unset step, and
            # the schedule it actually ran is what reproduces it without the budget.
            lr_epoch = opt.param_groups[0]["lr"]
            sched.step()
            val, is_best = None, False
            if dist.is_main:
                info = ModelInfo(sha256="training", backbone=mcfg.backbone, input_size=mcfg.input_size)
                if cfg.model == "plain":
                    val, thr, gamma, cal_inputs = _validate_plain(model, val_s, device, cfg)
                else:
                    val, thr, gamma, cal_inputs = _validate(model, val_s, device, cfg, info)
                kappa = val["kappa"] if val.get("kappa") is not None else -1.0
                history.append({"epoch": epoch + 1, "train_loss": loss_sum / max(1, n_batches), "seconds_per_image": train_seconds / max(1, n_images), "lr": lr_epoch,
                                **_compact(val)})
                if kappa > best_kappa:
                    best_kappa, is_best, best_entry = kappa, True, history[-1]
                    # Operating points, borderline band and map scale of this model, measured on
                    # the validation split only (the one that chose the epoch and threshold).
                    cal = calibrate(*cal_inputs, threshold=thr, source=_val_source(cfg, summary))
                    sha = save_checkpoint(best_path, model, {**meta_base, "metrics": _compact(val), "history": history, "epoch": epoch + 1,
                                                             "calibration": cal.to_dict()}, config=mcfg.with_(threshold=thr, gamma=gamma))
                    yield CheckpointSaved(str(best_path), "best", sha)
                yield CheckpointSaved(str(last_path), "last", save_last(epoch + 1, 0))
                (run / "history.json").write_text(json.dumps(history, indent=1))
            ddp.barrier(dist)
            yield EpochEnd(epoch, loss_sum / max(1, n_batches), val, is_best, time.perf_counter() - t_epoch, train_seconds / max(1, n_images))
            if cfg.time_budget_s is not None:
                now = time.perf_counter()
                planned = ddp.broadcast_int(dist, cfg.plan_epochs(epoch + 1, now - t_run, now - t_epoch), device)
                if not step_planned and epoch + 1 > cfg.warmup_epochs:
                    # Once, after the first epoch that trains every stage (a fresh run only: a
                    # resumed one keeps the step its scheduler state holds).
                    sched.step_size, step_planned = max(epoch + 1, math.ceil(planned * 2 / 3)), True
                yield TrainMessage("info", f"time budget {cfg.time_budget_s:.0f} s: {planned} of {cfg.epochs} epochs fit "
                                           f"({now - t_run:.0f} s so far); x{cfg.lr_gamma:g} lr step every {sched.step_size} epochs")
        finished = True
    finally:
        if not finished and dist.is_main and step > 0:
            # Cancelled or failed mid-epoch: keep a resumable state at the last finished step.
            with contextlib.suppress(Exception):
                save_last(epoch, step)
        if dist.enabled:
            (run / "ddp").mkdir(exist_ok=True)
            (run / "ddp" / f"rank{dist.rank}.sha256").write_text(state_sha256(model))
        ddp.shutdown(dist)
    yield TrainFinished(str(run), str(best_path) if best_path.exists() else None, str(last_path), best_entry)


def freeze_early_layers(backbone, n_stages: int) -> int:
    """Stop gradients into the stem and the first ``n_stages`` block stages of the backbone.

    Their weights stay as initialised (ImageNet or the checkpoint's); backpropagation then
    ends at the first trained layer, which saves the backward pass through the
    highest-resolution, most memory-bound layers. BatchNorm statistics still update.
    Returns the number of parameters frozen.
    """
    if n_stages <= 0:
        return 0
    stem, stages = backbone.spec.family.stages(backbone.encoder)
    if n_stages >= len(stages):
        raise TrainingError(f"freeze_blocks {n_stages}: {backbone.name} has {len(stages)} block stages; freeze fewer")
    n = 0
    for module in stem + stages[:n_stages]:
        for p in module.parameters():
            p.requires_grad_(False)
            n += p.numel()
    return n


def _init_model(cfg: TrainConfig) -> MSFM:
    """The model ``--init`` starts from.

    An MSFM checkpoint is fine-tuned as it is (its own configuration). A plain-classifier
    checkpoint warm-starts MSFM: the configured MSFM gets that classifier's encoder and FC,
    which the three stages share, as the paper starts from a backbone already trained on
    the target data (its ResNet-50 "pre-trained on the MURA dataset").
    """
    if cfg.init is None:
        raise TrainingError("no --init checkpoint to start from")
    ck = load_checkpoint(cfg.init, "cpu")
    if ck.meta.get("kind") != "plain" or cfg.model == "plain":
        s = cfg.init_input_size
        if not s or s == ck.config.input_size:
            model = ck.model
        else:
            # The weights do not depend on the input size; the window geometry does, so it is
            # derived afresh for the new grid.
            part = max(32, round(ck.config.part_size * s / ck.config.input_size))
            model = MSFM(ck.config.with_(input_size=s, part_size=part, window_scales=None), pretrained="none")
            model.load_state_dict(ck.model.state_dict())
        # Options given explicitly that change what the stages see or how they pool, not the
        # weights' shapes: the same weights continue under them.
        if cfg.cell_pool is not None and (cfg.cell_pool, cfg.cell_pool_r) != (model.config.cell_pool, model.config.cell_pool_r):
            model.config = model.config.with_(cell_pool=cfg.cell_pool, cell_pool_r=cfg.cell_pool_r)
        if cfg.crop_from is not None and cfg.crop_from != model.config.crop_from:
            model.config = model.config.with_(crop_from=cfg.crop_from)
        # The new file's provenance names the checkpoint it continues (a model loaded from a
        # file reports its backbone as "random": its weights came from the file, not a hub).
        model.backbone.pretrained_source = f"{ck.meta.get('kind', 'msfm')} checkpoint {Path(cfg.init).name} (sha256 {ck.sha256[:12]})"
        return model
    if ck.config.backbone != cfg.backbone:
        raise TrainingError(f"--init {cfg.init} is a {ck.config.backbone} classifier but --backbone is {cfg.backbone}")
    model = MSFM(cfg.model_config(), pretrained="none")
    model.backbone.load_state_dict(ck.model.backbone.state_dict())
    model.backbone.pretrained_source = f"plain classifier {Path(cfg.init).name} (sha256 {ck.sha256[:12]})"
    return model


def _validate_plain(model: MSFM, val, device, cfg: TrainConfig) -> tuple[dict, float, float, CalibrationInputs]:
    """Validation of the plain classifier (backbone + GAP + FC): classification only. Its
    calibration has no map scale: its CAM is of the predicted class, not the abnormal-class
    CAM and activation map an MSFM prediction carries."""
    kept, probs, _, _ = plain_outputs(model, val, device, cfg.val_batch_size)
    model.train()
    y = [s.label for s in kept]
    thr = best_kappa_threshold(y, probs) if cfg.tune_threshold else 0.5
    m = classification_metrics(y, probs, thr)
    m["gamma"] = model.config.gamma
    return m, thr, model.config.gamma, (list(probs), y, None)


def _val_source(cfg: TrainConfig, summary: dict) -> str:
    """The validation data, in words, for the stored calibration (as resolve_splits chose them)."""
    name = Path(cfg.val).name if cfg.val else str(summary.get("source", cfg.data))
    return f"{name}, validation split" + (f" (first {cfg.limit_val}, balanced)" if cfg.limit_val else "")


__all__ = ["train", "TrainConfig", "TrainingError", "EpochSampler"]
