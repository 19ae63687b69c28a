"""The desktop's decoder process: same pixels as in-process decoding, the engine's
errors with their reasons, and a crashing decoder costing one file only."""

import os

import numpy as np
import pytest

from engine.errors import ImageLoadError
from engine.io import load_image, load_images
from tests.conftest import DICOM, XRAY


def _die(path, *args):  # runs in the child: a decoder that takes the process down
    os._exit(3)


@pytest.fixture(scope="module")
def pool():
    from msfm_desktop.decoder import DecodePool

    p = DecodePool()
    yield p
    p.shutdown()


def test_child_decodes_exactly_as_the_engine(pool):
    for name, voi in (("RG1_J2KI.dcm", True), ("RG3_JLSN.dcm", False), ("nested_extensionless/77654033/CR1/6154", False)):
        got, ref = pool.load_image(DICOM / name, apply_voi=voi), load_image(DICOM / name, apply_voi=voi)
        np.testing.assert_array_equal(got.pixels, ref.pixels)
        assert (got.meta, got.windows, got.value_range, got.source) == (ref.meta, ref.windows, ref.value_range, ref.source)
    png = sorted((XRAY / "images").glob("*.png"))[0]
    assert [im.pixels.shape for im in pool.load_images(png)] == [im.pixels.shape for im in load_images(png)]
    from engine.io.thumbnails import load_thumbnail

    np.testing.assert_array_equal(pool.thumbnail(png, 32), load_thumbnail(png, 32))


def test_child_errors_keep_their_reason(pool):
    with pytest.raises(ImageLoadError) as e:
        pool.load_image(DICOM / "RG3_JPLY.dcm")
    assert e.value.path == DICOM / "RG3_JPLY.dcm" and e.value.reason.startswith("cannot decode pixel data (JPEG Extended")
    with pytest.raises(ImageLoadError, match="no pixel data"):
        pool.thumbnail(DICOM / "pydicom_test-SR.dcm")


def test_a_crashing_decoder_costs_one_file_and_a_new_child_takes_over(pool):
    with pytest.raises(ImageLoadError, match="the image decoder crashed on this file"):
        pool._call(DICOM / "RG3_UNC.dcm", _die)
    assert pool.load_image(DICOM / "RG3_UNC.dcm").pixels.shape == (1760, 1760)


def test_a_decoder_killed_while_idle_does_not_fail_the_next_file(pool):
    import signal

    pool.load_image(DICOM / "RG3_UNC.dcm")
    (child,) = list(pool._executor()._processes.values())
    os.kill(child.pid, signal.SIGKILL)  # e.g. the out-of-memory killer, between two files
    child.join(10)
    assert pool.load_image(DICOM / "RG3_UNC.dcm").pixels.shape == (1760, 1760)


def test_study_prediction_through_the_child_matches_in_process(pool, resnet18_model):
    from engine.infer import Predictor

    predictor = Predictor(resnet18_model, device="cpu", batch_size=2, enforce_scope=False)  # RG1 is a chest CR: research override
    paths = [DICOM / "RG1_J2KI.dcm", DICOM / "RG3_JPLY.dcm", sorted((XRAY / "images").glob("*.png"))[0]]
    steps = list(predictor.iter_predict(paths, loader=pool.load_images, batch_size=1))
    direct = list(predictor.iter_predict(paths, batch_size=1))
    assert [len(s.predictions) for s in steps] == [len(s.predictions) for s in direct] == [1, 0, 1]
    assert [e.reason for s in steps for e in s.errors] == [e.reason for s in direct for e in s.errors]
    a = [p.probability for s in steps for p in s.predictions]
    b = [p.probability for s in direct for p in s.predictions]
    assert a == pytest.approx(b, abs=1e-6)


def test_an_orphaned_decoder_exits_when_the_app_dies(tmp_path):
    """The app killed with SIGKILL runs no clean-up; its decoder child must not linger."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "app.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(__import__('tests.conftest', fromlist=['REPO']).REPO)!r})\n"
        "if __name__ == '__main__':\n"
        "    from msfm_desktop.decoder import DecodePool\n"
        "    pool = DecodePool()\n"
        f"    pool.load_image({str(DICOM / 'RG3_UNC.dcm')!r})\n"
        "    import multiprocessing, os\n"
        "    print(*[c.pid for c in multiprocessing.active_children()], flush=True)\n"
        "    import time; time.sleep(60)\n"
    )
    app = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    children = [int(p) for p in app.stdout.readline().split()]
    assert children
    app.send_signal(signal.SIGKILL)
    app.wait()
    deadline = time.time() + 15
    alive = lambda pid: os.path.exists(f"/proc/{pid}") and "zombie" not in open(f"/proc/{pid}/status").read().lower()  # noqa: E731
    while time.time() < deadline and any(alive(p) for p in children):
        time.sleep(0.2)
    assert not any(alive(p) for p in children)


def test_a_file_thumbnailed_shown_and_analysed_is_decoded_once(pool):
    """The child keeps its last files decoded: the browser's thumbnail, the viewer's image
    (no VOI, every window) and the model's input (VOI applied) of one DICOM come from one
    decode, and each equals what the engine gives on its own."""
    from engine.io.thumbnails import load_thumbnail

    path = DICOM / "RG3_JLSN.dcm"
    pool.load_image(DICOM / "RG1_J2KI.dcm")  # something else decoded first
    before = pool.decodes()
    thumb = pool.thumbnail(path, 32)
    shown = pool.load_image(path, apply_voi=False, model_input=True)
    model = pool.load_image(path)
    assert pool.decodes() == before + 1
    np.testing.assert_array_equal(thumb, load_thumbnail(path, 32))
    np.testing.assert_array_equal(shown.pixels, load_image(path, apply_voi=False).pixels)
    np.testing.assert_array_equal(model.pixels, load_image(path).pixels)
    np.testing.assert_array_equal(shown.for_model().pixels, model.pixels)
    assert shown.windows == load_image(path, apply_voi=False).windows and model.windows == ()


def test_two_links_to_one_file_are_two_sources(pool, tmp_path):
    """The recent-files cache answers for the path asked for: an image reached through a
    second link names that link as its source (the viewer checks it against the open study)."""
    png = sorted((XRAY / "images").glob("*.png"))[0]
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.symlink_to(png)
    b.symlink_to(png)
    assert pool.load_image(a, apply_voi=False, model_input=True).source == a
    assert pool.load_image(b, apply_voi=False, model_input=True).source == b
    assert pool.thumbnail(b, 16).shape[0] > 0
