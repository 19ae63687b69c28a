"""The PACS outbox: exported objects that did not reach the PACS, kept until they do.

A send that fails after its retry (:func:`.pacs.send`) leaves its files here, in
``outbox.json`` in the user data folder (``engine.resources.data_dir``), so quitting the app or a
crash does not forget them: the next start says how many wait, and *Send queued objects*
offers them again. A file that is stored is taken off; one whose file was deleted or moved
is reported and taken off, since there is nothing left to send. The outbox holds paths to
the exported files only, never image data.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ..atomic import write_json_atomic
from ..resources import data_dir
from ..tasks import drive
from .pacs import PacsConfig, Progress, SendProgress, SendResult, iter_send

FILE = "outbox.json"


@dataclass(frozen=True)
class QueuedObject:
    """A file waiting to be sent: ``peer`` is the PACS it failed to reach (``AE@host:port``),
    ``reason`` the last failure, ``tries`` how many send runs it has been through."""

    path: str
    peer: str
    queued: str
    reason: str
    tries: int = 1


class Outbox:
    """The queue in ``folder`` (default: the user data folder). Every change is written at
    once (atomically), so a second :class:`Outbox` on the same folder, or the next start of
    the app, sees it."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.path = Path(folder or data_dir()) / FILE

    def entries(self) -> list[QueuedObject]:
        try:
            rows = json.loads(self.path.read_text(encoding="utf-8")).get("objects", [])
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise OSError(f"the PACS outbox {self.path} cannot be read: {exc}") from exc
        return [QueuedObject(**r) for r in rows]

    def count(self) -> int:
        return len(self.entries())

    def _write(self, rows: Sequence[QueuedObject]) -> None:
        write_json_atomic(self.path, {"objects": [asdict(r) for r in rows]})

    def record(self, results: Sequence[SendResult], cfg: PacsConfig) -> None:
        """Take stored files off the queue, put (or keep) failed ones on it with their reason."""
        rows = {r.path: r for r in self.entries()}
        now = _dt.datetime.now().isoformat(timespec="seconds")
        for res in results:
            key = str(Path(res.path).resolve())
            if res.attempts == 0:  # never offered (not readable DICOM): sending again cannot help
                continue
            if res.ok:
                rows.pop(key, None)
            else:
                old = rows.get(key)
                rows[key] = QueuedObject(key, cfg.describe(), old.queued if old else now, res.message, (old.tries + 1) if old else 1)
        self._write(list(rows.values()))

    def forget(self, paths: Sequence[str | Path]) -> None:
        """Take files off the queue without sending them (the user's choice)."""
        drop = {str(Path(p).resolve()) for p in paths}
        self._write([r for r in self.entries() if r.path not in drop])

    def send_queued(self, cfg: PacsConfig, progress: Progress | None = None,
                    cancel: Callable[[], bool] | None = None) -> list[SendResult]:
        """:meth:`iter_send_queued` run to its end (``progress``/``cancel`` as :func:`.pacs.send`)."""
        report = None if progress is None else (lambda s: progress(s.done, s.total, s.result))
        return drive(self.iter_send_queued(cfg), report, cancel) or []

    def iter_send_queued(self, cfg: PacsConfig) -> Generator[SendProgress, None, list[SendResult]]:
        """Send every queued file to ``cfg`` (the PACS configured now) and update the queue,
        as a task (:func:`.pacs.iter_send`'s events and result).

        A queued file that no longer exists gets a failed result saying so and leaves the queue.
        """
        rows = self.entries()
        gone = [SendResult(Path(r.path), False, None, "not sent: the exported file no longer exists; taken off the queue", 0)
                for r in rows if not Path(r.path).is_file()]
        present = [r.path for r in rows if Path(r.path).is_file()]
        results = (yield from iter_send(present, cfg)) if present else []
        self.forget([g.path for g in gone])
        self.record(results, cfg)
        return gone + results


def send_and_queue(files: Sequence[str | Path], cfg: PacsConfig, outbox: Outbox | None = None,
                   progress: Progress | None = None, cancel: Callable[[], bool] | None = None) -> list[SendResult]:
    """:func:`iter_send_and_queue` run to its end."""
    report = None if progress is None else (lambda s: progress(s.done, s.total, s.result))
    return drive(iter_send_and_queue(files, cfg, outbox), report, cancel) or []


def iter_send_and_queue(files: Sequence[str | Path], cfg: PacsConfig, outbox: Outbox | None = None) -> Generator[SendProgress, None, list[SendResult]]:
    """:func:`.pacs.iter_send`, then what failed goes to the outbox (and what was stored leaves it)."""
    results = yield from iter_send(files, cfg)
    (outbox if outbox is not None else Outbox()).record(results, cfg)
    return results


__all__ = ["FILE", "Outbox", "QueuedObject", "iter_send_and_queue", "send_and_queue"]
