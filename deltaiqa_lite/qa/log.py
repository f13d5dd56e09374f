"""The QA log: one SQLite file, one row per scored (or refused) slice, a per-series summary.

Why SQLite: stdlib, one file a physicist can copy, readable from any tool, and
WAL mode lets ``report`` read while ``serve`` or ``watch`` writes. Sites with
several nodes give them one PostgreSQL database instead (a ``postgresql://``
URL): the same schema, migrations and queries run there through the
sqlite3-shaped connection of :mod:`deltaiqa_lite.qa.log_postgres`.

Schema versioning: ``PRAGMA user_version`` holds the schema version and
``PRAGMA application_id`` marks the file as a deltaiqa-lite QA log. The schema
is built only by the ordered steps in ``MIGRATIONS``; opening an older log
upgrades it in place (each step in its own transaction), opening a newer one
is refused instead of guessed at.

What is stored: UIDs, acquisition and technique fields, score, class,
probabilities, model, provider, refusals with their reasons and kinds (selection
policy: localizer, MIP, perfusion map ..., counted per series), and (watch only)
the file path relative to the watched folder. Never patient name, Patient ID
or birth date; optionally a salted HMAC of Patient ID (``patient_hash``).
"""

from __future__ import annotations

import errno
import math
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from typing import Any

from deltaiqa_lite.errors import DeltaIQAError
from deltaiqa_lite.qa.log_postgres import is_postgres_url
from deltaiqa_lite.read.names import display_text

APPLICATION_ID = int.from_bytes(b"DIQA", "big")
#: The QA log of `serve`, `watch` and `report` when --log is not given.
DEFAULT_LOG = "deltaiqa-qa.sqlite"


class QALogError(DeltaIQAError):
    """The QA log file cannot be opened, is not a QA log, is too new, or cannot be written."""


def _write_failure(name: str, exc: BaseException, busy_s: float) -> QALogError:
    """The true cause of a failed write, in words (not SQLite's follow-up errors)."""
    text = str(exc)
    lowered = text.lower()
    if "disk is full" in lowered or "disk full" in lowered or getattr(exc, "errno", None) == errno.ENOSPC:
        cause = "the disk is full"
    elif "locked" in lowered or "busy" in lowered or "lock timeout" in lowered:
        cause = f"the log is locked by another process (waited {busy_s:g} s)"
    elif "readonly" in lowered or "read-only" in lowered:
        cause = "the log or its folder is read-only"
    elif "connect" in lowered or "server closed" in lowered or "terminat" in lowered:
        cause = "the database server cannot be reached"
    else:
        cause = "database error"
    return QALogError(f"{name}: cannot use the QA log: {cause} ({text})")


# ---------------------------------------------------------------- migrations

_V1_SLICES = """
CREATE TABLE slices (
    id INTEGER PRIMARY KEY,
    scored_at TEXT NOT NULL,
    source TEXT NOT NULL,
    file_name TEXT,
    study_uid TEXT,
    series_uid TEXT,
    sop_instance_uid TEXT,
    frame INTEGER NOT NULL DEFAULT 0,
    sop_class_uid TEXT,
    modality TEXT,
    acquisition_datetime TEXT,
    station_name TEXT,
    manufacturer TEXT,
    model_name TEXT,
    protocol_name TEXT,
    series_description TEXT,
    body_part TEXT,
    kvp REAL,
    tube_current_ma REAL,
    exposure_mas REAL,
    ctdivol_mgy REAL,
    kernel TEXT,
    slice_thickness_mm REAL,
    reconstruction_diameter_mm REAL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'refused', 'error')),
    reason TEXT,
    score REAL,
    likert INTEGER,
    label TEXT,
    p0 REAL, p1 REAL, p2 REAL, p3 REAL, p4 REAL,
    model TEXT,
    precision TEXT,
    provider TEXT
);
CREATE UNIQUE INDEX slices_sop_frame ON slices (sop_instance_uid, frame)
    WHERE sop_instance_uid IS NOT NULL;
CREATE INDEX slices_series ON slices (series_uid);
"""

_V2_SERIES_AND_INPUTS = """
ALTER TABLE slices ADD COLUMN patient_hash TEXT;
CREATE TABLE series (
    series_uid TEXT PRIMARY KEY,
    study_uid TEXT,
    acquisition_datetime TEXT,
    first_scored_at TEXT,
    last_scored_at TEXT,
    station_name TEXT,
    manufacturer TEXT,
    model_name TEXT,
    protocol_name TEXT,
    series_description TEXT,
    body_part TEXT,
    kernel TEXT,
    kvp REAL,
    ctdivol_mgy REAL,
    slice_thickness_mm REAL,
    n_slices INTEGER NOT NULL,
    n_refused INTEGER NOT NULL,
    n_error INTEGER NOT NULL,
    score_mean REAL,
    score_sd REAL,
    score_min REAL,
    score_max REAL,
    model TEXT,
    precision TEXT,
    patient_hash TEXT
);
CREATE INDEX series_time ON series (acquisition_datetime);
CREATE TABLE inputs (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    sop_instance_uid TEXT,
    recorded_at TEXT NOT NULL
);
"""


# Structured Reports sent back to PACS (deltaiqa_lite.qa.outbox): one row per event
# of a series' SR (queued, sent, send_failed, refused, error), so the log says
# when each series' SR was sent and to whom, and why one was not.
_V4_SR_REPORTS = """
CREATE TABLE sr_reports (
    id INTEGER PRIMARY KEY,
    recorded_at TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    sr_sop_instance_uid TEXT,
    event TEXT NOT NULL CHECK (event IN ('queued', 'sent', 'send_failed', 'refused', 'error')),
    destination TEXT,
    content_datetime TEXT,
    attempts INTEGER,
    reason TEXT
);
CREATE INDEX sr_reports_series ON sr_reports (series_uid);
"""

_V5_PHYSICS = """
ALTER TABLE slices ADD COLUMN slice_location REAL;
ALTER TABLE slices ADD COLUMN noise_hu REAL;
ALTER TABLE slices ADD COLUMN water_equivalent_diameter_mm REAL;
ALTER TABLE slices ADD COLUMN ssde_mgy REAL;
ALTER TABLE slices ADD COLUMN noise_score REAL;
ALTER TABLE slices ADD COLUMN flags TEXT;
ALTER TABLE slices ADD COLUMN physics_note TEXT;
ALTER TABLE series ADD COLUMN noise_hu_median REAL;
ALTER TABLE series ADD COLUMN water_equivalent_diameter_mm_middle REAL;
ALTER TABLE series ADD COLUMN ssde_mgy_mean REAL;
ALTER TABLE series ADD COLUMN n_flagged INTEGER NOT NULL DEFAULT 0
"""

# Flag codes of a slice in the ``flags`` column: joined with FLAG_SEPARATOR; '' means none, NULL unknown.


def _backfill_series(conn: sqlite3.Connection) -> None:
    uids = [row[0] for row in conn.execute(
        "SELECT DISTINCT series_uid FROM slices WHERE series_uid IS NOT NULL")]
    for uid in uids:
        _refresh_series(conn, uid)


_V3_SELECTION_POLICY = """
ALTER TABLE slices ADD COLUMN refused_kind TEXT;
ALTER TABLE slices ADD COLUMN policy_override TEXT;
ALTER TABLE series ADD COLUMN refused_kinds TEXT
"""


def _backfill_refused_kinds(conn: sqlite3.Connection) -> None:
    # Before the selection policy only header checks refused (SOP Class, Modality, UIDs);
    # give those rows the kind they would get now, then recount every series.
    from deltaiqa_lite.qa.header import CT_SOP_CLASSES
    from deltaiqa_lite.read.policy import header_refusal_kind

    rows = conn.execute("SELECT id, sop_class_uid, modality FROM slices "
                        "WHERE status = 'refused' AND refused_kind IS NULL").fetchall()
    for row_id, sop_class, modality in rows:
        if (sop_class and sop_class not in CT_SOP_CLASSES) or (modality and modality.upper() != "CT"):
            kind = header_refusal_kind(sop_class, modality)
        else:
            kind = "invalid header"
        conn.execute("UPDATE slices SET refused_kind = ? WHERE id = ?", (kind, row_id))
    _backfill_series(conn)


# CT Radiation Dose SRs (TID 10011) that arrived, keyed by study: the exam's DLP for
# the per-exam measure (deltaiqa_lite.qa.exams). Slices get the study's own words
# (description, procedure code) for the CT category mapping.
_V6_DOSE_REPORTS = """
CREATE TABLE dose_reports (
    id INTEGER PRIMARY KEY,
    recorded_at TEXT NOT NULL,
    source TEXT NOT NULL,
    file_name TEXT,
    study_uid TEXT,
    sop_instance_uid TEXT,
    station_name TEXT,
    total_dlp_mgy_cm REAL,
    n_acquisitions INTEGER NOT NULL DEFAULT 0,
    problems TEXT
);
CREATE UNIQUE INDEX dose_reports_sop ON dose_reports (sop_instance_uid) WHERE sop_instance_uid IS NOT NULL;
CREATE INDEX dose_reports_study ON dose_reports (study_uid);
CREATE TABLE dose_acquisitions (
    report_id INTEGER NOT NULL REFERENCES dose_reports (id),
    number INTEGER NOT NULL,
    protocol TEXT,
    target_region TEXT,
    acquisition_type TEXT,
    ctdivol_mgy REAL,
    dlp_mgy_cm REAL,
    scanning_length_mm REAL,
    phantom TEXT
);
CREATE INDEX dose_acquisitions_report ON dose_acquisitions (report_id);
ALTER TABLE slices ADD COLUMN study_description TEXT;
ALTER TABLE slices ADD COLUMN procedure_code TEXT;
ALTER TABLE slices ADD COLUMN procedure_meaning TEXT
"""

# Dashboard (deltaiqa_lite.dashboard): acknowledged alarms with who, when and why, and the
# indexes that let its overview and trend pages read the series summaries of one
# station or group over a time window without scanning (never the slices table).
_V7_DASHBOARD = """
CREATE TABLE alarm_acks (
    id INTEGER PRIMARY KEY,
    alarm_key TEXT NOT NULL,
    series_uid TEXT,
    acknowledged_at TEXT NOT NULL,
    acknowledged_by TEXT NOT NULL,
    comment TEXT
);
CREATE INDEX alarm_acks_key ON alarm_acks (alarm_key);
CREATE INDEX series_when ON series (coalesce(acquisition_datetime, first_scored_at));
CREATE INDEX series_station_when ON series (station_name, coalesce(acquisition_datetime, first_scored_at));
CREATE INDEX series_group_when ON series (station_name, protocol_name, kernel,
    coalesce(acquisition_datetime, first_scored_at))
"""


@dataclass(frozen=True)
class Migration:
    """One schema step: SQL run in a transaction, then an optional Python data step."""

    version: int
    description: str
    sql: str
    data_step: Callable[[sqlite3.Connection], None] | None = None


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "per-slice log", _V1_SLICES),
    Migration(2, "patient hash column, per-series summary (backfilled), watch input tracking",
              _V2_SERIES_AND_INPUTS, _backfill_series),
    Migration(3, "selection policy: refused kind and policy override per slice, refused kinds per series",
              _V3_SELECTION_POLICY, _backfill_refused_kinds),
    Migration(4, "structured reports sent back to PACS (sr_reports)", _V4_SR_REPORTS),
    Migration(5, "physics beside the network: slice position, noise level, Dw, SSDE, noise score, "
                 "flags and their series summaries", _V5_PHYSICS),
    Migration(6, "CT Radiation Dose SRs per study (dose_reports, dose_acquisitions); study description and "
                 "procedure code per slice", _V6_DOSE_REPORTS),
    Migration(7, "dashboard: alarm acknowledgements, series indexes by station, group and time",
              _V7_DASHBOARD),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def schema_version(conn: sqlite3.Connection) -> int:
    """The schema version stored in an open database (0 for a new file)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, *, target: int = SCHEMA_VERSION, name: str = "QA log") -> int:
    """Bring ``conn`` to schema ``target`` by the ordered steps; return the version reached.

    Each step runs in its own ``BEGIN IMMEDIATE`` transaction together with the
    version bump, so a crash leaves the file at the previous version, never
    half-migrated.
    """
    current = schema_version(conn)
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    if current > SCHEMA_VERSION:
        raise QALogError(f"{name}: schema version {current} is newer than this deltaiqa-lite "
                         f"supports ({SCHEMA_VERSION}); upgrade deltaiqa-lite to read it")
    if current == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables:
            raise QALogError(f"{name}: an SQLite database that is not a deltaiqa-lite QA log")
    elif app_id != APPLICATION_ID:
        raise QALogError(f"{name}: an SQLite database that is not a deltaiqa-lite QA log "
                         f"(application_id {app_id:#x})")
    for step in MIGRATIONS:
        if step.version <= current or step.version > target:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(conn) >= step.version:  # another process ran it while we waited
                conn.execute("ROLLBACK")
                current = step.version
                continue
            for statement in _split_sql(step.sql):
                conn.execute(statement)
            if step.data_step is not None:
                step.data_step(conn)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {step.version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        current = step.version
    return current


def _split_sql(script: str) -> Iterator[str]:
    # Our migration scripts contain no ';' inside literals, so a plain split is exact;
    # executescript() is avoided because it commits the surrounding transaction.
    for statement in script.split(";"):
        if statement.strip():
            yield statement


# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class SliceRecord:
    """One row of the ``slices`` table."""

    source: str
    status: str
    scored_at: str = ""
    file_name: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    sop_instance_uid: str | None = None
    frame: int = 0
    sop_class_uid: str | None = None
    modality: str | None = None
    acquisition_datetime: str | None = None
    station_name: str | None = None
    manufacturer: str | None = None
    model_name: str | None = None
    protocol_name: str | None = None
    series_description: str | None = None
    body_part: str | None = None
    kvp: float | None = None
    tube_current_ma: float | None = None
    exposure_mas: float | None = None
    ctdivol_mgy: float | None = None
    kernel: str | None = None
    slice_thickness_mm: float | None = None
    reconstruction_diameter_mm: float | None = None
    reason: str | None = None
    score: float | None = None
    likert: int | None = None
    label: str | None = None
    p0: float | None = None
    p1: float | None = None
    p2: float | None = None
    p3: float | None = None
    p4: float | None = None
    model: str | None = None
    precision: str | None = None
    provider: str | None = None
    patient_hash: str | None = None
    refused_kind: str | None = None
    policy_override: str | None = None
    slice_location: float | None = None
    noise_hu: float | None = None
    water_equivalent_diameter_mm: float | None = None
    ssde_mgy: float | None = None
    noise_score: float | None = None
    flags: str | None = None
    physics_note: str | None = None
    study_description: str | None = None
    procedure_code: str | None = None
    procedure_meaning: str | None = None


@dataclass(frozen=True)
class DoseReportRow:
    """One row of the ``dose_reports`` table: a CT Radiation Dose SR of a study."""

    source: str
    recorded_at: str = ""
    file_name: str | None = None
    study_uid: str | None = None
    sop_instance_uid: str | None = None
    station_name: str | None = None
    total_dlp_mgy_cm: float | None = None
    n_acquisitions: int = 0
    problems: str | None = None


@dataclass(frozen=True)
class SeriesRow:
    """One row of the ``series`` summary table."""

    series_uid: str
    study_uid: str | None
    acquisition_datetime: str | None
    first_scored_at: str | None
    last_scored_at: str | None
    station_name: str | None
    manufacturer: str | None
    model_name: str | None
    protocol_name: str | None
    series_description: str | None
    body_part: str | None
    kernel: str | None
    kvp: float | None
    ctdivol_mgy: float | None
    slice_thickness_mm: float | None
    n_slices: int
    n_refused: int
    n_error: int
    score_mean: float | None
    score_sd: float | None
    score_min: float | None
    score_max: float | None
    model: str | None
    precision: str | None
    patient_hash: str | None
    #: Refused images of the series by kind, e.g. ``"localizer=2; MIP=40"`` (selection policy).
    refused_kinds: str | None = None
    noise_hu_median: float | None = None
    water_equivalent_diameter_mm_middle: float | None = None
    ssde_mgy_mean: float | None = None
    n_flagged: int = 0

    @property
    def refused_counts(self) -> dict[str, int]:
        """``refused_kinds`` as ``{kind: number of images}``."""
        return parse_refused_kinds(self.refused_kinds)


def format_refused_kinds(counts: dict[str, int]) -> str | None:
    """``{"MIP": 40, "localizer": 2}`` -> ``"MIP=40; localizer=2"`` (sorted by kind); None when empty."""
    return "; ".join(f"{kind}={n}" for kind, n in sorted(counts.items())) or None


def parse_refused_kinds(text: str | None) -> dict[str, int]:
    """Inverse of :func:`format_refused_kinds`."""
    counts: dict[str, int] = {}
    for part in (text or "").split("; "):
        kind, sep, number = part.rpartition("=")
        if sep and kind:
            counts[kind] = int(number)
    return counts


@dataclass(frozen=True)
class SREvent:
    """One row of the ``sr_reports`` table (what happened to a series' SR, when)."""

    series_uid: str
    event: str  # queued | sent | send_failed | refused | error
    recorded_at: str = ""
    sr_sop_instance_uid: str | None = None
    destination: str | None = None
    content_datetime: str | None = None
    attempts: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class AlarmAck:
    """One row of the ``alarm_acks`` table: who acknowledged which alarm, when, and why."""

    alarm_key: str
    acknowledged_by: str
    acknowledged_at: str = ""
    series_uid: str | None = None
    comment: str | None = None


_ACK_COLUMNS = [f.name for f in fields(AlarmAck)]
_SLICE_COLUMNS = [f.name for f in fields(SliceRecord)]
_SR_COLUMNS = [f.name for f in fields(SREvent)]
_DOSE_COLUMNS = [f.name for f in fields(DoseReportRow)]
_ACQUISITION_COLUMNS = ["number", "protocol", "target_region", "acquisition_type", "ctdivol_mgy", "dlp_mgy_cm",
                        "scanning_length_mm", "phantom"]
_SERIES_COLUMNS = [f.name for f in fields(SeriesRow)]


def utc_now() -> str:
    """Current UTC time, ISO 8601 with 'Z'-free offset, second precision (log timestamps)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
def _physics_summary(conn: sqlite3.Connection, series_uid: str) -> dict:
    """Median noise level, Dw of the middle slice, mean SSDE and flagged slices of one series."""
    rows = conn.execute(
        "SELECT noise_hu, water_equivalent_diameter_mm, ssde_mgy, flags FROM slices "
        "WHERE series_uid = ? AND status = 'ok' "
        "ORDER BY slice_location IS NULL, slice_location, frame, id", (series_uid,)).fetchall()
    noise = sorted(r[0] for r in rows if r[0] is not None)
    median = None
    if noise:
        half = len(noise) // 2
        median = noise[half] if len(noise) % 2 else 0.5 * (noise[half - 1] + noise[half])
    middle = (len(rows) - 1) / 2.0
    with_dw = [(abs(k - middle), k) for k, r in enumerate(rows) if r[1] is not None]
    ssde = [r[2] for r in rows if r[2] is not None]
    return {"noise_hu_median": median,
            "water_equivalent_diameter_mm_middle": rows[min(with_dw)[1]][1] if with_dw else None,
            "ssde_mgy_mean": math.fsum(ssde) / len(ssde) if ssde else None,
            "n_flagged": sum(1 for r in rows if r[3])}


def _refresh_series(conn: sqlite3.Connection, series_uid: str) -> None:
    """Recompute the summary row of one series from its slices."""
    rows = conn.execute(
        "SELECT status, score, scored_at FROM slices WHERE series_uid = ?", (series_uid,)).fetchall()
    if not rows:
        conn.execute("DELETE FROM series WHERE series_uid = ?", (series_uid,))
        return
    scores = [r[1] for r in rows if r[0] == "ok" and r[1] is not None]
    n_ok = len(scores)
    mean = sd = low = high = None
    if n_ok:
        mean = math.fsum(scores) / n_ok
        sd = math.sqrt(math.fsum((s - mean) ** 2 for s in scores) / (n_ok - 1)) if n_ok > 1 else 0.0
        low, high = min(scores), max(scores)
    # Representative header fields: the first scored slice (else any slice) of the series.
    rep = conn.execute(
        "SELECT study_uid, station_name, manufacturer, model_name, protocol_name, "
        "series_description, body_part, kernel, kvp, slice_thickness_mm, model, precision, "
        "patient_hash FROM slices WHERE series_uid = ? ORDER BY status != 'ok', id LIMIT 1",
        (series_uid,)).fetchone()
    agg = conn.execute(
        "SELECT min(acquisition_datetime), min(scored_at), max(scored_at), avg(ctdivol_mgy), "
        "sum(CASE WHEN status = 'refused' THEN 1 ELSE 0 END), "
        "sum(CASE WHEN status = 'error' THEN 1 ELSE 0 END) FROM slices WHERE series_uid = ?",
        (series_uid,)).fetchone()
    values = {
        "series_uid": series_uid, "study_uid": rep[0], "acquisition_datetime": agg[0],
        "first_scored_at": agg[1], "last_scored_at": agg[2], "station_name": rep[1],
        "manufacturer": rep[2], "model_name": rep[3], "protocol_name": rep[4],
        "series_description": rep[5], "body_part": rep[6], "kernel": rep[7], "kvp": rep[8],
        "ctdivol_mgy": agg[3], "slice_thickness_mm": rep[9], "n_slices": n_ok,
        "n_refused": int(agg[4] or 0), "n_error": int(agg[5] or 0), "score_mean": mean,
        "score_sd": sd, "score_min": low, "score_max": high, "model": rep[10],
        "precision": rep[11], "patient_hash": rep[12],
    }
    # Older schema steps (migration 2's backfill) run this before later columns exist.
    if "refused_kinds" in _columns(conn, "series"):
        kinds = conn.execute(
            "SELECT coalesce(refused_kind, 'not recorded'), count(*) FROM slices "
            "WHERE series_uid = ? AND status = 'refused' GROUP BY 1", (series_uid,)).fetchall()
        values["refused_kinds"] = format_refused_kinds({kind: int(n) for kind, n in kinds})
    if "n_flagged" in _columns(conn, "series"):
        values.update(_physics_summary(conn, series_uid))
    cols = list(values)
    conn.execute(f"INSERT INTO series ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)}) "
                 "ON CONFLICT (series_uid) DO UPDATE SET "
                 + ", ".join(f"{c} = excluded.{c}" for c in cols[1:]), [values[c] for c in cols])


# ---------------------------------------------------------------- the log


class QALog:
    """An open QA log. Thread-safe: one connection behind a lock.

    Parameters
    ----------
    path : str or PathLike
        The SQLite file; created (with its folder) when missing. Or a
        ``postgresql://`` URL: the same schema, migrations and guarantees in a
        PostgreSQL database that several nodes share (``postgres`` extra; see
        :mod:`deltaiqa_lite.qa.log_postgres`).

    Raises
    ------
    QALogError
        The file is not a QA log, is from a newer version, or cannot be opened.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 30.0,
                 file_mode: int = 0o600, dir_mode: int = 0o700) -> None:
        self.path = os.fspath(path)
        self.name = name = os.path.basename(self.path) or self.path
        self.busy_timeout_s = float(busy_timeout_s)
        self._lock = threading.RLock()
        if is_postgres_url(self.path):
            self._open_postgres()
            return
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(folder, mode=dir_mode, exist_ok=True)
            # Created here, private, before SQLite opens it: SQLite gives its -wal and
            # -shm files the permissions of the database file (0644 under the usual umask).
            try:
                os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, file_mode))
            except FileExistsError:
                pass  # an existing log keeps its permissions (and may be read-only to us)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a batch of
            # slices and its series summaries land in one transaction or not at all.
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                         timeout=self.busy_timeout_s)
        except (OSError, sqlite3.Error) as exc:
            raise QALogError(f"{name}: cannot open QA log ({exc})") from exc
        try:
            self._conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a committed row survives a power loss. The node deletes its spool
            # copy of an acknowledged image right after the commit, so NORMAL (which
            # may lose the last transactions in WAL mode) could lose the image with it.
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            migrate(self._conn, name=name)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise QALogError(f"{name}: not a QA log or damaged ({exc})") from exc
        except QALogError:
            self._conn.close()
            raise

    def _open_postgres(self) -> None:
        from deltaiqa_lite.qa.log_postgres import PostgresConnection, redact

        # The password never reaches a message, a report or a page.
        self.url, self.path = self.path, redact(self.path)
        self.name = self.path
        try:
            self._conn = PostgresConnection(self.url, busy_timeout_s=self.busy_timeout_s)
        except sqlite3.Error as exc:
            raise QALogError(f"{self.name}: cannot open QA log ({exc})") from exc
        try:
            migrate(self._conn, name=self.name)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise QALogError(f"{self.name}: not a QA log or damaged ({exc})") from exc
        except QALogError:
            self._conn.close()
            raise

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return getattr(self._conn, "dialect", "sqlite")

    # -- context management
    def close(self) -> None:
        """Close the connection (checkpoints the WAL)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> QALog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """Schema version of the open file."""
        with self._lock:
            return schema_version(self._conn)

    # -- writing
    def record(self, records: Sequence[SliceRecord]) -> int:
        """Store slice records in one transaction and refresh their series summaries.

        A record whose (SOP Instance UID, frame) is already logged as ``ok`` or
        ``refused`` is ignored (restart safety); an earlier ``error`` row for the
        same object is replaced, so a resent object gets a second chance.

        Returns
        -------
        int
            Number of rows written.
        """
        if not records:
            return 0
        stamp = utc_now()
        placeholders = ", ".join("?" for _ in _SLICE_COLUMNS)
        insert = (f"INSERT INTO slices ({', '.join(_SLICE_COLUMNS)}) VALUES ({placeholders}) "
                  "ON CONFLICT (sop_instance_uid, frame) WHERE sop_instance_uid IS NOT NULL "
                  "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in _SLICE_COLUMNS)
                  + " WHERE slices.status = 'error'")
        touched: set[str] = set()
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                rows = []
                for rec in records:
                    # getattr, not asdict(): the fields are flat, and asdict's deep copy
                    # was most of the cost of a write. Text from file names may hold
                    # undecodable bytes: stored escaped.
                    row = [display_text(v) if isinstance(v, str) else v
                           for v in (getattr(rec, c) for c in _SLICE_COLUMNS)]
                    row[_SLICE_COLUMNS.index("scored_at")] = rec.scored_at or stamp
                    rows.append(row)
                    if rec.series_uid:
                        touched.add(rec.series_uid)
                # One call for the batch (psycopg pipelines it: one round trip, not one per row);
                # rowcount sums the rows really written (ignored duplicates count 0).
                written = self._conn.executemany(insert, rows).rowcount
                for uid in sorted(touched):
                    _refresh_series(self._conn, uid)
                self._conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:  # locked, full, read-only: not our bug
                self._rollback()
                raise _write_failure(self.name, exc, self.busy_timeout_s) from exc
            except BaseException:
                self._rollback()
                raise
        return written

    def _rollback(self) -> None:
        # SQLite rolls back by itself on some errors (SQLITE_FULL); a second ROLLBACK
        # would then fail with "no transaction is active" and hide the real cause.
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the original error is the one worth reporting

    def probe(self) -> None:
        """Check that a write transaction can be taken now (raises QALogError if not)."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.execute("ROLLBACK")
            except sqlite3.OperationalError as exc:  # locked, full, read-only: not our bug
                self._rollback()
                raise _write_failure(self.name, exc, self.busy_timeout_s) from exc

    def record_input(self, path: str, size: int, mtime_ns: int, status: str,
                     reason: str | None = None, sop_instance_uid: str | None = None) -> None:
        """Remember that a watched file (relative path, size, mtime) has been dealt with."""
        with self._lock:
            try:
                self._conn.execute(
                    "INSERT INTO inputs (path, size, mtime_ns, status, reason, "
                    "sop_instance_uid, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (path) DO UPDATE SET size = excluded.size, "
                    "mtime_ns = excluded.mtime_ns, status = excluded.status, "
                    "reason = excluded.reason, sop_instance_uid = excluded.sop_instance_uid, "
                    "recorded_at = excluded.recorded_at",
                    (display_text(path), size, mtime_ns, status,
                     None if reason is None else display_text(reason), sop_instance_uid,
                     utc_now()))
            except sqlite3.OperationalError as exc:
                raise _write_failure(self.name, exc, self.busy_timeout_s) from exc

    def record_sr(self, event: SREvent) -> None:
        """Append one SR event (its ``recorded_at`` defaults to now)."""
        row = asdict(event)
        row["recorded_at"] = row["recorded_at"] or utc_now()
        with self._lock:
            self._conn.execute(
                f"INSERT INTO sr_reports ({', '.join(_SR_COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in _SR_COLUMNS)})", [row[c] for c in _SR_COLUMNS])

    def record_dose_report(self, row: DoseReportRow, acquisitions: Sequence[dict[str, Any]] = ()) -> bool:
        """Store one dose report and its acquisitions; False when its SOP Instance UID is already there."""
        values = asdict(row)
        values["recorded_at"] = values["recorded_at"] or utc_now()
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                if row.sop_instance_uid is not None and self._conn.execute(
                        "SELECT 1 FROM dose_reports WHERE sop_instance_uid = ?", (row.sop_instance_uid,)).fetchone():
                    self._conn.execute("ROLLBACK")
                    return False
                # RETURNING, not lastrowid: the same statement works on PostgreSQL.
                report_id = self._conn.execute(
                    f"INSERT INTO dose_reports ({', '.join(_DOSE_COLUMNS)}) "
                    f"VALUES ({', '.join('?' for _ in _DOSE_COLUMNS)}) RETURNING id",
                    [values[c] for c in _DOSE_COLUMNS]).fetchone()[0]
                for number, acquisition in enumerate(acquisitions, 1):
                    item = {**acquisition, "number": number}
                    self._conn.execute(
                        f"INSERT INTO dose_acquisitions (report_id, {', '.join(_ACQUISITION_COLUMNS)}) "
                        f"VALUES (?, {', '.join('?' for _ in _ACQUISITION_COLUMNS)})",
                        [report_id] + [item.get(c) for c in _ACQUISITION_COLUMNS])
                self._conn.execute("COMMIT")
                return True
            except sqlite3.OperationalError as exc:
                self._rollback()
                raise _write_failure(self.name, exc, self.busy_timeout_s) from exc

    # -- reading
    def dose_reports(self, *, study_uid: str | None = None) -> list[DoseReportRow]:
        """Dose report rows, optionally of one study, in arrival order."""
        return self._select("dose_reports", _DOSE_COLUMNS, DoseReportRow, study_uid=study_uid)

    def dose_acquisitions(self, sop_instance_uid: str) -> list[dict[str, Any]]:
        """The acquisitions of one stored dose report, in report order."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {', '.join('a.' + c for c in _ACQUISITION_COLUMNS)} FROM dose_acquisitions a "
                "JOIN dose_reports r ON r.id = a.report_id WHERE r.sop_instance_uid = ? ORDER BY a.number",
                (sop_instance_uid,)).fetchall()
        return [dict(zip(_ACQUISITION_COLUMNS, row)) for row in rows]

    def acknowledge(self, ack: AlarmAck) -> None:
        """Store an alarm acknowledgement (its ``acknowledged_at`` defaults to now)."""
        row = asdict(ack)
        row["acknowledged_at"] = row["acknowledged_at"] or utc_now()
        with self._lock:
            try:
                self._conn.execute(
                    f"INSERT INTO alarm_acks ({', '.join(_ACK_COLUMNS)}) "
                    f"VALUES ({', '.join('?' for _ in _ACK_COLUMNS)})", [row[c] for c in _ACK_COLUMNS])
            except sqlite3.OperationalError as exc:
                raise _write_failure(self.name, exc, self.busy_timeout_s) from exc

    # -- reading
    def acknowledgements(self, *, alarm_key: str | None = None) -> list[AlarmAck]:
        """Alarm acknowledgements, optionally of one alarm, oldest first."""
        return self._select("alarm_acks", _ACK_COLUMNS, AlarmAck, alarm_key=alarm_key)

    def sr_events(self, *, series_uid: str | None = None, event: str | None = None
                  ) -> list[SREvent]:
        """SR events, optionally of one series and/or one kind, oldest first."""
        return self._select("sr_reports", _SR_COLUMNS, SREvent, series_uid=series_uid, event=event)

    def input_seen(self, path: str, size: int, mtime_ns: int) -> bool:
        """Whether this exact file version (path, size, mtime) was already dealt with."""
        row = self._read_one("SELECT size, mtime_ns FROM inputs WHERE path = ?", (path,))
        return row is not None and row[0] == size and row[1] == mtime_ns

    def has_sop(self, sop_instance_uid: str) -> bool:
        """Whether the object is already logged as scored or refused (errors may be retried)."""
        row = self._read_one(
            "SELECT 1 FROM slices WHERE sop_instance_uid = ? AND status != 'error' LIMIT 1",
            (sop_instance_uid,))
        return row is not None

    def _select(self, table: str, columns: Sequence[str], record, **equal: str | None) -> list:
        """Rows of ``table`` whose columns equal the given values (None: any), as ``record``s, by id."""
        wanted = {column: value for column, value in equal.items() if value is not None}
        where = " WHERE " + " AND ".join(f"{column} = ?" for column in wanted) if wanted else ""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {', '.join(columns)} FROM {table}{where} ORDER BY id", list(wanted.values())
            ).fetchall()
        return [record(**dict(zip(columns, row))) for row in rows]

    def _read_one(self, sql: str, params: tuple) -> tuple | None:
        # The write lock of another process can block reads too (e.g. BEGIN EXCLUSIVE);
        # say so as a QALogError, like a failed write.
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchone()
            except sqlite3.OperationalError as exc:
                raise _write_failure(self.name, exc, self.busy_timeout_s) from exc

    def sop_status(self, sop_instance_uid: str) -> str | None:
        """``ok`` or ``refused`` when the object is logged as such, ``error`` or None otherwise."""
        with self._lock:
            try:
                rows = self._conn.execute(
                    "SELECT DISTINCT status FROM slices WHERE sop_instance_uid = ?",
                    (sop_instance_uid,)).fetchall()
            except sqlite3.OperationalError as exc:
                raise _write_failure(self.name, exc, self.busy_timeout_s) from exc
        found = {row[0] for row in rows}
        for status in ("ok", "refused", "error"):
            if status in found:
                return status
        return None

    def slices(self, *, series_uid: str | None = None, status: str | None = None
               ) -> list[SliceRecord]:
        """Slice rows, optionally of one series and/or one status, in insertion order."""
        return self._select("slices", _SLICE_COLUMNS, SliceRecord, series_uid=series_uid, status=status)

    def series(self, *, since: str | None = None, until: str | None = None,
               station: str | None = None, protocol: str | None = None,
               kernel: str | None = None) -> list[SeriesRow]:
        """Series summaries ordered by acquisition time (then first scoring time).

        ``since``/``until`` are ISO dates or datetimes compared with the
        acquisition time (``until`` is exclusive); ``station``, ``protocol`` and
        ``kernel`` keep only series with exactly that value (indexed).
        """
        clauses, params = [], []
        for column, value in (("station_name", station), ("protocol_name", protocol),
                              ("kernel", kernel)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        time_expr = "coalesce(acquisition_datetime, first_scored_at)"
        if since:
            clauses.append(f"{time_expr} >= ?")
            params.append(since)
        if until:
            clauses.append(f"{time_expr} < ?")
            params.append(until)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {', '.join(_SERIES_COLUMNS)} FROM series{where} "
                f"ORDER BY {time_expr}, first_scored_at, series_uid", params).fetchall()
        return [SeriesRow(*row) for row in rows]  # columns are selected in field order

    def counts(self) -> dict[str, int]:
        """Number of slice rows per status."""
        with self._lock:
            rows = self._conn.execute("SELECT status, count(*) FROM slices GROUP BY status")
            return {status: int(n) for status, n in rows}

    def execute(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        """Run a read query (for tests and ad-hoc inspection)."""
        with self._lock:
            return self._conn.execute(sql, list(params)).fetchall()
