"""Sending exports to a PACS: C-ECHO to verify the configured AE, C-STORE to send
(pynetdicom). This is the only code in the engine that opens a network connection, and
only when the user asks for it.

Files are sent as they were written: each is offered in its own transfer syntax and
pynetdicom sends the stored encoding, so what the PACS receives is what was exported.

A PACS may reject one object and drop the association with it (Orthanc answered "Odd
Fragment Length" to one object and the next 42 were lost with the association). So one
file's failure never ends the batch: a lost association is made again for the next file,
every file gets its own :class:`SendResult`, and what failed is tried once more on a fresh
association. What still failed goes to the :mod:`.outbox`, which survives a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pydicom

from ..errors import Cancelled
from ..tasks import drive


@dataclass(frozen=True)
class PacsConfig:
    """The peer (``ae_title`` at ``host:port``) and our own AE title."""

    ae_title: str
    host: str
    port: int
    calling_ae: str = "MSFM"
    timeout: float = 20.0

    def describe(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class SendResult:
    """One file's outcome. ``status``: the last C-STORE status (0x0000 success, 0xB000-0xBFFF
    warning, stored too), None when no response came; ``attempts``: how often it was offered."""

    path: Path
    ok: bool
    status: int | None
    message: str
    attempts: int = 1


#: ``progress(done, total, result)`` after each C-STORE; a retry pass counts again from 1.
Progress = Callable[[int, int, SendResult], None]


def _ae(cfg: PacsConfig):
    from pynetdicom import AE

    ae = AE(ae_title=cfg.calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = cfg.timeout
    return ae


def _associate(ae, cfg: PacsConfig):
    """(association, None) or (None, why not)."""
    try:
        assoc = ae.associate(cfg.host, int(cfg.port), ae_title=cfg.ae_title)
    except (OSError, ValueError) as exc:
        return None, f"cannot connect to {cfg.describe()}: {exc}"
    if assoc.is_established:
        return assoc, None
    if assoc.is_rejected:
        return None, f"{cfg.describe()} refused the association (check the AE titles)"
    # pynetdicom reports a refused TCP connection as an aborted association, as it does a
    # peer's A-ABORT: one message for both.
    return None, f"cannot connect to {cfg.describe()}: no association (is the PACS running, are host and port right?)"


def echo(cfg: PacsConfig) -> tuple[bool, str]:
    """C-ECHO: (True, "…") when the peer answers with Success."""
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # made at import time

    ae = _ae(cfg)
    ae.add_requested_context(Verification)
    assoc, why = _associate(ae, cfg)
    if assoc is None:
        return False, str(why)
    try:
        status = assoc.send_c_echo()
    finally:
        if assoc.is_established:
            assoc.release()
    if status and int(status.Status) == 0:
        return True, f"{cfg.describe()} answered C-ECHO"
    return False, f"{cfg.describe()} answered C-ECHO with status {getattr(status, 'Status', 'none')}"


def _store_one(assoc, path: Path, attempt: int) -> SendResult:
    try:
        status = assoc.send_c_store(path)
        code = int(status.Status) if status is not None and "Status" in status else None
    except Exception as exc:  # a peer that drops the connection mid-way
        return SendResult(path, False, None, f"{type(exc).__name__}: {exc}", attempt)
    ok = code is not None and (code == 0 or 0xB000 <= code <= 0xBFFF)
    if code == 0:
        msg = "stored"
    elif code is None:
        msg = "no response (timeout or association aborted)"
    else:
        msg = f"{'stored with warning' if ok else 'rejected'}: status 0x{code:04X}"
        comment = getattr(status, "ErrorComment", None)
        if comment:
            msg += f" ({comment})"
    if not ok and not assoc.is_established:
        msg += "; the PACS closed the association"
    return SendResult(path, ok, code, msg, attempt)


@dataclass(frozen=True)
class SendProgress:
    """One C-STORE done: ``done`` of ``total`` in this pass (a retry pass counts again from 1)."""

    done: int
    total: int
    result: SendResult


def _pass(paths: Sequence[Path], headers: dict, cfg: PacsConfig, attempt: int, out: dict[Path, SendResult]) -> Iterator[SendProgress]:
    """Offer each file once (results into ``out``); an association lost on one file is made
    again for the next. :class:`~engine.errors.Cancelled` thrown in marks the rest not sent."""
    ae = _ae(cfg)
    for sop, ts in sorted({headers[p] for p in paths}):
        ae.add_requested_context(sop, [ts])
    assoc = None
    try:
        for i, p in enumerate(paths, 1):
            if assoc is None or not assoc.is_established:
                assoc, why = _associate(ae, cfg)
                if assoc is None:  # the peer is unreachable: trying each file would only wait longer
                    for q in paths[i - 1:]:
                        out[q] = SendResult(q, False, None, str(why), attempt)
                    break
            out[p] = res = _store_one(assoc, p, attempt)
            if not res.ok and assoc.is_established:
                # A peer that rejects an object may drop the association a moment later, while
                # the next object is on the wire: start the next one on a fresh association.
                assoc.release()
            try:
                yield SendProgress(i, len(paths), res)
            except Cancelled:
                for q in paths[i:]:
                    out[q] = SendResult(q, False, None, "not sent: cancelled", attempt)
                raise
    finally:
        if assoc is not None and assoc.is_established:
            assoc.release()


def send(files: Sequence[str | Path], cfg: PacsConfig, progress: Progress | None = None,
         cancel: Callable[[], bool] | None = None, retry: bool = True) -> list[SendResult]:
    """:func:`iter_send` run to its end: ``progress(done, total, result)`` after each C-STORE;
    ``cancel()`` returning True stops before the next file (the rest: "not sent: cancelled")."""
    report = None if progress is None else (lambda s: progress(s.done, s.total, s.result))
    return drive(iter_send(files, cfg, retry), report, cancel) or []


def iter_send(files: Sequence[str | Path], cfg: PacsConfig, retry: bool = True) -> Generator[SendProgress, None, list[SendResult]]:
    """C-STORE every file, as a task (:mod:`engine.tasks`): a :class:`SendProgress` per
    C-STORE; returns one :class:`SendResult` per file, in the given order.

    A rejected file or a dropped association costs that file only: after any failure the next
    file goes over a new association. With ``retry`` every file that failed (and was not cancelled) is offered
    once more, on a fresh association, after the others. :class:`~engine.errors.Cancelled`
    thrown in stops before the next file and returns every file's result.
    """
    paths = [Path(f) for f in files]
    headers: dict[Path, tuple[str, str]] = {}
    results: dict[Path, SendResult] = {}
    for p in paths:
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
            headers[p] = (str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
        except Exception as exc:
            results[p] = SendResult(p, False, None, f"not sent: not a readable DICOM file ({type(exc).__name__}: {exc})", 0)
    todo = [p for p in paths if p in headers]
    try:
        if todo:
            yield from _pass(todo, headers, cfg, 1, results)
            again = [p for p in todo if not results[p].ok and "cancelled" not in results[p].message]
            if retry and again:
                first = {p: results[p] for p in again}
                yield from _pass(again, headers, cfg, 2, results)
                for p in again:
                    r = results[p]
                    if not (r.ok or r.message == first[p].message or "cancelled" in r.message):
                        results[p] = replace(r, message=f"{r.message} (first try: {first[p].message})")
    except Cancelled:
        pass
    return [results[p] for p in paths]


__all__ = ["PacsConfig", "Progress", "SendProgress", "SendResult", "echo", "iter_send", "send"]
