"""Issue 24, item 4 and the SR points of item 8: the SR outbox on a full disk, a destination
that accepts TCP but never answers, retry times on the monotonic clock, private identity
files deleted once the SR is queued.

Real parts: a pynetdicom Storage SCP on loopback, a real listening socket that never
answers, a small tmpfs for the full disk (skipped where it cannot be mounted).
"""

from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path

import pytest

pytest.importorskip("pynetdicom", reason="sending SRs needs the 'net' extra (pynetdicom)")
pytest.importorskip("highdicom", reason="SRs need the 'sr' extra (highdicom)")

from qa_builders import StorageSCP, fill_disk, write_ct

from deltaiqa_lite import Scorer
from deltaiqa_lite.output.sr import SRModel
from deltaiqa_lite.qa.ingest import Ingestor
from deltaiqa_lite.qa.log import QALog
from deltaiqa_lite.qa.outbox import Destination, Outbox
from deltaiqa_lite.qa.sr_node import SeriesReporter

MODEL = SRModel(name="Delta-IQA", version="0.1.0", precision="int8", sha256="ef" * 32)
STUDY = "1.2.826.0.1.3680043.8.498.777"


class SilentPeer:
    """Accepts TCP connections (the kernel's backlog) and never says a word."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.destination = Destination("PACS", "127.0.0.1", self.sock.getsockname()[1])

    def close(self) -> None:
        self.sock.close()


def _outcomes(folder: Path, scorer: Scorer, log: QALog, n_series: int) -> list:
    paths = []
    for s in range(n_series):
        ds = write_ct(folder / f"s{s}.dcm", series_uid=f"1.2.826.0.1.3680043.8.498.77{s}",
                      study_uid=STUDY, seed=s)
        assert ds.PatientID
        paths.append(str(folder / f"s{s}.dcm"))
    return Ingestor(scorer, log, source="watch").process(paths)


def test_full_disk_loses_no_sr_and_leaves_no_part_files(tmp_path: Path, small_disk: Path,
                                                        scorer: Scorer) -> None:
    """Item 4: three complete series while the outbox disk is full; all three SRs arrive once
    space returns (before: 1 of 3), and no .part file stays behind."""
    scp = StorageSCP()
    try:
        with QALog(tmp_path / "qa.sqlite") as log:
            outcomes = _outcomes(tmp_path / "in", scorer, log, 3)
            outbox = Outbox(small_disk / "outbox", scp.destination, log, timeout_s=5.0)
            reporter = SeriesReporter(log, MODEL, outbox, small_disk / "series",
                                      series_idle_s=0)
            reporter.note(outcomes[0])  # one series' state saved before the disk fills
            filler = fill_disk(small_disk)
            for outcome in outcomes[1:]:
                reporter.note(outcome)  # state cannot be saved: kept in memory
            reporter.run_once()
            assert scp.received == []
            filler.unlink()  # space returns
            deadline = time.monotonic() + 60
            while len(scp.received) < 3 and time.monotonic() < deadline:
                reporter.run_once()
                time.sleep(0.5)
            events = [e.event for e in log.sr_events()]
        sent = sorted(str(d.SeriesInstanceUID) for d in scp.received)
        assert len(sent) == 3 and len(set(sent)) == 3, events
        assert events.count("sent") == 3
        leftovers = [p.name for p in small_disk.rglob("*") if p.is_file()]
        assert leftovers == []  # sent SRs, markers, identities and .part files all gone
    finally:
        scp.stop()


def test_identity_files_private_and_deleted_once_queued(tmp_path: Path, scorer: Scorer) -> None:
    """Item 8: the per-series identity file (patient name, ID, birth date, accession) is 0600
    and is deleted when the SR is queued."""
    peer = SilentPeer()
    try:
        with QALog(tmp_path / "qa.sqlite") as log:
            (outcome,) = _outcomes(tmp_path / "in", scorer, log, 1)
            outbox = Outbox(tmp_path / "outbox", peer.destination, log, timeout_s=0.5)
            reporter = SeriesReporter(log, MODEL, outbox, tmp_path / "series", series_idle_s=0)
            old = os.umask(0o022)
            try:
                reporter.note(outcome)
            finally:
                os.umask(old)
            (identity,) = (tmp_path / "series").glob("*.dcm")
            assert stat.S_IMODE(identity.stat().st_mode) == 0o600
            reporter.run_once()
            assert list((tmp_path / "series").iterdir()) == []
            assert len(outbox.items()) == 1  # the SR waits in the outbox
    finally:
        peer.close()


class _Result:
    def __init__(self, sop: str, series: str) -> None:
        self.sop_instance_uid, self.series_uid = sop, series
        self.score, self.likert, self.status = 2.5, 2, "ok"


def _sr(seed: int):
    from qa_builders import ct_dataset

    from deltaiqa_lite.output.sr import build_sr

    identity = ct_dataset(seed=seed, series_uid=f"1.2.826.0.1.3680043.8.498.78{seed}",
                          study_uid=STUDY)
    result = _Result(str(identity.SOPInstanceUID), str(identity.SeriesInstanceUID))
    return build_sr([result], identity, MODEL,
                    sop_classes={result.sop_instance_uid: identity.SOPClassUID})


def test_retry_times_use_the_monotonic_clock(tmp_path: Path) -> None:
    """Item 8: retry times are on the monotonic clock (a wall clock stepped back by an hour
    would otherwise hold every SR back by that hour)."""
    peer = SilentPeer()
    try:
        with QALog(tmp_path / "qa.sqlite") as log:
            outbox = Outbox(tmp_path / "outbox", peer.destination, log, timeout_s=0.5,
                            retry_initial_s=30.0)
            sr = _sr(1)
            outbox.enqueue(sr, str(sr.SeriesInstanceUID))
            before = time.monotonic()
            outbox.send_due()
            (item,) = outbox.items()
        assert item.attempts == 1
        assert before + 30.0 <= item.next_try <= time.monotonic() + 30.0
    finally:
        peer.close()


def test_silent_destination_costs_one_timeout_per_pass_and_stop_is_prompt(
        tmp_path: Path) -> None:
    """Item 8: a destination that accepts TCP and never answers costs one timeout per pass
    (not one per SR), and stopping the reporter does not wait for the SRs still queued."""
    peer = SilentPeer()
    try:
        with QALog(tmp_path / "qa.sqlite") as log:
            outbox = Outbox(tmp_path / "outbox", peer.destination, log, timeout_s=1.0)
            for seed in range(3):
                sr = _sr(seed)
                outbox.enqueue(sr, str(sr.SeriesInstanceUID))
            results = outbox.send_due()
            assert len(results) == 1 and not results[0].ok  # the other two wait for next pass
            assert len(outbox.items()) == 3
            # Now on the reporter's thread, with the default 10 s timeout, stopped mid-send.
            slow = Outbox(tmp_path / "outbox", peer.destination, log, timeout_s=10.0)
            reporter = SeriesReporter(log, MODEL, slow, tmp_path / "series", poll_s=0.05)
            reporter.start()
            time.sleep(0.5)  # the thread is waiting on the silent peer now
            thread = reporter._thread
            reporter.stop()
            thread.join(10.0)
            assert not thread.is_alive()
            attempts = [e for e in log.sr_events() if e.event == "send_failed"]
            assert len(attempts) <= 2  # the first pass's one, and at most the one aborted
            assert len(slow.items()) == 3  # nothing lost by stopping
    finally:
        peer.close()
