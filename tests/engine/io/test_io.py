"""Loading real radiographs: FracAtlas PNGs and DICOM in every transfer syntax."""

import io
import os
import struct
import zlib

import numpy as np
import pydicom
import pytest
from PIL import Image

from engine.errors import ImageLoadError
from engine.io import MAX_PIXELS, is_dicom, load_image, load_images
from engine.io.scan import iter_image_files
from tests.conftest import DICOM, XRAY

UNDECODABLE = {"RG2_JPLY.dcm", "RG3_JPLY.dcm"}
NO_PIXELS = {"pydicom_test-SR.dcm"}


def dicom_files():
    return sorted(p for p in DICOM.rglob("*") if p.is_file() and p.name != "SOURCES.md")


def test_dicom_detected_by_preamble_not_extension():
    files = dicom_files()
    assert len(files) == 22
    assert all(is_dicom(p) for p in files)
    assert not is_dicom(DICOM / "SOURCES.md")
    found = list(iter_image_files([DICOM]))
    assert sorted(found) == files  # extensionless nested files included, SOURCES.md not


def test_every_decodable_dicom_loads_and_the_rest_give_clear_errors():
    loaded, radiographs, errors = {}, 0, {}
    for p in dicom_files():
        try:
            frames = load_images(p)
        except ImageLoadError as exc:
            errors[p.name] = exc.reason
            continue
        loaded[p.name] = frames
        radiographs += frames[0].meta["is_radiograph"] == "1"
        for im in frames:
            assert im.pixels.dtype == np.float32 and im.pixels.ndim == 2
            assert 0.0 <= im.pixels.min() and im.pixels.max() <= 1.0
            assert im.width == int(im.meta["Columns"]) and im.height == int(im.meta["Rows"])
    assert len(loaded) == 19 and radiographs == 14
    assert set(errors) == UNDECODABLE | NO_PIXELS
    for name in UNDECODABLE:
        assert "cannot decode pixel data (JPEG Extended" in errors[name]
        assert "\n" not in errors[name]
    assert errors["pydicom_test-SR.dcm"] == "no pixel data (Comprehensive SR Storage); not an image"
    multi = loaded["pydicom-data_emri_small_jpeg_ls_lossless.dcm"]
    assert len(multi) == 10 and [im.frame for im in multi] == list(range(10))
    assert not np.array_equal(multi[0].pixels, multi[5].pixels)


def test_monochrome1_is_inverted_and_bits_stored_normalises():
    ds = pydicom.dcmread(DICOM / "RG3_UNC.dcm")
    assert ds.PhotometricInterpretation == "MONOCHROME1" and ds.BitsStored == 10
    raw = ds.pixel_array.astype(np.float64)
    im = load_image(DICOM / "RG3_UNC.dcm")
    # Inverted: brightest output where the stored value is smallest.
    corr = np.corrcoef(raw.ravel()[::97], im.pixels.ravel()[::97])[0, 1]
    assert corr < -0.9
    # Normalised by the 10-bit range (or its window), not by 65535: the image uses the range.
    assert im.pixels.max() > 0.9 and im.pixels.mean() > 0.3


def test_all_lossless_syntaxes_decode_to_the_same_pixels():
    ref = load_image(DICOM / "RG3_UNC.dcm").pixels
    for name in ("RG3_RLE.dcm", "RG3_JPLL.dcm", "RG3_JLSL.dcm", "RG3_J2KR.dcm"):
        assert np.array_equal(load_image(DICOM / name).pixels, ref), name
    lossy = load_image(DICOM / "RG3_J2KI.dcm").pixels
    assert np.abs(lossy - ref).mean() < 0.01


def test_real_pngs_load_with_their_size(xray_sample):
    for p in xray_sample:
        im = load_image(p)
        with Image.open(p) as pil:
            assert (im.width, im.height) == pil.size
        assert im.kind == "png" and im.pixels.max() <= 1.0 and im.pixels.std() > 0.02


def _png_bytes(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def test_png_variants_16bit_palette_rgba(tmp_path):
    ramp16 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    p16 = tmp_path / "sixteen.png"
    Image.fromarray(ramp16).save(p16)
    im = load_image(p16)
    assert im.pixels[7, 7] == pytest.approx(63000 / 65535, abs=1e-6)
    pal = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4).convert("P")
    pal.save(tmp_path / "palette.png")
    assert load_image(tmp_path / "palette.png").pixels.shape == (8, 8)
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0  # a transparent pixel is shown as black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    px = load_image(tmp_path / "rgba.png").pixels
    assert px[0, 0] == 0.0 and px[1, 1] == pytest.approx(200 / 255, abs=1e-3)


def test_bad_inputs_give_specific_errors(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.png"
    junk.write_bytes(os.urandom(2048))
    good = (XRAY / "images").iterdir().__next__().read_bytes()
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(good[: len(good) // 2])
    fake_dicom = tmp_path / "fake.dcm"
    fake_dicom.write_bytes(b"\0" * 128 + b"DICM" + os.urandom(300))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    cases = {
        empty: "empty file",
        junk: "not a PNG, JPEG or DICOM",
        trunc: "cannot decode",
        fake_dicom: "not a readable DICOM file",
        text: "not a PNG, JPEG or DICOM",
        tmp_path / "missing.png": "file not found",
        tmp_path: "is a directory",
    }
    for path, reason in cases.items():
        with pytest.raises(ImageLoadError) as info:
            load_images(path)
        assert reason in info.value.reason, (path, info.value.reason)
        assert info.value.path == path


def test_decompression_bomb_refused_before_decoding(tmp_path):
    # A valid PNG header declaring 100,000 x 100,000 pixels with almost no data.
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png)
    assert 100_000 * 100_000 > MAX_PIXELS
    with pytest.raises(ImageLoadError, match="refused before decoding|decompression bomb"):
        load_images(bomb)


def test_display_load_skips_voi_and_its_first_window_reproduces_the_model_input():
    for name in ("RG1_J2KI.dcm", "RG3_UNC.dcm", "nested_extensionless/77654033/CR1/6154", "pydicom_MR_small_implicit.dcm"):
        model_in, shown = load_image(DICOM / name), load_image(DICOM / name, apply_voi=False)
        assert model_in.windows == () and len(shown.windows) == 1
        w = shown.windows[0]
        np.testing.assert_allclose(np.clip((shown.pixels - w.lo) / (w.hi - w.lo), 0, 1), model_in.pixels, atol=1e-5)
    ct = load_image(DICOM / "pydicom_CT_small.dcm", apply_voi=False)  # no window in the header: HU under the cursor
    ds = pydicom.dcmread(DICOM / "pydicom_CT_small.dcm")
    hu = ds.pixel_array[3, 4] * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert ct.raw_value(float(ct.pixels[3, 4])) == pytest.approx(hu, abs=0.05)
    mono1 = load_image(DICOM / "RG3_UNC.dcm", apply_voi=False)  # inverted: pixel 1 is stored 0
    assert mono1.value_range == (1023.0, 0.0) and mono1.raw_value(1.0) == 0.0


def test_every_header_window_and_voi_lut_becomes_a_display_preset(tmp_path):
    from pydicom.dataset import Dataset

    ds = pydicom.dcmread(DICOM / "RG2_J2KI.dcm")  # MONOCHROME2, 10 bits stored: 0..1023
    ds.WindowCenter, ds.WindowWidth = [511, 300], [1024, 200]
    ds.WindowCenterWidthExplanation = ["FULL", "BONE"]
    lut = Dataset()
    lut.LUTDescriptor, lut.LUTExplanation = [256, 100, 8], "SOFT"
    lut.add_new("LUTData", "US", list(range(256)))
    ds.VOILUTSequence = [lut]
    out = tmp_path / "multi.dcm"
    ds.save_as(out)
    names = [w.name for w in load_image(out, apply_voi=False).windows]
    assert names == ["FULL (C 511 / W 1024)", "BONE (C 300 / W 200)", "SOFT (LUT, shown linear)"]
    bone = load_image(out, apply_voi=False).windows[1]
    assert (bone.lo, bone.hi) == pytest.approx(((299.5 - 99.5) / 1023, (299.5 + 99.5) / 1023))
    soft = load_image(out, apply_voi=False).windows[2]
    assert (soft.lo, soft.hi) == pytest.approx((100 / 1023, 355 / 1023))


def test_one_decode_gives_the_display_pixels_and_the_models_input():
    """An image shown (VOI not applied, every header window offered) and then analysed is
    decoded once: ``model_input`` keeps the model's input beside the display pixels, equal
    to what a separate model load gives, for every decodable DICOM of the corpus."""
    from engine.io import is_dicom, load_images

    checked = windowed = 0
    for f in sorted(p for p in DICOM.rglob("*") if p.is_file() and is_dicom(p)):
        try:
            model = load_images(f)
        except ImageLoadError:
            continue
        shown = load_images(f, apply_voi=False, model_input=True)
        for a, b in zip(model, shown):
            m = b.for_model()
            assert np.array_equal(a.pixels, m.pixels) and a.value_range == m.value_range and m.windows == (), f
            windowed += b.model_pixels is not None and b.windows != ()
            checked += 1
    assert checked >= 20 and windowed >= 3
