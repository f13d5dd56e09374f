"""The SR outbox and the series reporter against a real pynetdicom Storage SCP."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pydicom
import pytest

pytest.importorskip("pynetdicom", reason="sending SRs needs the 'net' extra (pynetdicom)")
pytest.importorskip("highdicom", reason="SRs need the 'sr' extra (highdicom)")

from qa_builders import StorageSCP, ct_dataset, write_ct
from sr_checks import dciodvfy_problems, needs_dciodvfy

from deltaiqa_lite.cli import main
from deltaiqa_lite.qa.log import QALog
from deltaiqa_lite.qa.outbox import (
    Destination,
    Outbox,
    OutboxError,
    parse_destination,
)
from deltaiqa_lite.output.sr import SRModel, build_sr, read_sr_values, sr_uids

MODEL = SRModel(name="Delta-IQA", version="0.1.0", precision="int8", sha256="cd" * 32)
SERIES = "1.2.826.0.1.3680043.8.498.501"


class Results:
    """Enough of a SliceResult for build_sr."""

    def __init__(self, sop: str, score: float, likert: int) -> None:
        self.sop_instance_uid, self.series_uid = sop, SERIES
        self.score, self.likert, self.status = score, likert, "ok"


def _sr(score: float = 2.5):
    identity = ct_dataset(series_uid=SERIES)
    result = Results(str(identity.SOPInstanceUID), score, round(score))
    return build_sr([result], identity, MODEL,
                    sop_classes={result.sop_instance_uid: identity.SOPClassUID})


def test_parse_destination() -> None:
    assert parse_destination("ORTHANC@pacs.example.org:4242") == \
        Destination("ORTHANC", "pacs.example.org", 4242)
    assert str(parse_destination("A@[::1]:104")) == "A@::1:104"
    for bad in ("ORTHANC@pacs", "pacs:4242", "TOO-LONG-AE-TITLE-X@h:1", "A@h:0", "A@h:70000"):
        with pytest.raises(OutboxError, match="expected AET@HOST:PORT"):
            parse_destination(bad)


def test_deleted_only_on_success_with_backoff(tmp_path: Path) -> None:
    now = [1000.0]
    scp = StorageSCP(status=0xA700)  # Out of Resources
    try:
        with QALog(tmp_path / "qa.sqlite") as log:
            outbox = Outbox(tmp_path / "outbox", scp.destination, log, calling_aet="DELTAIQA",
                            retry_initial_s=2.0, retry_max_s=5.0, clock=lambda: now[0])
            sr = _sr()
            outbox.enqueue(sr, SERIES)
            first = outbox.send_due()
            assert [r.ok for r in first] == [False]
            assert first[0].reason == f"{scp.destination} answered C-STORE status 0xA700"
            [item] = outbox.items()
            assert (item.attempts, item.next_try) == (1, 1002.0)
            assert outbox.send_due() == []  # not due yet: nothing sent
            now[0] = 1002.0
            outbox.send_due()
            now[0] = 1006.0
            outbox.send_due()
            assert [(i.attempts, i.next_try) for i in outbox.items()] == [(3, 1011.0)]  # 2, 4, cap 5
            # The destination recovers; a new Outbox on the same folder (a restart) sends it.
            scp.status = 0x0000
            now[0] = 1011.0
            restarted = Outbox(tmp_path / "outbox", scp.destination, log, calling_aet="DELTAIQA",
                               clock=lambda: now[0])
            assert [r.ok for r in restarted.send_due()] == [True]
            assert restarted.items() == [] and list((tmp_path / "outbox").iterdir()) == []
            events = [(e.event, e.attempts, e.destination) for e in log.sr_events(series_uid=SERIES)]
        assert events == [("send_failed", 1, str(scp.destination)),
                          ("send_failed", 2, str(scp.destination)),
                          ("send_failed", 3, str(scp.destination)),
                          ("sent", 4, str(scp.destination))]
        assert scp.calling == ["DELTAIQA"] * 4
        assert [str(d.SOPInstanceUID) for d in scp.received] == [str(sr.SOPInstanceUID)]
        assert read_sr_values(scp.received[0]) == read_sr_values(sr)
    finally:
        scp.stop()


def test_destination_down_then_up(tmp_path: Path) -> None:
    scp = StorageSCP()
    port = scp.port
    scp.stop()  # nothing listens there now
    with QALog(tmp_path / "qa.sqlite") as log:
        outbox = Outbox(tmp_path / "outbox", Destination("PACS", "127.0.0.1", port), log,
                        retry_initial_s=0.0, timeout_s=2.0)
        outbox.enqueue(_sr(), SERIES)
        [failed] = outbox.send_due()
        assert not failed.ok and "could not be established" in failed.reason
        assert len(outbox.items()) == 1
        scp = StorageSCP(port=port)
        try:
            assert [r.ok for r in outbox.send_due()] == [True]
        finally:
            scp.stop()
        assert len(scp.received) == 1 and outbox.items() == []


def test_updated_sr_replaces_the_waiting_one(tmp_path: Path) -> None:
    with QALog(tmp_path / "qa.sqlite") as log:
        outbox = Outbox(tmp_path / "outbox", Destination("PACS", "127.0.0.1", 9), log)
        first, second = _sr(1.5), _sr(3.5)
        assert first.SOPInstanceUID == second.SOPInstanceUID == sr_uids(SERIES, MODEL.sha256)[1]
        outbox.enqueue(first, SERIES)
        outbox.enqueue(second, SERIES)
        [item] = outbox.items()
        assert item.attempts == 0
        waiting = pydicom.dcmread(tmp_path / "outbox" / f"{item.sop_instance_uid}.dcm")
        assert read_sr_values(waiting)["slices"][0]["score"] == 3.5


def test_outbox_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    # SRs carry patient and study attributes: private like the node's spool.
    old = os.umask(0o022)
    try:
        with QALog(tmp_path / "qa.sqlite") as log:
            outbox = Outbox(tmp_path / "outbox", Destination("PACS", "127.0.0.1", 9), log)
            written = outbox.enqueue(_sr(), SERIES)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "outbox").stat().st_mode) == 0o700
    assert stat.S_IMODE(Path(written).stat().st_mode) == 0o600


@needs_dciodvfy
def test_watch_once_sends_series_sr(tmp_path: Path, tiny_model: Path) -> None:
    study = "1.2.826.0.1.3680043.8.498.599"
    datasets = [write_ct(tmp_path / "in" / f"{i}.dcm", series_uid=SERIES, study_uid=study,
                         instance=i + 1, seed=i) for i in range(3)]
    scp = StorageSCP()
    try:
        code = main(["watch", str(tmp_path / "in"), "--once", "--settle", "0.1", "--model",
                     str(tiny_model), "--log", str(tmp_path / "qa.sqlite"), "--send-sr",
                     f"PACS@127.0.0.1:{scp.port}", "--sr-outbox", str(tmp_path / "sr")])
    finally:
        scp.stop()
    assert code == 0
    [sr] = scp.received
    assert (sr.PatientID, sr.StudyInstanceUID) == ("PID-12345", study)
    sr.save_as(tmp_path / "received.dcm", enforce_file_format=True)
    assert dciodvfy_problems(tmp_path / "received.dcm") == []
    with QALog(tmp_path / "qa.sqlite") as log:
        logged = {r.sop_instance_uid: r.score for r in log.slices(series_uid=SERIES)}
        events = [e.event for e in log.sr_events(series_uid=SERIES)]
    assert events == ["queued", "sent"]
    values = read_sr_values(sr)
    assert {s["sop_instance_uid"]: s["score"] for s in values["slices"]} == logged
    assert set(logged) == {str(d.SOPInstanceUID) for d in datasets}
    assert list((tmp_path / "sr" / "outbox").iterdir()) == []


def test_bad_destination_is_a_usage_error(capsys: pytest.CaptureFixture) -> None:
    assert main(["serve", "--send-sr", "pacs:4242"]) == 2
    assert "expected AET@HOST:PORT" in capsys.readouterr().err


def _ingested(tmp_path: Path, tiny_model: Path, log: QALog, *, patient_id: bool):
    from deltaiqa_lite import Scorer
    from deltaiqa_lite.qa.ingest import Ingestor

    paths = []
    for i in range(2):
        ds = write_ct(tmp_path / "in" / f"{i}.dcm", series_uid=SERIES, instance=i + 1, seed=i,
                      study_uid="1.2.826.0.1.3680043.8.498.598")
        if not patient_id:
            del ds.PatientID
            ds.save_as(tmp_path / "in" / f"{i}.dcm", enforce_file_format=True)
        paths.append(str(tmp_path / "in" / f"{i}.dcm"))
    return Ingestor(Scorer(tiny_model), log, source="watch").process(paths)


def test_reporter_refuses_without_identity_and_resumes_after_restart(tmp_path: Path,
                                                                     tiny_model: Path) -> None:
    from deltaiqa_lite.qa.sr_node import SeriesReporter

    destination = Destination("PACS", "127.0.0.1", 9)
    with QALog(tmp_path / "qa.sqlite") as log:
        outcomes = _ingested(tmp_path / "a", tiny_model, log, patient_id=False)
        outbox = Outbox(tmp_path / "outbox", destination, log)
        reporter = SeriesReporter(log, MODEL, outbox, tmp_path / "state", series_idle_s=3600)
        for outcome in outcomes:
            reporter.note(outcome)
        assert reporter.due_series() == []  # not idle long enough yet
        # The node stops before the series is complete; a new one finds it on disk.
        restarted = SeriesReporter(log, MODEL, outbox, tmp_path / "state", series_idle_s=0)
        assert [uid for uid, _ in restarted.due_series()] == [SERIES]
        assert restarted.report(SERIES) is None
        [event] = log.sr_events(series_uid=SERIES)
        assert (event.event, event.reason) == (
            "refused", f"series {SERIES}: (0010,0020) Patient ID is missing or empty; an SR is "
                       "filed under the source's patient and none is invented")
        assert outbox.items() == []
        assert {r.status for r in log.slices(series_uid=SERIES)} == {"ok"}  # scoring unaffected


def test_reporter_queues_the_series_sr_from_the_log(tmp_path: Path, tiny_model: Path) -> None:
    from deltaiqa_lite.qa.sr_node import SeriesReporter

    with QALog(tmp_path / "qa.sqlite") as log:
        outcomes = _ingested(tmp_path / "a", tiny_model, log, patient_id=True)
        outbox = Outbox(tmp_path / "outbox", Destination("PACS", "127.0.0.1", 9), log,
                        timeout_s=1.0)
        reporter = SeriesReporter(log, MODEL, outbox, tmp_path / "state", series_idle_s=0)
        for outcome in outcomes:
            reporter.note(outcome)
        reporter.run_once()  # builds, queues, tries to send (nothing listens on port 9)
        assert list((tmp_path / "state").glob("*.pending")) == []
        [item] = outbox.items()
        assert item.sop_instance_uid == sr_uids(SERIES, MODEL.sha256)[1]
        waiting = pydicom.dcmread(tmp_path / "outbox" / f"{item.sop_instance_uid}.dcm")
        logged = {r.sop_instance_uid: r.score for r in log.slices(series_uid=SERIES)}
        assert {s["sop_instance_uid"]: s["score"] for s in read_sr_values(waiting)["slices"]} \
            == logged
        assert [e.event for e in log.sr_events(series_uid=SERIES)] == ["queued", "send_failed"]
