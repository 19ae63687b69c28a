"""Data sources (labels CSV, MURA, class folders) and the training dataset."""

import pytest
import torch

from engine.data.dataset import AugmentConfig, RadiographDataset, collate
from engine.data.sources import DataError, Sample, check_usable, load_samples
from tests.conftest import DICOM, XRAY


def test_real_labels_csv_with_splits_and_boxes():
    ss = load_samples(XRAY / "labels.csv")
    assert ss.layout == "labels-csv" and ss.problems == []
    assert len(ss.samples) == 1419 and len(ss.split("train")) == 1206 and len(ss.split("val")) == 213
    fractured = [s for s in ss.samples if s.label == 1]
    assert len(fractured) == 538 and all(s.boxes for s in fractured)
    assert sum(len(s.boxes) for s in ss.samples) == 692
    assert not any(s.boxes for s in ss.samples if s.label == 0)
    assert {s.body_part for s in ss.samples} >= {"hand", "leg", "hip", "shoulder", "leg+hip"}
    # A folder holding labels.csv is read the same way.
    assert len(load_samples(XRAY).samples) == 1419


def test_csv_rows_escaping_the_folder_or_badly_labelled_are_skipped(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels.csv").write_text("file,label\n../../etc/passwd,1\nok.png,1\nbad.png,maybe\n,0\n")
    ss = load_samples(tmp_path / "labels.csv")
    assert [s.path.name for s in ss.samples] == ["ok.png"]
    text = " | ".join(ss.problems)
    assert "points outside" in text and "'maybe' is not 0/1" in text and "empty file name" in text
    (tmp_path / "nolabel.csv").write_text("path,y\na,1\n")
    with pytest.raises(DataError, match="needs the columns file,label"):
        load_samples(tmp_path / "nolabel.csv")


def test_mura_layout(tmp_path):
    src = sorted((XRAY / "images").glob("*.png"))[:6]
    layout = [
        ("train", "XR_WRIST", "patient00001", "study1_positive", src[0]),
        ("train", "XR_WRIST", "patient00001", "study1_positive", src[1]),
        ("train", "XR_HAND", "patient00002", "study1_negative", src[2]),
        ("valid", "XR_ELBOW", "patient11000", "study2_negative", src[3]),
        ("valid", "XR_ELBOW", "patient11001", "study1_positive", src[4]),
    ]
    for i, (split, part, patient, study, f) in enumerate(layout):
        d = tmp_path / split / part / patient / study
        d.mkdir(parents=True, exist_ok=True)
        (d / f"image{i + 1}.png").symlink_to(f)
    ss = load_samples(tmp_path)
    assert ss.layout == "mura" and len(ss.samples) == 5
    wrist = [s for s in ss.samples if s.body_part == "wrist"]
    assert len(wrist) == 2 and all(s.label == 1 and s.split == "train" for s in wrist)
    assert len({s.study for s in wrist}) == 1
    assert {s.split for s in ss.samples} == {"train", "val"}
    assert [s.label for s in ss.samples if s.body_part == "hand"] == [0]


def test_class_folders_with_abnormal_detection_and_dicom(tmp_path):
    for name, files in (("fractured", sorted((XRAY / "images").glob("*.png"))[:2]), ("normal", [DICOM / "RG3_UNC.dcm"])):
        (tmp_path / name).mkdir()
        for f in files:
            (tmp_path / name / f.name).symlink_to(f)
    ss = load_samples(tmp_path)
    assert ss.layout == "class-folders"
    assert sorted(s.label for s in ss.samples) == [0, 1, 1]
    assert ss.counts() == {"all": {"0": 1, "1": 2}}
    (tmp_path / "third").mkdir()
    with pytest.raises(DataError, match="exactly two class folders"):
        load_samples(tmp_path)


def test_class_folders_need_a_recognisable_abnormal_name(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError, match="cannot tell which"):
        load_samples(tmp_path)
    assert load_samples(tmp_path, abnormal="b").layout == "class-folders"


def test_empty_and_single_class_sets_are_refused():
    with pytest.raises(DataError, match="no images"):
        check_usable([], "x")
    with pytest.raises(DataError, match="only class 1"):
        check_usable([Sample(XRAY / "a.png", 1)], "x")


def test_dataset_skips_unreadable_items_and_augments_deterministically(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    good = sorted((XRAY / "images").glob("*.png"))[:3]
    samples = [Sample(good[0], 0), Sample(bad, 1), Sample(good[1], 1), Sample(good[2], 0)]
    ds = RadiographDataset(samples, 64, AugmentConfig(hflip=0.5), seed=3)
    batch = collate([ds[i] for i in range(4)])
    assert batch["x"].shape == (3, 1, 64, 64) and batch["label"].tolist() == [0, 1, 0]
    assert len(batch["errors"]) == 1 and batch["errors"][0][0] == str(bad)
    a, b = ds[0]["x"], ds[0]["x"]
    assert torch.equal(a, b)  # same (seed, epoch, index): same augmentation
    flipped = [not torch.equal(RadiographDataset(samples, 64, AugmentConfig(1.0, 0, 0), seed=s)[0]["x"], RadiographDataset(samples, 64, None)[0]["x"]) for s in range(2)]
    assert all(flipped)
    plain = RadiographDataset(samples, 64, None)[0]["x"]
    assert torch.allclose(RadiographDataset(samples, 64, AugmentConfig(1.0, 0, 0))[0]["x"], plain.flip(-1), atol=1e-6)
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0


def test_labels_csv_pointing_at_dicom_files(tmp_path):
    (tmp_path / "images").mkdir()
    for name in ("RG3_UNC.dcm", "RG2_J2KI.dcm", "RG3_JPLY.dcm"):
        (tmp_path / "images" / name).symlink_to(DICOM / name)
    (tmp_path / "labels.csv").write_text("file,label,body_part\nRG3_UNC.dcm,1,leg\nRG2_J2KI.dcm,0,hip\nRG3_JPLY.dcm,1,leg\n")
    ss = load_samples(tmp_path)
    ds = RadiographDataset(ss.samples, 64, None)
    batch = collate([ds[i] for i in range(3)])
    assert batch["x"].shape == (2, 1, 64, 64) and batch["label"].tolist() == [1, 0]
    assert "cannot decode pixel data" in batch["errors"][0][1]
