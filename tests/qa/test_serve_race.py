"""Issue 24, items 1 and 8 (first point): a resend of the same SOP Instance UID on a second
association while the first one waits for queue space.

Rule under test: once an object has been answered Success it is in the QA log, the store or
the quarantine, whatever else happens. Deterministic: another SQLite connection holds the
log's write lock, so the worker cannot drain the queue while the two associations race.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("pynetdicom", reason="serve needs the 'net' extra (pynetdicom)")

from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage
from qa_builders import ct_dataset

from deltaiqa_lite import Scorer
from deltaiqa_lite.qa.ingest import Ingestor
from deltaiqa_lite.qa.log import QALog
from deltaiqa_lite.qa.serve import QAServer, ServeConfig


def _scu() -> AE:
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(CTImageStorage)
    return ae


def _wait(condition, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached after {timeout} s")


def _store(server: QAServer, ds, statuses: list, index: int) -> None:
    assoc = _scu().associate(*server.address, ae_title="DELTAIQA")
    assert assoc.is_established
    statuses[index] = int(assoc.send_c_store(ds).Status)
    assoc.release()


def test_resend_answered_success_is_not_deleted_by_the_timed_out_first_copy(
        tmp_path: Path, scorer: Scorer) -> None:
    """Item 1: the queue-full branch must not unlink a file another association acknowledged."""
    log_path = tmp_path / "qa.sqlite"
    with QALog(log_path, busy_timeout_s=60.0) as log:
        server = QAServer(Ingestor(scorer, log, source="serve"),
                          ServeConfig(spool_dir=tmp_path / "spool", port=0, queue_size=1,
                                      queue_timeout_s=6.0, batch_size=1, rescan_s=0.5))
        server.start()
        holder = sqlite3.connect(log_path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # the worker blocks on its first log write
        statuses = [None] * 4
        try:
            fillers = [ct_dataset(seed=1), ct_dataset(seed=2)]
            _store(server, fillers[0], statuses, 0)  # taken by the worker, which then blocks
            _wait(lambda: server._queue.qsize() == 0, what="worker took the first object")
            _store(server, fillers[1], statuses, 1)  # fills the queue (size 1)
            raced = ct_dataset(seed=3)
            first = threading.Thread(target=_store, args=(server, raced, statuses, 2))
            first.start()  # blocks on the full queue for queue_timeout_s
            _wait(lambda: raced.SOPInstanceUID in server._queued, what="first copy waiting")
            _store(server, raced, statuses, 3)  # the sender's retry on a new association
            first.join()
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        spool = tmp_path / "spool"
        _wait(lambda: server.backlog() == 0 and not list(spool.glob("*.dcm")), timeout=90.0,
              what="spool drained")
        server.stop()
        logged = {r.sop_instance_uid for r in log.slices()}
    assert statuses[:2] == [0, 0]
    assert statuses[3] == 0  # the resend was acknowledged ...
    assert statuses[2] == 0xA700  # ... while the first copy timed out on the full queue
    assert raced.SOPInstanceUID in logged  # ... and so it must not be lost
    assert {f.SOPInstanceUID for f in fillers} <= logged


def test_parallel_stores_of_one_uid_use_separate_part_files(tmp_path: Path,
                                                             scorer: Scorer) -> None:
    """Item 8 (same UID on parallel associations): each store writes its own partial file,
    so neither is answered 0xC210 because the other truncated or removed it."""
    with QALog(tmp_path / "qa.sqlite") as log:
        server = QAServer(Ingestor(scorer, log, source="serve"),
                          ServeConfig(spool_dir=tmp_path / "spool", port=0))
        server.start()
        seen: list[str] = []
        original = server._spool_partial

        def spool_and_pause(event, key):
            partial = original(event, key)
            seen.append(partial.name)
            # Both associations have written their partial before either reads it back.
            _wait(lambda: len(seen) >= 2, timeout=20.0, what="second partial written")
            return partial

        server._spool_partial = spool_and_pause
        ds = ct_dataset(seed=7)
        statuses = [None, None]
        threads = [threading.Thread(target=_store, args=(server, ds, statuses, i))
                   for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        server.stop()
        assert log.counts() == {"ok": 1}
    assert statuses == [0, 0]
    assert len(set(seen)) == 2


def test_read_only_store_refused_at_start(tmp_path: Path, scorer: Scorer) -> None:
    """Item 8: a --store the node cannot write is one error at start (before: one line per
    object on every rescan). A read-only bind mount, since root ignores permission bits."""
    import subprocess

    from deltaiqa_lite.qa.serve import ServeError

    store = tmp_path / "store"
    store.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(store), str(store)], capture_output=True,
                             text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here ({mounted.stderr.strip()})")
    try:
        remount = subprocess.run(["mount", "-o", "remount,ro,bind", str(store)],
                                 capture_output=True, text=True, check=False)
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only ({remount.stderr.strip()})")
        with QALog(tmp_path / "qa.sqlite") as log:
            server = QAServer(Ingestor(scorer, log, source="serve"),
                              ServeConfig(spool_dir=tmp_path / "spool", port=0, store_dir=store))
            with pytest.raises(ServeError, match=r"store: the store folder cannot be written "
                                                 r"\(Read-only file system\)"):
                server.start()
    finally:
        subprocess.run(["umount", str(store)], check=False)
