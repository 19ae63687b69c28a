"""The desktop bundle (issue 10): its recipe, icons, desktop entry and licence list, the
app's ``--self-check``, and (slow) a real PyInstaller build copied to a fresh folder and
run there with no Python on PATH: ``msfm --version``, ``msfm predict`` without network,
and the GUI on a real X server (Xvfb)."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import DICOM, REPO

INSTALLER = REPO / "installer"
ICONS = REPO / "resources" / "icons"
VENV_BIN = Path(sys.executable).parent


def test_spec_and_build_script_use_repo_relative_paths_only():
    for f in [INSTALLER / "msfm.spec", INSTALLER / "build.sh", INSTALLER / "windows" / "msfm-desktop.iss"]:
        text = f.read_text()
        found = re.findall(r"(/home/\w+|/root\b|/work\b|/tmp/|[A-Z]:\\\\)", text)
        assert not found, f"{f.name} hard-codes {found}"
    spec = (INSTALLER / "msfm.spec").read_text()
    assert "SPECPATH" in spec and "name=\"msfm\"" in spec and "name=NAME" in spec


def test_icon_set_is_rendered_from_the_svg_at_every_size():
    for png in sorted(ICONS.glob("msfm-desktop-*.png")):
        size = int(png.stem.rsplit("-", 1)[1])
        im = Image.open(png).convert("RGBA")
        assert im.size == (size, size), png.name
        a = np.asarray(im)[..., 3]
        assert a[0, 0] == 0 and a[-1, -1] == 0, f"{png.name}: corners of the rounded square must be transparent"
        assert a[size // 2, size // 2] == 255, f"{png.name}: the centre must be opaque"
    assert len(list(ICONS.glob("msfm-desktop-*.png"))) >= 8
    ico = Image.open(ICONS / "msfm-desktop.ico")
    assert {(16, 16), (32, 32), (48, 48), (256, 256)} <= set(ico.info["sizes"])
    icns = Image.open(ICONS / "msfm-desktop.icns")
    assert icns.size[0] >= 512


def test_desktop_entry_passes_desktop_file_validate():
    entry = INSTALLER / "linux" / "msfm-desktop.desktop"
    if shutil.which("desktop-file-validate") is None:
        pytest.skip("desktop-file-validate (desktop-file-utils) not installed; scripts/bootstrap.sh installs it")
    out = subprocess.run(["desktop-file-validate", str(entry)], capture_output=True, text=True)
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str
    cp.read(entry)
    d = cp["Desktop Entry"]
    assert d["Exec"].split()[0] == "msfm-desktop" and d["Icon"] == "msfm-desktop"
    assert d["StartupWMClass"] == "msfm-desktop"  # the app sets this desktop file name


def test_frozen_resources_are_found_under_meipass(monkeypatch, tmp_path):
    import engine.resources as res

    assert res._root() == REPO
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert res._root() == tmp_path


def test_licence_trace_finds_each_origin(tmp_path):
    sys.path.insert(0, str(INSTALLER))
    try:
        import licenses
    finally:
        sys.path.remove(str(INSTALLER))
    import PySide6
    import torch

    stray = tmp_path / "stray.so"
    stray.write_bytes(b"\x7fELF")
    paths = [torch.__file__, str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"), PySide6.__file__,
             os.__file__, str(REPO / "engine" / "infer.py"), str(stray)]
    system_lib = next((p for p in ("/usr/lib/x86_64-linux-gnu/libxcb.so.1", "/usr/lib/aarch64-linux-gnu/libxcb.so.1") if Path(p).exists()), None)
    if system_lib:
        paths.append(system_lib)
    comps, unknown = licenses.trace(paths, REPO)
    by = {c.name: c for c in comps}
    assert comps[0].name == "MSFM Desktop" and comps[0].licence == "Apache-2.0" and comps[0].files == 1
    assert by["torch"].files == 2 and "Apache-2.0" in by["torch"].licence and by["torch"].texts
    assert by["Python"].origin == "Python runtime" and "PYTHON SOFTWARE FOUNDATION" in "".join(by["Python"].texts.values()).upper()
    pyside = next(c for n, c in by.items() if n.lower().startswith("pyside6"))
    assert pyside.copyleft and "LGPL" in pyside.licence
    if Path("/usr/share/common-licenses/LGPL-3").is_file():
        assert any("LGPL" in k for k in pyside.texts), "PySide6 ships no licence text: it must come from common-licenses"
    if system_lib and shutil.which("dpkg"):
        assert any(c.origin == "Debian package" and c.name.startswith("libxcb1") for c in comps)
    assert unknown == [os.path.realpath(stray)]
    md = licenses.render_markdown(comps, unknown, "t")
    assert "## Copyleft components" in md and str(os.path.realpath(stray)) in md and "CC BY 4.0" in md


def _run_self_check(args: list[str], tmp_path: Path, timeout: int = 300) -> tuple[int, dict]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", MSFM_DATA_DIR=str(tmp_path / "data"), HOME=str(tmp_path / "home"))
    out = subprocess.run([str(VENV_BIN / "msfm-desktop"), *args], capture_output=True, text=True, timeout=timeout, env=env)
    start = out.stdout.find("{")
    assert start >= 0, out.stdout + out.stderr
    return out.returncode, json.loads(out.stdout[start:])


def test_self_check_opens_the_demo_analyses_and_saves_a_picture(tmp_path):
    shot = tmp_path / "shot.png"
    code, summary = _run_self_check(["--self-check", str(shot)], tmp_path)
    assert code == 0 and summary["ok"], summary
    assert Path(summary["study"]) == REPO / "resources" / "demo" and summary["images"] == 9 and summary["problems"] == []
    assert 0.0 <= summary["probability"] <= 1.0 and summary["label"] in ("normal", "abnormal")
    x0, y0, x1, y1 = summary["fused_box_xyxy"]
    assert 0 <= x0 < x1 and 0 <= y0 < y1
    im = np.asarray(Image.open(shot).convert("RGB"))
    assert im.shape[0] > 400 and im.shape[1] > 600 and im.std() > 20  # a real window, not a blank grab


def test_a_later_start_analyses_without_importing_torch(tmp_path, monkeypatch):
    """The first start builds the PyTorch predictor, which caches the model's graphs and the
    torch-free predictor's manifest; every later start analyses without torch (engine.lite)
    and finds the same."""
    monkeypatch.setenv("MSFM_CACHE_DIR", str(tmp_path / "cache"))
    code, first = _run_self_check(["--self-check", str(tmp_path / "first.png")], tmp_path)
    assert code == 0 and first["ok"] and first["torch_loaded"], first
    assert list((tmp_path / "cache" / "onnx").glob("*-lite.json"))
    code, later = _run_self_check(["--self-check", str(tmp_path / "later.png")], tmp_path)
    assert code == 0 and later["ok"] and not later["torch_loaded"], later
    assert "ONNX Runtime" in later["device"] and later["model"] == first["model"]
    assert (later["image"], later["label"]) == (first["image"], first["label"]) and abs(later["probability"] - first["probability"]) < 1e-3
    assert max(abs(a - b) for a, b in zip(later["fused_box_xyxy"], first["fused_box_xyxy"])) <= 1.0


def test_self_check_fails_with_a_reason_on_a_folder_without_images(tmp_path):
    empty = tmp_path / "empty study"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    code, summary = _run_self_check(["--self-check", str(tmp_path / "shot.png"), str(empty)], tmp_path)
    assert code == 1 and not summary["ok"] and "no usable image" in summary["error"]
    assert not (tmp_path / "shot.png").exists()


# ---------------------------------------------------------------- the CPU-only variant
HOOK = INSTALLER / "rthook_torchvision_cpu.py"
COMPARE = """
import json, sys
a = json.load(open(sys.argv[1]))["predictions"]; b = {p["file"]: p for p in json.load(open(sys.argv[2]))["predictions"]}
for p in a:
    q = b[p["file"]]
    assert abs(p["probability"] - q["probability"]) < 1e-5, (p["file"], p["probability"], q["probability"])
    for k in ("object_box", "fused_box", "lesion_box", "peak"):
        assert p[k] == q[k], (p["file"], k, p[k], q[k])
    assert [w["box"] for w in p["windows"]] == [w["box"] for w in q["windows"]], p["file"]
print(len(a))
"""


def test_runtime_hook_leaves_torchvision_alone_where_its_operators_load():
    # The development install: the hook finds the compiled operators and changes nothing.
    code = (f"import runpy, sys; runpy.run_path({str(HOOK)!r}); import torchvision, torch; "
            "print(torchvision.extension._has_ops(), hasattr(sys.modules['torchvision._meta_registrations'], 'meta_nms'), "
            "torch.ops.torchvision.nms.default is not None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.split() == ["True", "True", "True"], out.stderr


def test_runtime_hook_skips_only_the_fake_kernels_when_the_operators_cannot_load():
    # The CPU bundle's case, reproduced here by hiding the compiled library from the hook:
    # torchvision imports, its meta registrations are the empty stand-in, nothing was declared.
    code = (f"import runpy, sys; g = runpy.run_path({str(HOOK)!r}); "
            "import importlib.util, types; "
            "hook = [f for f in sys.meta_path if type(f).__name__ == '_BeforeTorchvision'][0]; "
            "hook.find_spec.__globals__['_compiled_ops_load'] = lambda d: False; "
            "import torchvision; m = sys.modules['torchvision._meta_registrations']; "
            "print(m.__doc__.startswith('Left empty'), hasattr(m, 'meta_nms'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.split() == ["True", "False"], out.stderr


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the CPU build environment is made for Linux")
def test_cpu_torch_environment_gives_the_development_installs_findings(tmp_path):
    """The CPU bundle's environment (CPU torch 2.13, torchvision without its operators,
    the runtime hook, engine.tvops' stand-ins) before any freezing: same findings."""
    venv = REPO / "build" / "venv-cpu"
    made = subprocess.run(["bash", str(INSTALLER / "cpu_venv.sh"), str(venv)], capture_output=True, text=True, timeout=1500, cwd=REPO)
    assert made.returncode == 0, made.stderr[-3000:]
    py = venv / "bin" / "python"
    env = dict(os.environ, PYTHONPATH=str(REPO), MSFM_CACHE_DIR=str(tmp_path / "cache"))
    run = (f"import runpy, sys; runpy.run_path({str(HOOK)!r}); import torch, engine.tvops as t; "
           "assert torch.version.cuda is None and not t.COMPILED_OPS; "
           "from engine.cli import main; sys.exit(main(sys.argv[1:]))")
    demo = REPO / "resources" / "demo"
    cpu = subprocess.run([str(py), "-c", run, "predict", str(demo), "--json", str(tmp_path / "cpu.json"), "--quiet"], env=env, capture_output=True, text=True, timeout=900)
    assert cpu.returncode == 0, cpu.stderr[-3000:]
    ref = subprocess.run([sys.executable, "-m", "engine.cli", "predict", str(demo), "--json", str(tmp_path / "dev.json"), "--quiet"],
                         env=env, capture_output=True, text=True, timeout=900)
    assert ref.returncode == 0, ref.stderr[-3000:]
    same = subprocess.run([sys.executable, "-c", COMPARE, str(tmp_path / "cpu.json"), str(tmp_path / "dev.json")], capture_output=True, text=True)
    assert same.returncode == 0 and same.stdout.strip() == "9", same.stderr


# ---------------------------------------------------------------- the real bundle (slow)
def _timed(cmd: list[str], env: dict, timeout: int, cwd: Path | None = None) -> tuple[subprocess.CompletedProcess, float]:
    t = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    return out, time.perf_counter() - t


def _offline(cmd: list[str]) -> list[str]:
    """``cmd`` in a new network namespace (no interface but a down loopback) where the
    machine allows it, so "offline" is enforced rather than assumed."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "--net", "true"], capture_output=True).returncode == 0:
        return [unshare, "--net", *cmd]
    return cmd


@pytest.fixture
def xvfb_display():
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb not installed (scripts/bootstrap.sh installs it)")
    r, w = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "1280x800x24", "-nolisten", "tcp"], pass_fds=(w,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    with os.fdopen(r) as fh:
        display = fh.readline().strip()
    yield f":{display}"
    proc.terminate()
    proc.wait(10)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the bundle test builds the Linux bundle")
@pytest.mark.parametrize("variant", ["cpu", "cuda"])
def test_bundle_builds_and_runs_in_a_fresh_folder_without_python(tmp_path, xvfb_display, variant):
    dist = tmp_path / "dist"
    build, build_s = _timed(["bash", str(INSTALLER / "build.sh"), "--variant", variant, "--dist", str(dist)], dict(os.environ), 3000, REPO)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    built = dist / "msfm-desktop"
    info = json.loads((built / "BUILD_INFO.json").read_text())
    assert info["variant"].startswith(variant) and (info["cuda"] is None) == (variant == "cpu")
    if variant == "cpu":
        # Issue 21: a bundle a hospital PC without an NVIDIA GPU can take, without CUDA in it.
        assert info["size_bytes"] <= 1.3e9, info["size_bytes"]
        assert not list(built.rglob("libtorch_cuda*")) and not (built / "_internal" / "nvidia").exists()
    # One executable, the command line a link to it (Linux).
    assert (built / "msfm").is_symlink() and os.readlink(built / "msfm") == "msfm-desktop"

    # "Copied to a fresh directory": another path (with a space), the build removed.
    fresh = tmp_path / "fresh deploy" / "MSFM Desktop"
    fresh.parent.mkdir()
    shutil.copytree(built, fresh, symlinks=True)
    shutil.rmtree(dist)
    for p in fresh.rglob("*"):
        if p.is_symlink():
            assert fresh.resolve() in p.resolve().parents, f"{p} points outside the bundle: {os.readlink(p)}"
    size = sum(p.stat().st_size for p in fresh.rglob("*") if p.is_file() and not p.is_symlink())

    home = tmp_path / "home"
    home.mkdir()
    bare_path = str(tmp_path / "empty-bin")
    Path(bare_path).mkdir()
    env = {"PATH": bare_path, "HOME": str(home), "LANG": "C.UTF-8", "MSFM_DATA_DIR": str(tmp_path / "user-data")}
    assert shutil.which("python3", path=bare_path) is None and shutil.which("python", path=bare_path) is None

    version, cold_s = _timed([str(fresh / "msfm"), "--version"], env, 300)
    assert version.returncode == 0 and version.stdout.strip() == f"msfm {info['version']}", version.stdout + version.stderr
    _, warm_s = _timed([str(fresh / "msfm"), "--version"], env, 300)

    demo = fresh / "_internal" / "resources" / "demo"
    out_json = tmp_path / "out.json"
    pred, predict_s = _timed(_offline([str(fresh / "msfm"), "predict", str(demo), "--json", str(out_json)]), env, 900)
    assert pred.returncode == 0, pred.stdout[-2000:] + pred.stderr[-2000:]
    result = json.loads(out_json.read_text())
    assert len(result["predictions"]) == 9 and result["errors"] == []
    # The frozen engine is the same engine: the development install gives the same numbers.
    ref_json = tmp_path / "ref.json"
    ref = subprocess.run([str(VENV_BIN / "msfm"), "predict", str(REPO / "resources" / "demo"), "--json", str(ref_json), "--quiet"],
                         capture_output=True, text=True, timeout=900)
    assert ref.returncode == 0, ref.stderr
    want = {Path(p["file"]).name: p for p in json.loads(ref_json.read_text())["predictions"]}
    for p in result["predictions"]:
        q = want[Path(p["file"]).name]
        assert p["probability"] == pytest.approx(q["probability"], abs=1e-5)
        assert p["fused_box"] == pytest.approx(q["fused_box"], abs=1e-3)

    shot = tmp_path / "bundle-gui.png"
    gui, gui_s = _timed([str(fresh / "msfm-desktop"), "--self-check", str(shot)], dict(env, DISPLAY=xvfb_display), 900)
    assert gui.returncode == 0, gui.stdout[-2000:] + gui.stderr[-2000:]
    summary = json.loads(gui.stdout[gui.stdout.find("{"):])
    assert summary["ok"] and summary["platform"] == "xcb" and summary["images"] == 9
    assert Path(summary["study"]) == demo
    assert np.asarray(Image.open(shot).convert("RGB")).std() > 20
    # `msfm predict` above cached the model's graphs and manifest: the app analysed without
    # torch (engine.lite) and found what the frozen PyTorch predictor found.
    assert summary["torch_loaded"] is False and "ONNX Runtime" in summary["device"], summary
    first = next(p for p in result["predictions"] if Path(p["file"]).name == Path(summary["image"]).name)
    assert summary["probability"] == pytest.approx(first["probability"], abs=1e-3)

    licences = (fresh / "licenses" / "THIRD_PARTY_LICENSES.md").read_text()
    for name in ("torch", "PySide6", "Python", "pydicom", "CC BY 4.0"):
        assert name in licences, name
    for f in ("msfm-desktop.desktop", "AppRun", "install.sh", "README.md", "msfm-desktop.png"):
        assert (fresh / f).is_file(), f
    assert (fresh / "_internal" / "resources" / "models" / "MODEL_CARD.md").is_file()
    # install.sh in place (DEST = the folder): commands on PATH, a valid menu entry that
    # runs the folder by absolute path, icons; --uninstall takes all of it away again.
    prefix = tmp_path / "prefix"
    inst_env = dict(env, PATH=f"{bare_path}:/usr/bin:/bin", PREFIX=str(prefix), DEST=str(fresh))
    inst = subprocess.run(["sh", str(fresh / "install.sh")], env=inst_env, capture_output=True, text=True, timeout=300)
    assert inst.returncode == 0, inst.stderr
    via_path = subprocess.run(["msfm", "--version"], env=dict(env, PATH=str(prefix / "bin")), capture_output=True, text=True, timeout=300)
    assert via_path.stdout.strip() == f"msfm {info['version']}", via_path.stderr
    entry = prefix / "share" / "applications" / "msfm-desktop.desktop"
    assert f'Exec="{fresh}/msfm-desktop" %f' in entry.read_text()
    if shutil.which("desktop-file-validate"):
        assert subprocess.run(["desktop-file-validate", str(entry)]).returncode == 0
    assert (prefix / "share" / "icons" / "hicolor" / "256x256" / "apps" / "msfm-desktop.png").is_file()
    if os.environ.get("MSFM_BUNDLE_SHOT"):
        shutil.copy(shot, os.environ["MSFM_BUNDLE_SHOT"])
    print(f"\nbundle {info['variant']} (torch {info['torch']}): {size / 1e9:.3f} GB ({size / 2**30:.2f} GiB), {info['files']} files; "
          f"build {build_s:.0f} s; msfm --version cold {cold_s:.2f} s, warm {warm_s:.2f} s; "
          f"predict demo (9 images, offline) {predict_s:.1f} s; GUI self-check {gui_s:.1f} s ({summary['seconds']} s in the app)")
    removed = subprocess.run(["sh", str(fresh / "install.sh"), "--uninstall"], env=inst_env, capture_output=True, text=True, timeout=300)
    assert removed.returncode == 0 and not fresh.exists() and not entry.exists() and not (prefix / "bin" / "msfm").exists()


def test_app_icon_has_every_size_for_the_window_and_taskbar(qapp):
    from msfm_desktop.main import app_icon

    sizes = {s.width() for s in app_icon().availableSizes()}
    assert {16, 32, 48, 256} <= sizes


def test_start_up_picture_shows_the_icon_and_names_the_version(qapp):
    from engine import __version__
    from msfm_desktop.main import start_up_picture

    splash = start_up_picture()
    assert __version__ in splash.message() and "loading" in splash.message()
    img = splash.pixmap().toImage()
    centre, corner = img.pixelColor(img.width() // 2, img.height() // 3), img.pixelColor(2, 2)
    assert centre != corner  # the icon is drawn on the background


def test_compile_is_refused_with_a_reason_inside_a_bundle(monkeypatch):
    from engine.errors import ConfigError
    from engine.train.setup import TrainConfig

    TrainConfig(data="x", compile=True)  # a source install may compile
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    with pytest.raises(ConfigError, match="not available in the desktop bundle"):
        TrainConfig(data="x", compile=True)
    TrainConfig(data="x")


def test_self_check_names_the_file_it_could_not_decode(tmp_path):
    study = tmp_path / "undecodable"
    study.mkdir()
    shutil.copy(DICOM / "RG2_JPLY.dcm", study)  # 12-bit JPEG Extended: no decoder for it
    code, summary = _run_self_check(["--self-check", str(tmp_path / "shot.png"), str(study)], tmp_path)
    assert code == 1 and "cannot show" in summary["error"] and "JPEG Extended" in summary["error"]
