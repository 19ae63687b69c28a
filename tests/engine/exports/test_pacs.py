"""PACS transport against real storage SCPs on loopback: one rejected object and a dropped
association do not end the batch, each file has its status, what failed is tried once more,
and what still failed waits in an outbox that a restart does not forget."""

from __future__ import annotations

import threading
from pathlib import Path

import pydicom
import pytest

from tests.conftest import free_port
from tests.engine.exports.test_exports import preds  # noqa: F401  (the varied DICOM and PNG predictions)


class RejectingPacs:
    """A pynetdicom storage SCP on 127.0.0.1 that behaves as Orthanc did: it answers one
    object with a failure status and then drops the association. ``reject`` UIDs are refused
    every time, ``reject_once`` UIDs only the first time."""

    def __init__(self, folder: Path, reject=(), reject_once=()) -> None:
        from pynetdicom import AE, AllStoragePresentationContexts, evt

        self.folder, self.reject, self.reject_once = folder, set(reject), set(reject_once)
        self.associations = 0
        self.port = free_port()
        ae = AE(ae_title="TESTPACS")
        ae.supported_contexts = AllStoragePresentationContexts
        handlers = [(evt.EVT_C_STORE, self._store), (evt.EVT_ACCEPTED, self._accepted)]
        self.server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=handlers)

    def _accepted(self, event) -> None:
        self.associations += 1

    def _store(self, event) -> int:
        ds = event.dataset
        uid = str(ds.SOPInstanceUID)
        if uid in self.reject or uid in self.reject_once:
            self.reject_once.discard(uid)
            threading.Timer(0.05, event.assoc.abort).start()  # the failure reaches us, then the association is gone
            return 0xC000
        ds.file_meta = event.file_meta
        ds.save_as(self.folder / f"{uid}.dcm", enforce_file_format=True)
        return 0x0000

    def stored(self) -> set[str]:
        return {p.stem for p in self.folder.glob("*.dcm")}

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def exported(tmp_path, preds):  # noqa: F811 (the fixture imported above)
    from engine.exports.export import export_dicom

    files = []
    for res in export_dicom(preds[:3], tmp_path / "out"):
        assert res.error is None
        files += [res.files[k] for k in ("sc", "sr", "gsps")]
    return files


def uid(path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def test_one_rejected_object_costs_that_object_only(tmp_path, exported):
    from engine.exports.outbox import Outbox, send_and_queue
    from engine.exports.pacs import PacsConfig

    bad, flaky = exported[1], exported[4]
    (tmp_path / "pacs").mkdir()
    pacs = RejectingPacs(tmp_path / "pacs", reject={uid(bad)}, reject_once={uid(flaky)})
    cfg = PacsConfig("TESTPACS", "127.0.0.1", pacs.port, timeout=5)
    seen = []
    try:
        results = send_and_queue(exported, cfg, Outbox(tmp_path / "data"), progress=lambda i, n, r: seen.append((i, n)))
    finally:
        pacs.close()
    by_path = {r.path: r for r in results}
    assert [r.path for r in results] == exported  # one result per file, in order
    assert not by_path[bad].ok and by_path[bad].status == 0xC000 and by_path[bad].attempts == 2
    assert "rejected: status 0xC000" in by_path[bad].message
    assert by_path[flaky].ok and by_path[flaky].attempts == 2
    assert all(r.ok for p, r in by_path.items() if p != bad), [(r.path.name, r.message, r.attempts) for r in results]
    assert pacs.stored() == {uid(p) for p in exported if p != bad}  # the other 8 arrived
    assert pacs.associations >= 3  # the association was made again after each drop
    assert seen[0] == (1, len(exported))
    queued = Outbox(tmp_path / "data").entries()  # a new instance: what a restart reads
    assert [q.path for q in queued] == [str(bad.resolve())]
    assert queued[0].peer == cfg.describe() and "0xC000" in queued[0].reason


def test_outbox_survives_and_empties_when_the_pacs_takes_the_objects(tmp_path, exported):
    from engine.exports.outbox import Outbox, send_and_queue
    from engine.exports.pacs import PacsConfig

    down = PacsConfig("TESTPACS", "127.0.0.1", free_port(), timeout=3)
    results = send_and_queue(exported[:4], down, Outbox(tmp_path / "data"))
    assert not any(r.ok for r in results) and all("cannot connect" in r.message or "refused" in r.message for r in results)
    box = Outbox(tmp_path / "data")
    assert box.count() == 4 and {q.tries for q in box.entries()} == {1}
    exported[3].unlink()  # the user deleted one export meanwhile

    (tmp_path / "pacs").mkdir()
    pacs = RejectingPacs(tmp_path / "pacs")
    try:
        again = Outbox(tmp_path / "data").send_queued(PacsConfig("TESTPACS", "127.0.0.1", pacs.port, timeout=5))
    finally:
        pacs.close()
    gone = [r for r in again if not r.ok]
    assert len(gone) == 1 and gone[0].path == exported[3].resolve() and "no longer exists" in gone[0].message
    assert pacs.stored() == {uid(p) for p in exported[:3]}
    assert Outbox(tmp_path / "data").count() == 0


def test_unreadable_file_is_reported_not_queued(tmp_path, exported):
    from engine.exports.outbox import Outbox, send_and_queue
    from engine.exports.pacs import PacsConfig

    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom at all")
    (tmp_path / "pacs").mkdir()
    pacs = RejectingPacs(tmp_path / "pacs")
    try:
        results = send_and_queue([junk, exported[0]], PacsConfig("TESTPACS", "127.0.0.1", pacs.port, timeout=5), Outbox(tmp_path / "data"))
    finally:
        pacs.close()
    assert not results[0].ok and "not a readable DICOM file" in results[0].message and results[1].ok
    assert Outbox(tmp_path / "data").count() == 0
