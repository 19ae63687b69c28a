"""Training options of issue 18 (SPEC §3b): the bag loss over the parts, the mild FMA in
training only, class-ranked windows, frozen early layers, and the lesion recipe end to end."""

from __future__ import annotations

import math

import pytest
import torch

from engine.config import FMAConfig, ModelConfig
from engine.errors import ConfigError
from engine.infer import Predictor
from engine.io import load_image
from engine.model.checkpoint import load_checkpoint
from engine.model.msfm import MSFM, bag_logits
from engine.recipes import LESION_RECIPE
from engine.train.loop import TrainingError, freeze_early_layers
from engine.train.losses import LossConfig, msfm_loss
from engine.train.setup import TrainConfig
from tests.engine.test_cli import msfm

V1 = {"backbone": "efficientnet_lite0", "input_size": 320, "part_size": 224}


def test_bag_logits_are_a_smooth_maximum_of_the_window_evidence():
    d = torch.tensor([[-4.0, -4.0, -4.0, 3.0], [1.0, 1.0, 1.0, 1.0]])  # abnormal-minus-normal per window
    logits = torch.stack([torch.zeros_like(d), d], dim=-1)  # (B, P, 2)
    bag = bag_logits(logits, abnormal_index=1)
    assert bag.shape == (2, 2) and (bag[:, 0] == 0).all()
    # Equal windows: the bag says what each says; one abnormal window carries the image.
    assert bag[1, 1].item() == pytest.approx(1.0, abs=1e-6)
    assert bag[0, 1].item() == pytest.approx(math.log((3 * math.exp(-4) + math.exp(3)) / 4), abs=1e-5)
    assert bag[0, 1] > 0 > d[0, :3].mean()
    # The other class order gives the same probability.
    flipped = bag_logits(logits.flip(-1), abnormal_index=0)
    torch.testing.assert_close(flipped.softmax(-1)[:, 0], bag.softmax(-1)[:, 1])


def test_bag_loss_is_one_loss_on_the_configured_windows():
    torch.manual_seed(0)
    main, obj, parts = torch.randn(4, 2), torch.randn(4, 2), torch.randn(4, 10, 2)
    y, w, cfg = torch.tensor([0, 1, 1, 0]), torch.ones(4), LossConfig("ce")
    paper = msfm_loss(main, obj, parts[:, :7], y, cfg, w)
    bag = msfm_loss(main, obj, parts, y, cfg, w, "bag", 1, 7)
    expected = torch.nn.functional.cross_entropy(bag_logits(parts[:, :7], 1), y)
    assert bag["parts"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert bag["total"].item() == pytest.approx((bag["main"] + bag["object"] + bag["parts"]).item(), rel=1e-6)
    assert paper["parts"].item() != pytest.approx(bag["parts"].item())
    with pytest.raises(ValueError):
        msfm_loss(main, obj, parts, y, cfg, w, "max")


def test_lse_parts_pool_gives_the_bag_probability(xray_sample):
    torch.manual_seed(0)
    model = MSFM(ModelConfig(**V1, fma=FMAConfig(enabled=False), parts_pool="lse"), pretrained="none").eval()
    images = [load_image(p) for p in xray_sample[:2]]
    preds = Predictor(model, device="cpu").predict(images)
    from engine.model.preprocess import make_batch

    with torch.no_grad():
        out = model(make_batch(images, 320))
    expected = bag_logits(out.part_logits, 1).softmax(-1)[:, 1]
    for p, e in zip(preds, expected.tolist()):
        assert p.stages["parts"] == pytest.approx(e, abs=1e-5)
    with pytest.raises(ConfigError):
        ModelConfig(**V1, parts_pool="lse", class_names=("a", "b", "c"))


def test_mild_fma_darkens_in_training_only():
    cfg = TrainConfig(data="-", fma_variant="mild").model_config()
    assert cfg.fma.train_only and cfg.fma.r == 0.9 and cfg.fma.theta_range == (0.1, 0.4)
    torch.manual_seed(0)
    model = MSFM(TrainConfig(data="-", fma_variant="mild", input_size=320).model_config(), pretrained="none")
    x = torch.rand(2, 1, 320, 320)
    with torch.no_grad():
        assert model.eval()(x).attention is None  # inference sees the image as it is
        assert model.train()(x, theta=0.1).attention is not None
    assert TrainConfig(data="-", fma_variant="off").model_config().fma.active is False
    assert TrainConfig(data="-", fma_variant="saturation").model_config().fma.mode == "saturation"
    with pytest.raises(ConfigError):
        TrainConfig(data="-", fma_variant="strong")


def test_frozen_early_layers_get_no_gradient_and_keep_their_weights():
    torch.manual_seed(0)
    model = MSFM(ModelConfig(**V1, fma=FMAConfig(enabled=False)), pretrained="none").train()
    n = freeze_early_layers(model.backbone, 2)
    enc = model.backbone.encoder
    assert n == sum(p.numel() for m in (enc.conv_stem, enc.bn1, enc.blocks[0], enc.blocks[1]) for p in m.parameters())
    before = enc.blocks[0][0].conv_dw.weight.clone()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    out = model(torch.rand(2, 1, 320, 320))
    (out.main_logits.sum() + out.part_logits.sum()).backward()
    opt.step()
    assert enc.conv_stem.weight.grad is None and enc.blocks[1][0].conv_pw.weight.grad is None
    assert enc.blocks[2][0].conv_pw.weight.grad is not None
    torch.testing.assert_close(enc.blocks[0][0].conv_dw.weight, before)
    with pytest.raises(TrainingError):
        freeze_early_layers(model.backbone, 7)


def test_lesion_recipe_trains_a_few_steps(tiny_csv, tmp_path):
    out = tmp_path / "lesion"
    res = msfm("train", tiny_csv, "--recipe", "lesion", "--out", out, "--epochs", "1", "--warmup-epochs", "0",
               "--max-steps", "2", "--limit-train", "10", "--limit-val", "6", "--quiet")
    assert res.returncode == 0, res.stderr
    ck = load_checkpoint(out / "best.pt")
    tc = ck.meta["train_config"]
    for key in ("fma_variant", "parts_loss", "window_score", "freeze_blocks"):
        assert tc[key] == LESION_RECIPE[key], key
    assert ck.config.parts_pool == "lse" and ck.config.window_score == "class" and ck.config.fma.train_only
    assert ck.meta["frozen_parameters"] > 0


def test_ablation_table_reads_the_evaluation_json_and_keeps_plain_rows_free_of_localisation(tmp_path):
    """scripts/ablation.py's table comes from what `msfm evaluate --json` writes (keys
    checked against real figures), and a row is only written for a finished variant."""
    import importlib.util
    import json
    from pathlib import Path

    from engine.evaluation.figures import build_records, figures
    from tests.engine.evaluation.test_metrics import synthetic_set

    spec = importlib.util.spec_from_file_location("ablation", Path(__file__).parents[3] / "scripts" / "ablation.py")
    ablation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ablation)

    samples, preds, hardware = synthetic_set()
    m = figures(build_records(samples, preds, 0.5, hardware), resamples=50)
    m["no_hardware"] = figures(build_records(samples[1:], preds[1:], 0.5), resamples=50)
    # The plain classifier is scored by `--baseline` beside an MSFM variant; its own folder
    # holds only a marker (`msfm evaluate --checkpoint` refuses a plain checkpoint).
    # "bag" was scored beside an earlier plain classifier that a retrained one has replaced
    # at the same path (its SHA-256 differs): its baseline figures must not be read.
    import hashlib

    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "best.pt").write_bytes(b"the retrained plain classifier")
    plain_sha = hashlib.sha256(b"the retrained plain classifier").hexdigest()
    stale = {"auc": 0.9, "kappa": 0.8, "ci": {"auc": [0.85, 0.95], "kappa": [0.7, 0.9]}}
    plain_fig = {"auc": 0.7, "kappa": 0.3, "ci": {"auc": [0.6, 0.8], "kappa": [0.1, 0.5]}}
    m_bag = {**m, "baselines": {"source": ablation.PLAIN_BASELINE_SOURCE, "plain_classifier": stale, "cam_box": {}, "sha256": "0" * 64}}
    m["baselines"] = {"source": ablation.PLAIN_BASELINE_SOURCE, "plain_classifier": plain_fig, "cam_box": {}, "sha256": plain_sha}
    for name, metrics in (("bag", m_bag), ("v1", m), ("plain", {"kind": "plain"})):
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / "val_metrics.json").write_text(json.dumps(metrics))
        (tmp_path / name / "history.json").write_text(json.dumps([{"epoch": 1, "kappa": 0.1, "seconds_per_image": 0.5},
                                                                 {"epoch": 2, "kappa": 0.3, "seconds_per_image": 0.7}]))
    assert ablation._plain_figures(tmp_path)["auc"] == 0.7  # "bag" sorts first, but scored another classifier
    (tmp_path / "bag" / "val_metrics.json").unlink()
    ablation.write_summary(tmp_path, ["v1", "bag", "plain"], {})
    rows = {r["name"]: r for r in json.loads((tmp_path / "ablation.json").read_text())["rows"]}
    assert set(rows) == {"v1", "plain"}  # "bag" never ran
    v1 = rows["v1"]
    assert v1["auc"] == m["auc"] and v1["kappa_ci"] == m["ci"]["kappa"] and v1["best_epoch"] == 2
    assert v1["pointing"] == m["localization"]["pointing"] and v1["lesion_iou10"] == m["localization"]["lesion"]["iou10"]
    assert v1["no_hw_auc"] == m["no_hardware"]["auc"] and v1["no_hw_pointing"] == m["no_hardware"]["localization"]["pointing"]
    assert v1["a_window_holds"] == m["localization"]["funnel"]["a_window_holds"] and v1["seconds_per_image"] == 0.7
    assert rows["plain"]["pointing"] is None and rows["plain"]["auc"] == 0.7 and rows["plain"]["kappa_ci"] == [0.1, 0.5]
    table = (tmp_path / "ablation.md").read_text().splitlines()
    assert len(table) == 4 and table[2].startswith("| `v1`")
