"""`python -m deltaiqa_lite dashboard` in a subprocess on a free loopback port, and a small HTTP client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class DashboardProcess:
    def __init__(self, log: str, folder: Path, *extra: str, env: dict | None = None) -> None:
        self.stderr_path = folder / f"dashboard-{time.monotonic_ns()}.err"
        self._stderr = self.stderr_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "deltaiqa_lite", "dashboard", "--log", log, "--port", "0", *extra],
            stdout=subprocess.DEVNULL, stderr=self._stderr,
            env=dict(os.environ, PYTHONPATH=str(REPO), **(env or {})), cwd=folder)
        deadline = time.monotonic() + 60
        self.url = None
        while time.monotonic() < deadline and self.url is None:
            text = self.stderr_path.read_text()
            if "dashboard: http://" in text:
                self.url = text.split("dashboard: ", 1)[1].split()[0].rstrip("/")
            elif self.proc.poll() is not None:
                raise AssertionError(f"dashboard exited {self.proc.returncode}: {text}")
            time.sleep(0.05)
        assert self.url is not None, self.stderr_path.read_text()
        assert self.url.startswith("http://127.0.0.1:")

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self._stderr.close()
        return self.stderr_path.read_text()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def fetch(url: str, *, data: dict | None = None, headers: dict | None = None) -> Reply:
    """One request, redirects not followed (the tests look at them)."""
    from urllib.parse import urlencode

    body = urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers=headers or {})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=60) as response:
            return Reply(response.status, {k.lower(): v for k, v in response.headers.items()},
                         response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())
