"""A real Orthanc PACS and a real `deltaiqa-lite serve` for round-trip tests (no mocks).

Orthanc runs from the Debian package (/usr/sbin/Orthanc) on free loopback
ports with a temporary configuration: storage in the test's folder, no
authentication, remote access off, and a DicomModalities entry for the
deltaiqa-lite node. REST calls use urllib from the standard library.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ORTHANC = shutil.which("Orthanc") or next(
    (p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if os.access(p, os.X_OK)), None)


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Orthanc:
    """One Orthanc process; ``start``/``stop`` keep the same ports and storage."""

    def __init__(self, folder: Path, modalities: dict[str, tuple[str, str, int]]) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.http_port, self.dicom_port = free_port(), free_port()
        self.aet = "ORTHANC"
        config = {
            "Name": "deltaiqa-lite-test", "StorageDirectory": str(folder / "db"),
            "IndexDirectory": str(folder / "db"), "HttpPort": self.http_port,
            "DicomPort": self.dicom_port, "DicomAet": self.aet, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "Plugins": [], "LuaScripts": [],
            "DicomModalities": {name: list(entry) for name, entry in modalities.items()},
            "DicomAlwaysAllowStore": True, "DicomCheckModalityHost": False,
            # An updated SR keeps its SOP Instance UID: replace, do not keep the first.
            "OverwriteInstances": True, "StorageCompression": False, "SaveJobs": False,
            "DicomScuTimeout": 10, "HttpDescribeErrors": True,
        }
        self.config = folder / "orthanc.json"
        self.config.write_text(json.dumps(config, indent=1))
        self.log = folder / "orthanc.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 60.0) -> None:
        handle = self.log.open("a")
        self.proc = subprocess.Popen([ORTHANC, str(self.config)], stdout=handle, stderr=handle,
                                     cwd=self.folder)
        handle.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"Orthanc exited {self.proc.returncode}: {self.log_tail()}")
            try:
                if self.get("/system")["DicomPort"] == self.dicom_port:
                    return
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        raise AssertionError(f"Orthanc did not answer within {timeout} s: {self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)
        self.proc = None

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str = "application/json", timeout: float = 60.0) -> bytes:
        request = urllib.request.Request(self.url + path, data=body, method=method,
                                         headers={"Content-Type": content_type})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()

    def get(self, path: str):
        return json.loads(self.request("GET", path, timeout=5.0))

    def upload(self, path: Path) -> dict:
        """POST /instances; the answer names the Orthanc IDs of instance, series and study."""
        answer = json.loads(self.request("POST", "/instances", path.read_bytes(),
                                         "application/dicom"))
        assert answer["Status"] in ("Success", "AlreadyStored"), answer
        return answer

    def store_to(self, modality: str, resources: list[str]) -> dict:
        """Ask Orthanc to C-STORE resources to a modality (synchronously)."""
        body = json.dumps({"Resources": resources, "Synchronous": True}).encode()
        return json.loads(self.request("POST", f"/modalities/{modality}/store", body))

    def sr_instances(self, study_id: str) -> list[str]:
        """Orthanc IDs of the SR instances in a study."""
        found = []
        for series in self.get(f"/studies/{study_id}/series"):
            if series["MainDicomTags"].get("Modality") == "SR":
                found.extend(series["Instances"])
        return found

    def file(self, instance_id: str) -> bytes:
        return self.request("GET", f"/instances/{instance_id}/file")


class ServeNode:
    """`python -m deltaiqa_lite serve` on a fixed loopback port, restartable on the same state."""

    def __init__(self, folder: Path, model: Path, port: int, *extra: str) -> None:
        self.folder, self.model, self.port, self.extra = folder, model, port, extra
        self.log = folder / "qa.sqlite"
        self.outbox = folder / "sr-outbox"
        self.proc: subprocess.Popen | None = None
        self.stderr_path = folder / "serve.err"

    def start(self, timeout: float = 60.0) -> None:
        handle = self.stderr_path.open("a")
        env = dict(os.environ, PYTHONPATH=str(REPO))
        start = self.stderr_path.stat().st_size
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "deltaiqa_lite", "serve", "--port", str(self.port), "--model",
             str(self.model), "--log", str(self.log), "--sr-outbox", str(self.outbox),
             "--threads", "1", *self.extra],
            stdout=subprocess.DEVNULL, stderr=handle, env=env, cwd=self.folder)
        handle.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.stderr_path.read_text()[start:]
            if "listening on " in text:
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}: {text}")
            time.sleep(0.05)
        raise AssertionError(f"serve did not start: {self.stderr_path.read_text()}")

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=90)
        self.proc = None
        return code

    def stderr(self) -> str:
        return self.stderr_path.read_text()


def wait_for(condition, timeout: float, what: str, *diagnostics):
    """Poll ``condition()`` until truthy; fail with ``what`` and the diagnostics' output."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout} s\n" + "\n".join(d() for d in diagnostics))
