"""The GPU job's candidates mode, end to end on the CPU in a tiny configuration: what the
one-shot H200 call (scripts/gpu_train_job.sh) runs must work before a lease is spent on it."""

import csv
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from engine.model.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from pack_gpu_job import pack_data  # noqa: E402


@pytest.fixture(scope="module")
def tiny_job(tmp_path_factory):
    job = tmp_path_factory.mktemp("gpujob")
    pack_data(job / "data", 384)
    rows = list(csv.DictReader(open(job / "data" / "labels.csv", newline="")))
    keep = [r for split in ("train", "val") for label in ("0", "1")
            for r in [r for r in rows if r["split"] == split and r["label"] == label][:3]]
    with open(job / "data" / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(keep)
    return job


def _job(tiny_job, out, *args, **env):
    env = {**os.environ, "PY": sys.executable, "DEVICE": "cpu", "JOB": str(tiny_job), "OUT": str(out), "BUDGET": "600",
           "EPOCHS_MAX": "1", "WORKERS": "0", "EXTRA": "--max-steps 1", "SERIAL": "1", **env}
    r = subprocess.run(["bash", "scripts/gpu_train_job.sh", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def test_candidates_mode_trains_evaluates_and_packs_four_models(tiny_job, tmp_path):
    out = tmp_path / "out"
    r = _job(tiny_job, out, "candidates")
    for name in "ABCD":
        assert f"{name} rc=0" in r.stdout, r.stdout[-3000:]
    # What comes back from the device: at most 8 files, one folder level, each under 16 MiB.
    files = sorted(p.name for p in out.iterdir())
    assert files == ["A.pt", "B.pt", "C.pt", "D.pt", "results.tgz"]
    assert all((out / f).stat().st_size < 16 * 2**20 for f in files)
    cfgs = {n: load_checkpoint(out / f"{n}.pt").config for n in "ABC"}
    assert cfgs["A"].output_stride == cfgs["C"].output_stride == 16
    assert load_checkpoint(out / "D.pt").meta["kind"] == "plain"
    with tarfile.open(out / "results.tgz") as tar:
        tar.extractall(tmp_path / "res", filter="data")
    for name in "ABC":
        m = json.loads((tmp_path / "res" / f"{name}.val.json").read_text())
        assert m["n"] == 6 and m["split"] == "val"
        assert len(json.loads((tmp_path / "res" / f"{name}.history.json").read_text())) == 1
    # The plain classifier is scored as the shipped file's baseline.
    assert json.loads((tmp_path / "res" / "D.val.json").read_text())["baselines"]


def test_continue_mode_fine_tunes_one_file_two_ways(tiny_job, tmp_path):
    out = tmp_path / "out"
    r = _job(tiny_job, out, "continue", "resources/models/default.pt", EVAL="0")
    assert "E rc=0" in r.stdout and "F rc=0" in r.stdout, r.stdout[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["E.pt", "F.pt", "results.tgz"]
    for name, lr in (("E", 3e-5), ("F", 1e-4)):
        meta = load_checkpoint(out / f"{name}.pt").meta
        assert meta["train_config"]["lr"] == lr and meta["train_config"]["init"] == "resources/models/default.pt"
        assert meta["train_config"]["time_budget_s"] == 600.0


def test_pipeline_mode_trains_then_continues_four_candidates_across_two_calls(tiny_job, tmp_path):
    pipe, out1, out2 = tmp_path / "pipe", tmp_path / "out1", tmp_path / "out2"
    r = _job(tiny_job, out1, "pipeline", "1", PIPE=str(pipe), EXTRA="--max-steps 1 --limit-val 2")
    names = ("G", "J", "H", "I")
    assert all(f"{n} rc=0" in r.stdout for n in names), r.stdout[-3000:]
    assert sorted(p.name for p in out1.iterdir()) == sorted([f"{n}.pt" for n in names] + ["results.tgz"])
    cfg = {n: load_checkpoint(out1 / f"{n}.pt").meta["train_config"] for n in names}
    assert [cfg[n]["seed"] for n in "GJ"] == [0, 1]
    sizes = {n: load_checkpoint(out1 / f"{n}.pt").config.input_size for n in names}
    assert sizes == {"G": 320, "J": 320, "H": 448, "I": 320} and cfg["H"]["part_size"] == 314
    assert cfg["I"]["freeze_blocks"] == 0 and cfg["G"]["freeze_blocks"] == 2
    # Step 2, a second call: it finds step 1's runs in PIPE and continues each at stride 16.
    r = _job(tiny_job, out2, "pipeline", "2", PIPE=str(pipe))
    assert all(f"{n}16 rc=0" in r.stdout for n in names), r.stdout[-3000:]
    assert sorted(p.name for p in out2.iterdir()) == sorted([f"{n}16.pt" for n in names] + ["results.tgz"])
    for n in names:
        ck = load_checkpoint(out2 / f"{n}16.pt")
        tc = ck.meta["train_config"]
        assert tc["init"] == str(pipe / n / "best.pt") and tc["train_output_stride"] == 16 and tc["lr"] == 3e-5
    assert load_checkpoint(out2 / "H16.pt").config.input_size == 448
    # P, the plain classifier at the default's 448 px and 12 epochs: step 1 only; in the
    # background as on the GPU (SERIAL=0; the others ran in turn: four CPU trainings beside
    # pytest outgrow this machine's memory).
    r = _job(tiny_job, tmp_path / "out3", "pipeline", "1", PIPE=str(pipe), NAMES="P", SERIAL="0", EXTRA="--max-steps 1 --limit-val 2")
    ck = load_checkpoint(tmp_path / "out3" / "P.pt")
    assert ck.meta["kind"] == "plain" and ck.config.input_size == 448 and ck.meta["train_config"]["epochs"] == 12
    r = _job(tiny_job, tmp_path / "out4", "pipeline", "2", PIPE=str(pipe), NAMES="P")
    assert "P16" not in r.stdout and sorted(p.name for p in (tmp_path / "out4").iterdir()) == ["results.tgz"]
    bad = subprocess.run(["bash", "scripts/gpu_train_job.sh", "pipeline", "3"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PY": sys.executable, "OUT": str(tmp_path / "o3"), "JOB": str(tiny_job)})
    assert bad.returncode == 2 and "usage" in bad.stderr
