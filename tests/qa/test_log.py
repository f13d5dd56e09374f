from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from deltaiqa_lite.qa.log import (
    APPLICATION_ID,
    MIGRATIONS,
    SCHEMA_VERSION,
    QALog,
    QALogError,
    SliceRecord,
    migrate,
    schema_version,
)


def _ok(series: str, sop: str, score: float, **extra) -> SliceRecord:
    return SliceRecord(source="test", status="ok", series_uid=series, sop_instance_uid=sop,
                       score=score, likert=round(score), station_name="CT1", **extra)


def test_new_log_is_latest_schema_in_wal(tmp_path: Path) -> None:
    with QALog(tmp_path / "qa.sqlite") as log:
        assert log.schema_version == SCHEMA_VERSION == MIGRATIONS[-1].version
        assert log.execute("PRAGMA journal_mode")[0][0] == "wal"
        assert log.execute("PRAGMA application_id")[0][0] == APPLICATION_ID


def test_record_and_series_summary(log_target: str) -> None:
    with QALog(log_target) as log:
        n = log.record([_ok("1.1", "1.1.1", 2.0), _ok("1.1", "1.1.2", 3.0),
                        _ok("1.1", "1.1.3", 4.0),
                        SliceRecord(source="test", status="refused", series_uid="1.1",
                                    sop_instance_uid="1.1.4", reason="(0008,0060) Modality is 'MR'")])
        assert n == 4
        (row,) = log.series()
        assert row.n_slices == 3 and row.n_refused == 1 and row.n_error == 0
        assert row.score_mean == pytest.approx(3.0)
        assert row.score_sd == pytest.approx(1.0)
        assert (row.score_min, row.score_max) == (2.0, 4.0)
        assert log.counts() == {"ok": 3, "refused": 1}


def test_duplicates_ignored_errors_replaced(log_target: str) -> None:
    with QALog(log_target) as log:
        log.record([_ok("1.1", "1.1.1", 2.0)])
        assert log.record([_ok("1.1", "1.1.1", 4.0)]) == 0  # already scored: kept as is
        assert log.has_sop("1.1.1")
        log.record([SliceRecord(source="t", status="error", series_uid="1.1",
                                sop_instance_uid="1.1.9", reason="pixel data truncated")])
        assert not log.has_sop("1.1.9")  # an error may be retried on a resend
        assert log.record([_ok("1.1", "1.1.9", 3.0)]) == 1
        scores = sorted(r.score for r in log.slices(series_uid="1.1"))
        assert scores == [2.0, 3.0]
        assert log.series()[0].n_error == 0


def test_unique_per_frame(log_target: str) -> None:
    with QALog(log_target) as log:
        log.record([_ok("1.1", "1.1.1", 1.0, frame=0), _ok("1.1", "1.1.1", 2.0, frame=1)])
        assert len(log.slices()) == 2


def test_transaction_rolls_back_whole_batch(log_target: str) -> None:
    with QALog(log_target) as log:
        bad = SliceRecord(source="t", status="maybe", sop_instance_uid="1.2")  # CHECK fails
        with pytest.raises(sqlite3.IntegrityError):
            log.record([_ok("1.1", "1.1.1", 2.0), bad])
        assert log.slices() == [] and log.series() == []


def test_migration_from_v1_keeps_rows_and_backfills_series(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, target=1) == 1
    conn.execute("INSERT INTO slices (scored_at, source, series_uid, sop_instance_uid, status, "
                 "score, station_name, acquisition_datetime) VALUES "
                 "('2024-01-01T00:00:00', 'watch', '9.9', '9.9.1', 'ok', 1.5, 'CT3', "
                 "'2024-01-01T08:00:00'), "
                 "('2024-01-01T00:00:01', 'watch', '9.9', '9.9.2', 'ok', 2.5, 'CT3', "
                 "'2024-01-01T08:00:01')")
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("SELECT patient_hash FROM slices")
    conn.close()

    with QALog(path) as log:
        assert log.schema_version == SCHEMA_VERSION
        (row,) = log.series()
        assert row.series_uid == "9.9" and row.n_slices == 2
        assert row.score_mean == pytest.approx(2.0) and row.station_name == "CT3"
        assert row.acquisition_datetime == "2024-01-01T08:00:00"
        assert [s.patient_hash for s in log.slices()] == [None, None]
        assert not log.input_seen("a.dcm", 1, 1)


def test_newer_schema_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite"
    QALog(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(QALogError, match=r"future\.sqlite: schema version \d+ is newer"):
        QALog(path)


def test_foreign_database_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE patients (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(QALogError, match="not a deltaiqa-lite QA log"):
        QALog(path)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(QALogError, match=r"garbage\.sqlite"):
        QALog(garbage)


def test_failed_migration_leaves_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "half.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=1)
    # Simulate a v2 step that cannot run: the column it adds is already there.
    conn.execute("BEGIN")
    conn.execute("ALTER TABLE slices ADD COLUMN patient_hash TEXT")
    conn.execute("COMMIT")
    with pytest.raises(sqlite3.OperationalError, match="duplicate column"):
        migrate(conn)
    assert schema_version(conn) == 1
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'series'").fetchone()[0] == 0
    conn.close()


def test_inputs_tracking(log_target: str) -> None:
    with QALog(log_target) as log:
        log.record_input("sub/a.dcm", 100, 5, "error", "not a DICOM file")
        assert log.input_seen("sub/a.dcm", 100, 5)
        assert not log.input_seen("sub/a.dcm", 101, 5)  # rewritten file is looked at again
        assert log.execute("SELECT status, reason FROM inputs") == [("error", "not a DICOM file")]


def test_concurrent_writers(log_target: str) -> None:
    with QALog(log_target) as log:
        def write(k: int) -> None:
            for i in range(25):
                log.record([_ok(f"1.{k}", f"1.{k}.{i}", 2.0)])
        threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert log.counts() == {"ok": 100}
        assert sorted(r.n_slices for r in log.series()) == [25, 25, 25, 25]


def test_migration_from_v2_adds_physics_columns_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, target=2) == 2
    conn.execute("INSERT INTO slices (scored_at, source, series_uid, sop_instance_uid, status, score, "
                 "ctdivol_mgy) VALUES ('2024-01-01T00:00:00', 'watch', '7.7', '7.7.1', 'ok', 2.5, 11.0)")
    conn.execute("INSERT INTO series (series_uid, n_slices, n_refused, n_error, score_mean) "
                 "VALUES ('7.7', 1, 0, 0, 2.5)")
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("SELECT noise_hu FROM slices")
    conn.close()

    with QALog(path) as log:
        assert log.schema_version == SCHEMA_VERSION >= 3
        (old,) = log.slices()
        assert old.score == 2.5 and old.ctdivol_mgy == 11.0
        assert (old.noise_hu, old.water_equivalent_diameter_mm, old.ssde_mgy, old.flags) == (None,) * 4
        (row,) = log.series()
        assert row.score_mean == 2.5 and row.n_flagged == 0 and row.noise_hu_median is None
        # New rows carry physics and refresh the summary, old rows stay unknown (NULL).
        log.record([_ok("7.7", "7.7.2", 3.0, slice_location=2.0, noise_hu=12.0,
                        water_equivalent_diameter_mm=280.0, ssde_mgy=14.0, flags=""),
                    _ok("7.7", "7.7.3", 1.0, slice_location=1.0, noise_hu=20.0,
                        water_equivalent_diameter_mm=300.0, ssde_mgy=12.0,
                        flags="score-noise-disagree;body-truncated")])
        (row,) = log.series()
        assert row.noise_hu_median == pytest.approx(16.0)
        assert row.ssde_mgy_mean == pytest.approx(13.0)
        assert row.n_flagged == 1
        # Ordered by position: 1.0 (Dw 300), 2.0 (Dw 280), then the old row without position.
        assert row.water_equivalent_diameter_mm_middle == 280.0


def test_migration_from_v1_reaches_physics_schema(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=1)
    conn.execute("INSERT INTO slices (scored_at, source, series_uid, sop_instance_uid, status, score) "
                 "VALUES ('2024-01-01T00:00:00', 'watch', '8.8', '8.8.1', 'ok', 3.5)")
    conn.close()
    with QALog(path) as log:
        (row,) = log.series()
        assert row.score_mean == 3.5 and row.n_flagged == 0 and row.water_equivalent_diameter_mm_middle is None


def test_postgres_log_same_schema_as_sqlite(tmp_path: Path, postgres_url: str) -> None:
    """Every migration step builds the same tables and columns on both backends."""
    with QALog(tmp_path / "qa.sqlite") as lite, QALog(postgres_url) as pg:
        assert lite.schema_version == pg.schema_version == SCHEMA_VERSION
        assert pg.backend == "postgresql" and lite.backend == "sqlite"
        tables = [r[0] for r in lite.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        for table in tables:
            lite_cols = [r[1] for r in lite.execute(f"PRAGMA table_info({table})")]
            pg_cols = [r[0] for r in pg.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                "ORDER BY ordinal_position", [table])]
            assert pg_cols == lite_cols, table
        # Floats are 8 bytes (PostgreSQL's REAL would be 4) and text sorts by bytes, as in SQLite.
        assert pg.execute("SELECT data_type FROM information_schema.columns "
                          "WHERE table_name = 'slices' AND column_name = 'score'") == [("double precision",)]
        assert pg.execute("SELECT data_type FROM information_schema.columns "
                          "WHERE table_name = 'inputs' AND column_name = 'mtime_ns'") == [("bigint",)]


def test_postgres_foreign_and_newer_databases_refused(postgres_url: str) -> None:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE patients (name TEXT)")
    with pytest.raises(QALogError, match="not a deltaiqa-lite QA log"):
        QALog(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP TABLE patients")
    with QALog(postgres_url):
        pass
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE deltaiqa_meta SET value = 99 WHERE key = 'user_version'")
    with pytest.raises(QALogError, match="schema version 99 is newer"):
        QALog(postgres_url)


def test_postgres_password_never_shown(postgres_server) -> None:
    url = postgres_server.url("nosuchdb").replace("diqa@", "diqa:s3cret@")
    with pytest.raises(QALogError) as caught:
        QALog(url)
    assert "s3cret" not in str(caught.value) and "***" in str(caught.value)


def test_postgres_server_gone_is_a_write_failure(postgres_server) -> None:
    """A lost server raises QALogError (serve answers the peer with a failure), then recovers."""
    import psycopg

    url = postgres_server.create_database("gone")
    with QALog(url, busy_timeout_s=2) as log:
        log.record([_ok("1.1", "1.1.1", 2.0)])
        with psycopg.connect(postgres_server.admin_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = 'gone'")
        with pytest.raises(QALogError, match="cannot use the QA log"):
            log.record([_ok("1.1", "1.1.2", 3.0)])
        log.record([_ok("1.1", "1.1.2", 3.0)])  # reconnected at the next statement
        assert log.counts() == {"ok": 2}


def test_migrations_race_runs_each_step_once(log_target: str) -> None:
    """Nodes opening a new log at the same moment: one migrates, the others wait and reuse it."""
    errors: list[BaseException] = []

    def open_log() -> None:
        try:
            with QALog(log_target) as log:
                assert log.schema_version == SCHEMA_VERSION
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_log) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_alarm_acknowledgements(log_target: str) -> None:
    from deltaiqa_lite.qa.log import AlarmAck

    with QALog(log_target) as log:
        log.acknowledge(AlarmAck("score:1.2.3", "physicist", series_uid="1.2.3",
                                 comment="tube changed on <Monday>"))
        log.acknowledge(AlarmAck("score:1.2.3", "lead", comment="checked"))
        acks = log.acknowledgements(alarm_key="score:1.2.3")
        assert [(a.acknowledged_by, a.comment) for a in acks] == [
            ("physicist", "tube changed on <Monday>"), ("lead", "checked")]
        assert acks[0].acknowledged_at and log.acknowledgements(alarm_key="noise:x") == []


def test_postgres_write_waits_at_most_the_busy_timeout(postgres_url: str) -> None:
    """Another node holding the write lock: the write fails as 'locked' after busy_timeout_s."""
    import time

    import psycopg

    from deltaiqa_lite.qa.log_postgres import WRITE_LOCK_KEY

    with QALog(postgres_url, busy_timeout_s=1.0) as log, psycopg.connect(postgres_url) as other:
        other.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")  # in an open transaction
        started = time.monotonic()
        with pytest.raises(QALogError, match="locked by another process"):
            log.record([_ok("1.1", "1.1.1", 2.0)])
        assert time.monotonic() - started < 10
        other.rollback()
        assert log.record([_ok("1.1", "1.1.1", 2.0)]) == 1
