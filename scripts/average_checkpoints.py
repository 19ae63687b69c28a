"""Average the weights of MSFM checkpoints that share one architecture (a "model soup").

    .venv/bin/python scripts/average_checkpoints.py OUT.pt A.pt B.pt [C.pt ...]

Every floating-point tensor of the state dicts (parameters and the batch-norm running means
and variances) becomes the uniform mean of the inputs, computed in float64 and stored in the
first file's dtype; integer buffers (``num_batches_tracked``) are the first file's. The
config (threshold, τ, γ, strides) and meta are the first file's, with ``meta["averaged_from"]``
naming every input by path and sha256; ``meta["calibration"]`` is dropped because the
probabilities moved. The result must therefore be re-tuned and recalibrated on validation
data before it is read (``scripts/sweep_inference.py --retune-threshold --write``,
``scripts/tune_lesion_tau.py``, ``scripts/calibrate_model.py``), as any new weights are.

Averaging only makes sense for runs fine-tuned from one common starting file (the same loss
basin); files of different architecture or config structure are refused with the first key
that differs. ``torch.optim.swa_utils.AveragedModel`` is not used: it deep-copies the
module (the MSFM stride-16 twin lives on the meta device) and averages integer buffers too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from engine.model.checkpoint import load_checkpoint, save_checkpoint


class IncompatibleCheckpoints(ValueError):
    """The checkpoints do not share one set of tensor names and shapes."""


def average_state_dicts(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Uniform mean of floating-point tensors; non-float tensors from ``states[0]``.

    Raises :class:`IncompatibleCheckpoints` when names, shapes or dtypes differ."""
    if len(states) < 2:
        raise IncompatibleCheckpoints("need at least two checkpoints to average")
    first = states[0]
    for i, sd in enumerate(states[1:], start=2):
        if sd.keys() != first.keys():
            diff = sorted(set(sd) ^ set(first))
            raise IncompatibleCheckpoints(f"checkpoint {i} has other tensors than checkpoint 1 (first difference: {diff[0]})")
        for k, v in sd.items():
            if v.shape != first[k].shape or v.dtype != first[k].dtype:
                raise IncompatibleCheckpoints(f"checkpoint {i}: {k} is {tuple(v.shape)} {v.dtype}, checkpoint 1 has "
                                              f"{tuple(first[k].shape)} {first[k].dtype}")
    out: dict[str, torch.Tensor] = {}
    for k, v in first.items():
        if v.is_floating_point():
            out[k] = (sum(sd[k].double() for sd in states) / len(states)).to(v.dtype)
        else:
            out[k] = v.clone()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("inputs", nargs="+")
    args = ap.parse_args(argv)
    if Path(args.out).resolve() in {Path(p).resolve() for p in args.inputs}:
        print("error: OUT must not be one of the inputs (sources are never modified)", file=sys.stderr)
        return 2
    cks = [load_checkpoint(p, "cpu") for p in args.inputs]
    try:
        avg = average_state_dicts([c.model.state_dict() for c in cks])
    except IncompatibleCheckpoints as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    model = cks[0].model
    model.load_state_dict(avg)
    meta = {k: v for k, v in cks[0].meta.items() if k not in ("created", "engine_version", "calibration")}
    meta["averaged_from"] = [f"{p} (sha256 {c.sha256[:12]})" for p, c in zip(args.inputs, cks)]
    sha = save_checkpoint(args.out, model, meta, config=cks[0].config)
    print(f"wrote {args.out}: the mean of {len(cks)} checkpoints (sha256 {sha}); re-tune the threshold and τ and recalibrate before reading it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
