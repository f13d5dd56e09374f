"""Two `serve` nodes write one real PostgreSQL QA log at once; kill -9 of one loses nothing acknowledged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("pynetdicom", reason="serve needs the 'net' extra (pynetdicom)")

from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage
from qa_builders import ct_dataset

from deltaiqa_lite.qa.log import QALog

REPO = Path(__file__).resolve().parents[2]
N_PER_NODE = 24


class Node:
    """`python -m deltaiqa_lite serve --log postgresql://...` with its own spool."""

    def __init__(self, folder: Path, model: Path, log: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.model, self.log = folder, model, log
        self.start()

    def start(self) -> None:
        self.stderr_path = self.folder / f"serve-{time.monotonic_ns()}.err"
        self._stderr = self.stderr_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "deltaiqa_lite", "serve", "--port", "0", "--model", str(self.model),
             "--log", self.log, "--spool", str(self.folder / "spool"), "--threads", "1",
             "--allow", "SCANNER"],
            stdout=subprocess.DEVNULL, stderr=self._stderr, env=dict(os.environ, PYTHONPATH=str(REPO)),
            cwd=self.folder)
        deadline = time.monotonic() + 90
        self.port = None
        while time.monotonic() < deadline and self.port is None:
            text = self.stderr_path.read_text()
            if "listening on " in text:
                self.port = int(text.split("listening on ", 1)[1].split()[0].rsplit(":", 1)[1])
            elif self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}: {text}")
            time.sleep(0.05)
        assert self.port is not None, self.stderr_path.read_text()

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=90)
        self._stderr.close()
        return code, self.stderr_path.read_text()


def _send(port: int, datasets: list, acked: list[str], after=None) -> None:
    """C-STORE each dataset on one association; note the SOP UIDs answered 0x0000."""
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title="DELTAIQA")
    assert assoc.is_established
    try:
        for k, ds in enumerate(datasets):
            if not assoc.is_established:
                break
            status = assoc.send_c_store(ds)
            if status and getattr(status, "Status", None) == 0x0000:
                acked.append(ds.SOPInstanceUID)
            if after is not None:
                after(k)
    finally:
        if assoc.is_established:
            assoc.release()


def _logged_ok(url: str) -> set[str]:
    with QALog(url) as log:
        return {r.sop_instance_uid for r in log.slices(status="ok")}


@pytest.mark.slow
def test_two_nodes_share_postgres_and_kill9_loses_nothing_acknowledged(
        tmp_path: Path, tiny_model: Path, postgres_url: str) -> None:
    series_a, series_b = "1.2.826.0.1.3680043.8.498.61", "1.2.826.0.1.3680043.8.498.62"
    data_a = [ct_dataset(seed=i, series_uid=series_a, study_uid=series_a + ".1", instance=i + 1,
                         station="CT-A") for i in range(N_PER_NODE)]
    data_b = [ct_dataset(seed=100 + i, series_uid=series_b, study_uid=series_b + ".1",
                         instance=i + 1, station="CT-B") for i in range(N_PER_NODE)]
    node_a = Node(tmp_path / "a", tiny_model, postgres_url)
    node_b = Node(tmp_path / "b", tiny_model, postgres_url)
    acked_a: list[str] = []
    acked_b: list[str] = []
    try:
        sender_a = threading.Thread(target=_send, args=(node_a.port, data_a, acked_a))
        sender_a.start()

        def kill_b_midway(k: int) -> None:
            if k == N_PER_NODE // 2:
                node_b.proc.send_signal(signal.SIGKILL)  # no clean-up, no flush
                node_b.proc.wait(timeout=30)

        _send(node_b.port, data_b, acked_b, after=kill_b_midway)
        sender_a.join(timeout=120)
        assert len(acked_a) == N_PER_NODE
        assert N_PER_NODE // 2 <= len(acked_b) < N_PER_NODE
        # Node A went on writing while B was dead.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not set(acked_a) <= _logged_ok(postgres_url):
            time.sleep(0.2)
        assert set(acked_a) <= _logged_ok(postgres_url)
        # B restarts on its spool: what it acknowledged before the kill is scored now.
        node_b._stderr.close()
        node_b.start()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not set(acked_b) <= _logged_ok(postgres_url):
            time.sleep(0.2)
        logged = _logged_ok(postgres_url)
        assert set(acked_b) <= logged, f"lost {sorted(set(acked_b) - logged)}"
    finally:
        code_a, err_a = node_a.stop()
        code_b, err_b = node_b.stop()
    assert code_a == 0 and code_b == 0, err_a + err_b
    assert "password" not in err_a
    with QALog(postgres_url) as log:
        series = {s.series_uid: s for s in log.series()}
        assert series[series_a].n_slices == N_PER_NODE and series[series_a].station_name == "CT-A"
        assert series[series_b].n_slices == len(set(_logged_ok(postgres_url)) - set(acked_a))
        # One row per object: nothing written twice by the restart.
        (dups,) = log.execute("SELECT count(*) - count(DISTINCT sop_instance_uid) FROM slices")
        assert dups == (0,)


def test_serve_with_postgres_needs_its_own_spool(tmp_path: Path, tiny_model: Path,
                                                 postgres_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "deltaiqa_lite", "serve", "--port", "0", "--model", str(tiny_model),
         "--log", postgres_url], capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.returncode == 2
    assert "give this node its own --spool DIR" in done.stderr
