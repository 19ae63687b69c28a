"""Browser thumbnails from real radiographs and DICOM; undecodable files give their reason."""

import numpy as np
import pytest

from engine.errors import ImageLoadError
from engine.io import load_image
from engine.io.thumbnails import load_thumbnail, make_thumbnail
from tests.conftest import DICOM, XRAY


def test_thumbnail_keeps_aspect_and_brightness_of_a_monochrome1_cr():
    path = DICOM / "RG2_J2KI.dcm"  # 2140 x 1760 (rows x cols), MONOCHROME2
    full = load_image(path).pixels
    t = load_thumbnail(path, 128)
    assert t.dtype == np.uint8 and t.shape == (128, round(1760 * 128 / 2140))
    assert abs(t.mean() / 255.0 - full.mean()) < 0.01  # area averaging keeps the mean
    mono1 = load_thumbnail(DICOM / "RG3_UNC.dcm", 64)  # MONOCHROME1 arrives inverted: bone is bright
    assert mono1.shape == (64, 64) and mono1.max() > 200


def test_small_images_are_not_enlarged_and_png_works():
    assert make_thumbnail(np.full((16, 10), 0.5, np.float32), 128).shape == (16, 10)
    png = sorted((XRAY / "images").glob("*.png"))[0]
    t = load_thumbnail(png, 96)
    assert max(t.shape) == 96


def test_undecodable_dicom_raises_its_reason():
    with pytest.raises(ImageLoadError) as err:
        load_thumbnail(DICOM / "RG3_JPLY.dcm")
    assert err.value.reason.startswith("cannot decode pixel data (JPEG Extended") and "\n" not in err.value.reason
