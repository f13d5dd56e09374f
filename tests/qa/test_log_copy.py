"""`deltaiqa-lite log copy`: a node's SQLite log into a real PostgreSQL that other nodes already write."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from deltaiqa_lite.cli import main
from deltaiqa_lite.qa.log import AlarmAck, QALog, SliceRecord, SREvent


def _ok(series: str, sop: str, score: float, station: str = "CT1", **extra) -> SliceRecord:
    return SliceRecord(source="serve", status="ok", series_uid=series, sop_instance_uid=sop, score=score,
                       likert=round(score), station_name=station, scored_at=f"2024-05-01T08:00:{sop[-1]}0",
                       acquisition_datetime="2024-05-01T07:59:00", **extra)


def test_copy_sqlite_into_postgres_merges_and_is_idempotent(tmp_path: Path, postgres_url: str,
                                                            capsys) -> None:
    node = tmp_path / "node.sqlite"
    with QALog(node) as log:
        log.record([_ok("1.1", "1.1.1", 2.0, noise_hu=14.0), _ok("1.1", "1.1.2", 3.0, noise_hu=16.0),
                    SliceRecord(source="serve", status="refused", series_uid="1.1",
                                sop_instance_uid="1.1.3", reason="localizer", refused_kind="localizer"),
                    _ok("1.2", "1.2.1", 1.0, station="CT<2>")])
        log.record_sr(SREvent("1.1", "sent", sr_sop_instance_uid="2.25.1", destination="PACS@h:104"))
        log.record_input("a/b.dcm", 10, 123456789012345678, "scored", sop_instance_uid="1.1.1")
        log.acknowledge(AlarmAck("score:1.1", "physicist", comment="ok"))
        local_series = [asdict(s) for s in log.series()]
    with QALog(postgres_url) as shared:  # another node wrote here first, one object overlaps
        shared.record([_ok("9.1", "9.1.1", 4.0, station="CT9"), _ok("1.1", "1.1.2", 3.0, noise_hu=16.0)])

    assert main(["log", "copy", str(node), postgres_url]) == 0
    err = capsys.readouterr().err
    assert "added 3 slices, 1 sr_reports, 1 inputs, 1 alarm_acks" in err
    assert main(["log", "copy", str(node), postgres_url]) == 0
    assert "added 0 slices, 0 sr_reports, 0 inputs, 0 alarm_acks" in capsys.readouterr().err

    with QALog(postgres_url) as shared:
        assert shared.counts() == {"ok": 4, "refused": 1}
        merged = {s.series_uid: asdict(s) for s in shared.series()}
        for row in local_series:
            assert merged[row["series_uid"]] == row  # the same summaries, recomputed on PostgreSQL
        assert merged["9.1"]["station_name"] == "CT9"
        assert [e.sr_sop_instance_uid for e in shared.sr_events()] == ["2.25.1"]
        assert shared.input_seen("a/b.dcm", 10, 123456789012345678)
        assert [a.comment for a in shared.acknowledgements()] == ["ok"]


def test_copy_missing_source_is_a_usage_error(tmp_path: Path, capsys) -> None:
    assert main(["log", "copy", str(tmp_path / "none.sqlite"), str(tmp_path / "b.sqlite")]) == 2
    assert "none.sqlite: no such QA log" in capsys.readouterr().err


def test_report_reads_a_postgres_log(postgres_url: str, capsys) -> None:
    with QALog(postgres_url) as log:
        log.record([_ok("1.1", "1.1.1", 2.0), _ok("1.1", "1.1.2", 3.0)])
    assert main(["report", "--log", postgres_url, "--format", "csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("station_name,protocol_name,kernel,series_uid")
    assert out[1].startswith("CT1,,,1.1,2024-05-01T07:59:00,2.5000")
