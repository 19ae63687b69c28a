"""scripts/average_checkpoints.py: the mean of checkpoints fine-tuned from one file, with the
first file's config, the inputs named, and the stale calibration dropped."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from engine.model.checkpoint import load_checkpoint, save_checkpoint
from engine.resources import DEFAULT_MODEL
from tests.test_inference_settings_script import REPO

sys.path.insert(0, str(REPO / "scripts"))
from average_checkpoints import IncompatibleCheckpoints, average_state_dicts  # noqa: E402


def test_floats_are_averaged_and_integer_buffers_kept():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(7)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(9)}
    out = average_state_dicts([a, b])
    assert torch.equal(out["w"], torch.tensor([2.0, 4.0])) and int(out["n"]) == 7
    assert torch.equal(a["w"], torch.tensor([1.0, 2.0]))  # inputs untouched


@pytest.mark.parametrize("other", [{"w": torch.zeros(3), "n": torch.tensor(1)}, {"v": torch.zeros(2), "n": torch.tensor(1)}, {"w": torch.zeros(2)}])
def test_other_tensors_or_shapes_are_refused(other):
    with pytest.raises(IncompatibleCheckpoints):
        average_state_dicts([{"w": torch.zeros(2), "n": torch.tensor(1)}, other])
    with pytest.raises(IncompatibleCheckpoints):
        average_state_dicts([{"w": torch.zeros(2)}])


def test_the_shipped_file_averaged_with_a_shifted_copy(tmp_path):
    ck = load_checkpoint(DEFAULT_MODEL, "cpu")
    shifted = {k: (v + 0.5 if v.is_floating_point() else v) for k, v in ck.model.state_dict().items()}
    ck.model.load_state_dict(shifted)
    other = tmp_path / "shifted.pt"
    save_checkpoint(other, ck.model, dict(ck.meta), config=ck.config)
    out = tmp_path / "mean.pt"
    done = subprocess.run([sys.executable, "scripts/average_checkpoints.py", str(out), str(DEFAULT_MODEL), str(other)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    mean, base = load_checkpoint(out, "cpu"), load_checkpoint(DEFAULT_MODEL, "cpu")
    for k, v in base.model.state_dict().items():
        got = mean.model.state_dict()[k]
        if v.is_floating_point():
            torch.testing.assert_close(got, v + 0.25)  # float32 rounding of v + 0.5 only
        else:
            assert torch.equal(got, v)
    assert mean.config == base.config
    assert "calibration" in base.meta and "calibration" not in mean.meta
    assert [s.split(" (")[0] for s in mean.meta["averaged_from"]] == [str(DEFAULT_MODEL), str(other)]


def test_out_may_not_overwrite_an_input(tmp_path):
    done = subprocess.run([sys.executable, "scripts/average_checkpoints.py", str(DEFAULT_MODEL), str(DEFAULT_MODEL), str(DEFAULT_MODEL)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "never modified" in done.stderr
