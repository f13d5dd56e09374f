"""Issue 24, item 2: file names that are not valid UTF-8 in the watch folder.

Before the fix the watcher crashed on them (SQLite UnicodeEncodeError), again at every
restart, and the rest of the batch was never logged.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from qa_builders import Clock, write_ct

from deltaiqa_lite import Scorer
from deltaiqa_lite.cli import main
from deltaiqa_lite.qa.ingest import Ingestor
from deltaiqa_lite.qa.log import QALog
from deltaiqa_lite.qa.watch import FolderWatcher
from deltaiqa_lite.read.names import display_text, path_from_display


def _raw(folder: Path, name: bytes) -> Path:
    return Path(os.fsdecode(os.path.join(os.fsencode(folder), name)))


@pytest.mark.parametrize("log_paths", [False, True])
def test_watch_logs_non_utf8_names_and_restarts_cleanly(tmp_path: Path, scorer: Scorer,
                                                         log_paths: bool) -> None:
    """Item 2: scored, logged under an escaped name, not scored again after a restart."""
    inbox = tmp_path / "inbox"
    sub = _raw(inbox, b"M\xfcller")  # a Latin-1 folder name from an old scanner export
    sub.mkdir(parents=True)
    ct = _raw(sub, b"caf\xe9.dcm")
    write_ct(ct)
    junk = _raw(inbox, b"\xff\xfe.bin")
    junk.write_bytes(b"\x01" * 300)
    good = write_ct(inbox / "plain.dcm", seed=5)
    clock = Clock()
    with QALog(tmp_path / "qa.sqlite") as log:
        for _ in range(2):  # the second watcher is the restart
            watcher = FolderWatcher(inbox, Ingestor(scorer, log, source="watch"), settle_s=2.0,
                                    error_settle_s=2.0, clock=clock, log_paths=log_paths)
            watcher.poll_once()
            clock.now += 2.5
            watcher.poll_once()
            clock.now += 2.5
        rows = log.slices()
        names = sorted(r.file_name for r in rows)
        assert log.counts() == {"ok": 2, "error": 1}
    expected = (["M\\xfcller/caf\\xe9.dcm", "\\xff\\xfe.bin", "plain.dcm"] if log_paths
                else ["\\xff\\xfe.bin", "caf\\xe9.dcm", "plain.dcm"])
    assert names == sorted(expected)
    assert good.SOPInstanceUID in {r.sop_instance_uid for r in rows}
    # The display form leads back to the file (lossless).
    assert path_from_display(display_text(str(ct))) == str(ct)
    assert os.path.exists(path_from_display(display_text(str(ct))))


def test_watch_command_once_with_non_utf8_name(tmp_path: Path, tiny_model: Path, capfd) -> None:
    """Item 2: the command itself finishes and prints the escaped name (escaped)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_ct(_raw(inbox, b"\xe9t\xe9.dcm"))
    code = main(["watch", str(inbox), "--log", str(tmp_path / "qa.sqlite"), "--model",
                 str(tiny_model), "--once", "--settle", "0.1"])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert "\\xe9t\\xe9.dcm: scored" in err


def test_watch_answers_sigterm_with_a_zero_filled_gigabyte_in_the_folder(tmp_path: Path,
                                                                          tiny_model: Path) -> None:
    """Item 6: a 1 GiB zero-filled file is refused from its first kilobytes, so the running
    watcher logs it and still stops on SIGTERM (before: ~13 minutes inside pydicom)."""
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with open(inbox / "IM0001", "wb") as handle:
        handle.truncate(1 << 30)
    log = tmp_path / "qa.sqlite"
    repo = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-m", "deltaiqa_lite", "watch", str(inbox), "--log", str(log),
         "--model", str(tiny_model), "--settle", "0.1", "--error-settle", "0.1", "--poll", "0.2"],
        cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)}, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        logged = []
        while time.monotonic() < deadline and not logged:
            time.sleep(0.3)
            if log.exists():
                try:
                    with sqlite3.connect(log) as db:
                        logged = db.execute("SELECT reason FROM slices").fetchall()
                except sqlite3.Error:
                    pass
        assert logged and "all zero" in logged[0][0]
        process.send_signal(signal.SIGTERM)
        err = process.communicate(timeout=60)[1]
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "failed 1" in err
