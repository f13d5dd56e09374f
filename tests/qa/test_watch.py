from __future__ import annotations

import threading
from pathlib import Path

import pytest
from qa_builders import Clock, MR_IMAGE_STORAGE, ct_dataset, write_ct

from deltaiqa_lite import Scorer
from deltaiqa_lite.errors import InputError
from deltaiqa_lite.qa.ingest import Ingestor
from deltaiqa_lite.qa.log import QALog
from deltaiqa_lite.qa.watch import FolderWatcher


def _watcher(folder: Path, log: QALog, scorer: Scorer, clock: Clock, **kwargs) -> FolderWatcher:
    # error_settle_s = settle_s: an unreadable file is final at first sight here (the
    # wait for writers that pause is tested in test_watch_hardening.py).
    kwargs = {"error_settle_s": 2.0, "log_paths": True} | kwargs
    return FolderWatcher(folder, Ingestor(scorer, log, source="watch"), settle_s=2.0, clock=clock,
                         **kwargs)


def _settle(watcher: FolderWatcher, clock: Clock) -> list:
    watcher.poll_once()  # first sight
    clock.now += 2.5
    return watcher.poll_once()


def _series(folder: Path, n: int, seed: int = 0, **kwargs) -> list:
    series = f"1.2.826.0.1.3680043.8.498.{900 + seed}"
    return [write_ct(folder / f"s{seed}" / f"{i:03d}.dcm", series_uid=series, instance=i + 1,
                     seed=seed * 100 + i, **kwargs) for i in range(n)]


def test_file_arriving_in_pieces_scored_once_complete(tmp_path: Path, scorer: Scorer) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    encoded = tmp_path / "whole.dcm"
    ds = write_ct(encoded)
    data = encoded.read_bytes()
    clock = Clock()
    with QALog(tmp_path / "qa.sqlite") as log:
        watcher = _watcher(inbox, log, scorer, clock)
        target = inbox / "IM0001"
        target.write_bytes(data[:1000])
        assert watcher.poll_once() == []
        clock.now += 5.0
        with target.open("ab") as handle:  # more arrives: the clock restarts
            handle.write(data[1000:3000])
        assert watcher.poll_once() == []
        clock.now += 1.0
        with target.open("ab") as handle:
            handle.write(data[3000:])
        assert watcher.poll_once() == []
        clock.now += 1.0
        assert watcher.poll_once() == []  # unchanged for 1 s only
        clock.now += 1.5
        (outcome,) = watcher.poll_once()
        assert outcome.status == "scored" and outcome.sop_instance_uid == ds.SOPInstanceUID
        clock.now += 10
        assert watcher.poll_once() == []
        (row,) = log.slices()
        assert row.status == "ok" and row.file_name == "IM0001" and 0.0 <= row.score <= 4.0
        assert row.station_name == "CT1" and row.kernel == "B30f" and row.kvp == 120.0
        assert row.model == scorer.model_name and row.provider == scorer.provider


def test_every_input_logged_and_failures_not_retried(tmp_path: Path, scorer: Scorer, log_target: str) -> None:
    inbox = tmp_path / "inbox"
    _series(inbox, 3, seed=1)
    write_ct(inbox / "mr.dcm", modality="MR", sop_class=MR_IMAGE_STORAGE)
    (inbox / "readme.txt").write_text("not an image")
    truncated = ct_dataset(seed=5)
    truncated.PixelData = truncated.PixelData[:100]  # header fine, pixels cut short
    truncated.save_as(inbox / "short.dcm", enforce_file_format=True)
    (inbox / ".hidden.dcm").write_bytes(b"x")
    (inbox / "upload.dcm.part").write_bytes(b"x")
    clock = Clock()
    with QALog(log_target) as log:
        watcher = _watcher(inbox, log, scorer, clock)
        outcomes = _settle(watcher, clock)
        by_name = {Path(o.path).name: o for o in outcomes}
        assert set(by_name) == {"000.dcm", "001.dcm", "002.dcm", "mr.dcm", "readme.txt",
                                "short.dcm"}
        assert by_name["mr.dcm"].status == "refused"
        assert "SOP Class UID is 'MR Image Storage'" in by_name["mr.dcm"].reason
        assert by_name["readme.txt"].status == "error"
        assert "not a DICOM file" in by_name["readme.txt"].reason
        assert by_name["short.dcm"].status == "error"
        assert [by_name[f"00{i}.dcm"].status for i in range(3)] == ["scored"] * 3
        assert log.counts() == {"ok": 3, "refused": 1, "error": 2}
        # Failures are recorded once: later polls do not try them again.
        for _ in range(3):
            clock.now += 10
            assert watcher.poll_once() == []
        assert log.counts() == {"ok": 3, "refused": 1, "error": 2}
        inputs = dict(log.execute("SELECT path, status FROM inputs"))
        assert inputs == {"s1/000.dcm": "scored", "s1/001.dcm": "scored", "s1/002.dcm": "scored",
                          "mr.dcm": "refused", "readme.txt": "error", "short.dcm": "error"}
        # Series summary covers the 3 scored slices.
        (series,) = [s for s in log.series() if s.n_slices]
        assert series.n_slices == 3


def test_restart_scores_nothing_twice(tmp_path: Path, scorer: Scorer, log_target: str) -> None:
    inbox = tmp_path / "inbox"
    datasets = _series(inbox, 4, seed=2)
    (inbox / "junk.bin").write_bytes(b"\x00" * 300)
    clock = Clock()
    with QALog(log_target) as log:
        assert len(_settle(_watcher(inbox, log, scorer, clock), clock)) == 5
    # A new process (new watcher, same log): nothing is scored again.
    with QALog(log_target) as log:
        again = _watcher(inbox, log, scorer, clock)
        assert _settle(again, clock) == []
        # The same object under a new name (a resend) is recognised by its SOP Instance UID.
        datasets[0].save_as(inbox / "resent.dcm", enforce_file_format=True)
        (outcome,) = _settle(again, clock)
        assert outcome.status == "duplicate"
        assert log.counts() == {"ok": 4, "error": 1}


class CrashingScorer:
    """The real scorer, but the process 'dies' on the n-th batch (fault injection)."""

    def __init__(self, scorer: Scorer, crash_on: int) -> None:
        self.scorer, self.crash_on, self.calls = scorer, crash_on, 0
        self.model_name = scorer.model_name

    def score_paths(self, paths):
        self.calls += 1
        if self.calls == self.crash_on:
            raise KeyboardInterrupt("simulated crash mid-batch")
        return self.scorer.score_paths(paths)


def test_crash_mid_batch_loses_nothing(tmp_path: Path, scorer: Scorer, log_target: str) -> None:
    inbox, archive = tmp_path / "inbox", tmp_path / "archive"
    sops = [d.SOPInstanceUID for seed in (3, 4, 5) for d in _series(inbox, 3, seed=seed)]
    clock = Clock()
    with QALog(log_target) as log:
        crashing = FolderWatcher(inbox, Ingestor(CrashingScorer(scorer, 2), log, source="watch"),
                                 archive=archive, settle_s=2.0, clock=clock, error_settle_s=2.0)
        with pytest.raises(KeyboardInterrupt):
            _settle(crashing, clock)
        assert log.counts() == {"ok": 3}  # the first series made it, the second died whole
        assert len(list(archive.rglob("*.dcm"))) == 3
    with QALog(log_target) as log:
        watcher = _watcher(inbox, log, scorer, clock, archive=archive)
        outcomes = _settle(watcher, clock)
        assert sorted(o.status for o in outcomes) == ["scored"] * 6
        logged = [r.sop_instance_uid for r in log.slices()]
        assert sorted(logged) == sorted(sops)  # each exactly once
        assert list(inbox.rglob("*.dcm")) == []
        assert len(list(archive.rglob("*.dcm"))) == 9


def test_logged_but_not_archived_is_moved_not_rescored(tmp_path: Path, scorer: Scorer) -> None:
    inbox, archive = tmp_path / "inbox", tmp_path / "archive"
    _series(inbox, 2, seed=6)
    (inbox / "bad.txt").write_text("nope")
    clock = Clock()
    with QALog(tmp_path / "qa.sqlite") as log:
        _settle(_watcher(inbox, log, scorer, clock), clock)  # logged, no archive (as if crashed)
    with QALog(tmp_path / "qa.sqlite") as log:
        watcher = _watcher(inbox, log, scorer, clock, archive=archive)
        assert watcher.poll_once() == []
        assert log.counts() == {"ok": 2, "error": 1}
    assert sorted(p.relative_to(archive).as_posix() for p in archive.rglob("*") if p.is_file()) == [
        "failed/bad.txt", "s6/000.dcm", "s6/001.dcm"]


def test_archive_inside_watch_folder_refused(tmp_path: Path, scorer: Scorer) -> None:
    with QALog(tmp_path / "qa.sqlite") as log:
        with pytest.raises(InputError, match="archive folder must not be inside"):
            FolderWatcher(tmp_path, Ingestor(scorer, log, source="watch"), archive=tmp_path / "a")
        with pytest.raises(InputError, match="does not exist"):
            FolderWatcher(tmp_path / "nope", Ingestor(scorer, log, source="watch"))


def test_run_once_stops_when_idle(tmp_path: Path, scorer: Scorer) -> None:
    inbox = tmp_path / "inbox"
    _series(inbox, 2, seed=7)
    with QALog(tmp_path / "qa.sqlite") as log:
        watcher = FolderWatcher(inbox, Ingestor(scorer, log, source="watch"), settle_s=0.05)
        stats = watcher.run(threading.Event(), poll_s=0.05, once=True)
        assert stats.scored == 2 and stats.slices == 2
