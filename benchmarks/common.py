"""Shared pieces of the benchmark suite: result rows with targets, timing in rotation,
memory readings, and the table every benchmark prints.

Every figure a benchmark reports is a ratio of two variants timed in the same process,
in rotation (this machine drifts ±30–40 % minute to minute), or a measurement beside an
absolute target that the issue sets (seconds for 1,000 files, milliseconds of stall).
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MSFM_SHARED", REPO.parent / "shared"))
XRAY = SHARED / "data" / "xray" / "images"
DICOM = SHARED / "data" / "dicom"
RESULTS = REPO / "benchmarks" / "results"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@dataclass
class Row:
    """One reported figure: ``value`` against ``target`` (``sense`` "<=" or ">=")."""

    benchmark: str
    name: str
    value: float
    target: float | None
    sense: str = ">="
    unit: str = "x"
    detail: str = ""

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.value >= self.target if self.sense == ">=" else self.value <= self.target

    def to_json(self) -> dict:
        return {**asdict(self), "met": self.met}


def rotate(variants: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each variant, timed in turn ``repeats`` times after a warm-up."""
    for fn in variants.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for k, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def rss_mb() -> float:
    """Resident memory of this process now (MiB), from /proc."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_rows(rows: list[Row]) -> None:
    for r in rows:
        target = "" if r.target is None else f"target {r.sense} {r.target:g}{r.unit}"
        verdict = "" if r.met is None else ("met" if r.met else "NOT MET")
        print(f"  {r.benchmark:11} {r.name:48} {r.value:9.3f}{r.unit:3} {target:18} {verdict:8} {r.detail}", flush=True)
