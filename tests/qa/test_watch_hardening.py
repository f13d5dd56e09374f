"""The watch folder under hostile conditions (issue 13): writers that pause, writers that
keep the file open, folder names that carry patient names."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from qa_builders import Clock, write_ct

from deltaiqa_lite import Scorer
from deltaiqa_lite.cli import main
from deltaiqa_lite.qa.ingest import Ingestor
from deltaiqa_lite.qa.log import QALog
from deltaiqa_lite.qa.watch import FolderWatcher, open_for_writing


def test_writer_pausing_longer_than_settle_is_not_archived_as_failed(
        tmp_path: Path, scorer: Scorer) -> None:
    inbox, archive = tmp_path / "inbox", tmp_path / "archive"
    inbox.mkdir()
    whole = tmp_path / "whole.dcm"
    ds = write_ct(whole)
    data = whole.read_bytes()
    clock = Clock()
    with QALog(tmp_path / "qa.sqlite") as log:
        # Default error_settle_s (30 s): longer than this writer's pause.
        watcher = FolderWatcher(inbox, Ingestor(scorer, log, source="watch"), archive=archive,
                                settle_s=2.0, clock=clock)
        target = inbox / "IM0001"
        target.write_bytes(data[: len(data) // 2])  # the writer pauses here, file closed
        watcher.poll_once()
        clock.now += 5.0  # longer than --settle
        assert watcher.poll_once() == []  # unreadable, but maybe not finished: not final
        assert not archive.exists() and log.counts() == {}
        clock.now += 5.0
        assert watcher.poll_once() == []  # not retried in a loop either
        with target.open("ab") as handle:  # the writer reopens by name and finishes
            handle.write(data[len(data) // 2:])
        watcher.poll_once()
        clock.now += 2.5
        (outcome,) = watcher.poll_once()
        assert outcome.status == "scored" and outcome.sop_instance_uid == ds.SOPInstanceUID
        assert log.counts() == {"ok": 1}
    archived = [p for p in archive.rglob("*") if p.is_file()]
    assert [p.relative_to(archive).as_posix() for p in archived] == ["IM0001"]  # one piece
    assert archived[0].read_bytes() == data
    assert not target.exists()


def test_unreadable_file_is_final_once_quiet_for_error_settle(tmp_path: Path,
                                                              scorer: Scorer) -> None:
    inbox, archive = tmp_path / "inbox", tmp_path / "archive"
    inbox.mkdir()
    (inbox / "junk.bin").write_bytes(b"\x01" * 500)
    clock = Clock()
    with QALog(tmp_path / "qa.sqlite") as log:
        watcher = FolderWatcher(inbox, Ingestor(scorer, log, source="watch"), archive=archive,
                                settle_s=2.0, error_settle_s=30.0, clock=clock)
        watcher.poll_once()
        clock.now += 2.5
        assert watcher.poll_once() == []
        clock.now += 30.0
        (outcome,) = watcher.poll_once()
        assert outcome.status == "error" and "not a DICOM file" in outcome.reason
        assert log.counts() == {"error": 1}
    assert (archive / "failed" / "junk.bin").is_file()


def test_file_open_for_writing_is_not_read(tmp_path: Path, scorer: Scorer) -> None:
    inbox = tmp_path / "inbox"
    target = inbox / "IM0002"
    write_ct(target)
    if open_for_writing(str(target)) is None:
        pytest.skip("this file system or kernel cannot tell (no read lease)")
    writer = subprocess.Popen([sys.executable, "-c",
                               f"import time; f = open({str(target)!r}, 'ab'); time.sleep(60)"])
    try:
        deadline = time.monotonic() + 30
        while open_for_writing(str(target)) is not True and time.monotonic() < deadline:
            time.sleep(0.05)
        clock = Clock()
        with QALog(tmp_path / "qa.sqlite") as log:
            watcher = FolderWatcher(inbox, Ingestor(scorer, log, source="watch"), settle_s=2.0,
                                    clock=clock)
            watcher.poll_once()
            clock.now += 10.0
            assert watcher.poll_once() == []  # quiet, but still open for writing
            writer.kill()
            writer.wait(timeout=30)
            clock.now += 2.5  # quiet for --settle since the last look, and closed now
            (outcome,) = watcher.poll_once()
            assert outcome.status == "scored"
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(timeout=30)


def test_paths_not_stored_or_printed_unless_asked(tmp_path: Path, tiny_model: Path,
                                                  capsys) -> None:
    inbox = tmp_path / "inbox"
    write_ct(inbox / "DOE_JANE_19700101" / "IM0001.dcm")
    (inbox / "DOE_JANE_19700101" / "notes.txt").write_text("not an image")
    log_path = tmp_path / "qa.sqlite"
    args = ["watch", str(inbox), "--once", "--settle", "0.1", "--poll", "0.1", "--model",
            str(tiny_model), "--threads", "1", "--log", str(log_path)]
    assert main(args) == 1  # the text file failed
    err = capsys.readouterr().err
    assert "IM0001.dcm: scored" in err and "notes.txt: error" in err
    assert "DOE_JANE" not in err.replace(str(inbox), "")
    with QALog(log_path) as log:
        names = {r.file_name for r in log.slices()}
        inputs = [row[0] for row in log.execute("SELECT path FROM inputs")]
    assert names == {"IM0001.dcm", "notes.txt"}
    assert len(inputs) == 2 and all(p.startswith("sha256:") for p in inputs)
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("qa.sqlite*"))
    assert b"DOE_JANE" not in stored
    # On request, the relative path is what the log keeps.
    other = tmp_path / "qa2.sqlite"
    args[args.index(str(log_path))] = str(other)
    assert main([*args, "--log-paths"]) == 1
    assert "DOE_JANE_19700101/IM0001.dcm: scored" in capsys.readouterr().err
    with QALog(other) as log:
        assert {r.file_name for r in log.slices()} == {"DOE_JANE_19700101/IM0001.dcm",
                                                       "DOE_JANE_19700101/notes.txt"}
