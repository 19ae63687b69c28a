"""Run inside a network namespace that has only loopback (tests/test_orthanc.py starts it):
start Orthanc, send each batch of files with the engine's PACS code, and write what Orthanc
holds (every instance's tags, with its patient, study and series) as JSON.

    python -m tests.engine.exports.orthanc_helper JOB.json     # JOB: {"orthanc", "work", "batches": {name: [files]}}
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HTTP, DICOM_PORT = 8042, 4242


def rest(path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{HTTP}{path}", timeout=30) as r:
        return json.loads(r.read().decode("utf-8"))


def main(job_file: str) -> int:
    from engine.exports.pacs import PacsConfig, send

    job = json.loads(Path(job_file).read_text())
    work = Path(job["work"])
    (work / "db").mkdir(parents=True, exist_ok=True)
    cfg = {"Name": "MSFM-test", "StorageDirectory": str(work / "db"), "IndexDirectory": str(work / "db"), "DicomAet": "ORTHANC",
           "DicomPort": DICOM_PORT, "HttpPort": HTTP, "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "Plugins": [],
           "DicomCheckCalledAet": True, "ConcurrentJobs": 1}
    (work / "orthanc.json").write_text(json.dumps(cfg))
    out: dict = {"addresses": subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout.splitlines()}
    with open(work / "orthanc.log", "w") as log:
        proc = subprocess.Popen([job["orthanc"], str(work / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(300):
            try:
                out["system"] = rest("/system")
                break
            except OSError:
                time.sleep(0.1)
        pacs = PacsConfig("ORTHANC", "127.0.0.1", DICOM_PORT, timeout=30)
        out["send"] = {name: [[str(r.path), r.ok, r.message] for r in send(files, pacs)] for name, files in job["batches"].items()}
        instances = {}
        for iid in rest("/instances"):
            tags = rest(f"/instances/{iid}/simplified-tags")
            instances[tags["SOPInstanceUID"]] = {"tags": tags, "series": rest(f"/instances/{iid}/series")["MainDicomTags"],
                                                 "study": rest(f"/instances/{iid}/study")["MainDicomTags"],
                                                 "patient": rest(f"/instances/{iid}/patient")["MainDicomTags"]}
        out["instances"] = instances
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    (work / "result.json").write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
