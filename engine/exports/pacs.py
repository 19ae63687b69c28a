"""Sending exports to a PACS: C-ECHO to verify the configured AE, C-STORE to send
(pynetdicom). This is the only code in the engine that opens a network connection, and
only when the user asks for it.

Files are sent as they were written: each is offered in its own transfer syntax and
pynetdicom sends the stored encoding, so what the PACS receives is what was exported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom


@dataclass
class PacsConfig:
    """The peer (``ae_title`` at ``host:port``) and our own AE title."""

    ae_title: str
    host: str
    port: int
    calling_ae: str = "MSFM"
    timeout: float = 20.0

    def describe(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass
class SendResult:
    path: Path
    ok: bool
    status: int | None  # the C-STORE status (0x0000 success), None when never sent
    message: str


def _ae(cfg: PacsConfig):
    from pynetdicom import AE

    ae = AE(ae_title=cfg.calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = cfg.timeout
    return ae


def echo(cfg: PacsConfig) -> tuple[bool, str]:
    """C-ECHO: (True, "…") when the peer answers with Success."""
    from pynetdicom.sop_class import Verification

    ae = _ae(cfg)
    ae.add_requested_context(Verification)
    try:
        assoc = ae.associate(cfg.host, int(cfg.port), ae_title=cfg.ae_title)
    except (OSError, ValueError) as exc:
        return False, f"cannot connect to {cfg.describe()}: {exc}"
    if not assoc.is_established:
        return False, f"{cfg.describe()} refused the association (check AE titles, host and port)"
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    if status and int(status.Status) == 0:
        return True, f"{cfg.describe()} answered C-ECHO"
    return False, f"{cfg.describe()} answered C-ECHO with status {getattr(status, 'Status', 'none')}"


def send(files: Sequence[str | Path], cfg: PacsConfig, progress: Callable[[int, int, SendResult], None] | None = None) -> list[SendResult]:
    """C-STORE every file over one association; one :class:`SendResult` per file."""
    paths = [Path(f) for f in files]
    headers = {}
    results: list[SendResult] = []
    ae = _ae(cfg)
    for p in paths:
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
            headers[p] = (str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
        except Exception as exc:
            results.append(SendResult(p, False, None, f"not a DICOM file: {exc}"))
    for sop, ts in sorted(set(headers.values())):
        ae.add_requested_context(sop, [ts])
    todo = [p for p in paths if p in headers]
    if not todo:
        return results
    try:
        assoc = ae.associate(cfg.host, int(cfg.port), ae_title=cfg.ae_title)
    except (OSError, ValueError) as exc:
        assoc = None
        reason = f"cannot connect to {cfg.describe()}: {exc}"
    else:
        reason = f"{cfg.describe()} refused the association"
    if assoc is None or not assoc.is_established:
        return results + [SendResult(p, False, None, reason) for p in todo]
    try:
        for i, p in enumerate(todo, 1):
            try:
                status = assoc.send_c_store(p)
                code = int(status.Status) if status is not None and "Status" in status else None
                ok = code is not None and (code == 0 or 0xB000 <= code <= 0xBFFF)  # success or warning
                msg = "stored" if code == 0 else f"status 0x{code:04X}" if code is not None else "no response (timeout or aborted)"
            except Exception as exc:  # a peer that drops the connection mid-way
                code, ok, msg = None, False, f"{type(exc).__name__}: {exc}"
            res = SendResult(p, ok, code, msg)
            results.append(res)
            if progress is not None:
                progress(i, len(todo), res)
            if not assoc.is_established:
                results += [SendResult(q, False, None, "association lost") for q in todo[i:]]
                break
    finally:
        if assoc.is_established:
            assoc.release()
    return results


__all__ = ["PacsConfig", "SendResult", "echo", "send"]
