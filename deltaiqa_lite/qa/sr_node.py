"""SRs of the QA node: when a series is complete, build its SR and send it (serve, watch).

A series counts as complete when no image of it has been logged for
``--series-idle`` seconds. How it travels::

    ingest (serve/watch worker)          SR thread (every poll_s)
    ---------------------------          ------------------------
    outcome of a file of series S  ->    state/S.dcm: source identity (once, no pixels)
                                         state/S.pending touched (mtime = last image)
                                         S.pending older than series_idle?
                                           build the SR from the QA log rows of S
                                           put it in the outbox, log 'queued'
                                           remove S.pending (unless touched meanwhile)
                                         send what the outbox holds (retry, backoff)

The state folder survives restarts: a series whose images arrived before a
crash is reported after the restart. A late image of a reported series
touches S.pending again and the series gets an updated SR (same SR identity,
new content date/time). The identity file keeps the patient and study
attributes the SR must carry (as the spool keeps whole images): it is private
(0600, in a 0700 folder) and deleted once the SR is queued. An SR that cannot
be built is logged (``refused`` or ``error`` with the reason) and scoring goes on.

A full disk loses nothing: state that cannot be written (identity, marker) is
kept in memory and written on a later pass; an SR that cannot be written to the
outbox keeps its series pending and is built again after a wait (doubling up to
a minute), so it goes out once space returns. Idle times of series seen by this
process run on the monotonic clock; markers found at start use their mtime.
Stopping sets a flag checked between series and between SRs and aborts the
send in flight, so ``stop`` returns within seconds.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from deltaiqa_lite.qa.header import is_valid_uid
from deltaiqa_lite.qa.log import QALog, SliceRecord, SREvent
from deltaiqa_lite.qa.outbox import Outbox, atomic_write, private_folder, remove_stale_parts

#: Attributes kept from a source header for the SR's patient, study and series identity.
IDENTITY_KEYWORDS = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "PatientAge", "PatientWeight", "PatientSize", "StudyInstanceUID", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription",
    "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID", "Modality",
)
#: Longest wait of :meth:`SeriesReporter.stop` for the SR thread (seconds).
STOP_BUDGET_S = 5.0


@dataclass
class LoggedSlice:
    """A QA log row in the shape :func:`deltaiqa_lite.output.sr.build_sr` reads (a SliceResult's)."""

    path: str
    sop_instance_uid: str | None
    series_uid: str | None
    frame: int | None
    score: float | None
    likert: int | None
    status: str
    error: str | None
    extra: dict = field(default_factory=dict)

    def __getattr__(self, name: str):
        # Physics fields, when the log carries them (getattr(record, name, None) in sr.py).
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(name)


def logged_slices(records: list[SliceRecord]) -> list[LoggedSlice]:
    """QA log rows of one series as SR inputs (refused and failed rows are 'not scored')."""
    from deltaiqa_lite.output.sr import PHYSICS_FIELDS

    out = []
    for record in records:
        extra = {name: getattr(record, name) for name in (*PHYSICS_FIELDS, "flags", "physics_note")
                 if getattr(record, name, None) is not None}
        out.append(LoggedSlice(
            path=record.file_name or record.sop_instance_uid or "", frame=record.frame,
            sop_instance_uid=record.sop_instance_uid, series_uid=record.series_uid,
            score=record.score, likert=record.likert,
            status="ok" if record.status == "ok" else "error",
            error=None if record.status == "ok" else f"{record.status}: {record.reason}",
            extra=extra))
    return out


class SeriesReporter:
    """Series-complete detection, SR building and the outbox, on one background thread.

    Parameters
    ----------
    log : QALog
    model : deltaiqa_lite.output.sr.SRModel
    outbox : Outbox
    state_dir : path
        Per-series identity and pending markers (must survive restarts).
    series_idle_s : float
        A series is complete after this long without a new image.
    poll_s : float
        Seconds between passes.
    """

    def __init__(self, log: QALog, model, outbox: Outbox, state_dir: str | os.PathLike, *,
                 series_idle_s: float = 30.0, poll_s: float = 1.0) -> None:
        self.log = log
        self.model = model
        self.outbox = outbox
        self.state = Path(state_dir)
        private_folder(self.state)
        self.series_idle_s = float(series_idle_s)
        self.poll_s = float(poll_s)
        remove_stale_parts(self.state)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Series noted by this process: last image on the monotonic clock.
        self._touched: dict[str, float] = {}
        # Series whose identity or marker could not be written (disk full): kept here.
        self._unsaved: dict[str, object] = {}
        # Series whose SR could not be written: (failures, monotonic time of next build).
        self._write_retry: dict[str, tuple[int, float]] = {}

    # -- called by the ingest side (serve worker, watch loop)
    def note(self, outcome) -> None:
        """Remember that a file of a series was logged (call while the file still exists)."""
        series = getattr(outcome, "series_uid", None)
        if not series or outcome.status not in ("scored", "refused", "error"):
            return
        if not is_valid_uid(series):  # it becomes a file name
            return
        identity = self.state / f"{series}.dcm"
        with self._lock:
            self._touched[series] = time.monotonic()
            kept = self._unsaved.get(series)
            if kept is None and not identity.exists():
                kept = self.identity_dataset(outcome.path)  # read now: the file may go
            self._persist(series, kept)

    def _persist(self, series: str, identity_ds) -> bool:
        """Write the identity (if given and missing) and touch the marker; under ``_lock``."""
        identity = self.state / f"{series}.dcm"
        try:
            if identity_ds is not None and not identity.exists():
                self._write_identity(identity_ds, identity)
            marker = self.state / f"{series}.pending"
            marker.touch(mode=0o600)
            os.utime(marker)  # touch() keeps an existing file's mtime on some filesystems
        except OSError as error:
            if series not in self._unsaved:
                print(f"deltaiqa-lite: SR state of series {series} not saved "
                      f"({error.strerror or error}); kept in memory and written again later",
                      file=sys.stderr, flush=True)
            self._unsaved[series] = identity_ds
            return False
        self._unsaved.pop(series, None)
        return True

    @staticmethod
    def identity_dataset(path: str):
        """The identity attributes of a source file (no pixels), or None if unreadable."""
        import pydicom
        from pydicom.dataset import Dataset, FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian

        from deltaiqa_lite.output.sr import UTF8_CHARACTER_SET

        try:
            source = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - an unreadable file: a later one of the series may do
            return None
        if "SOPClassUID" not in source or "SOPInstanceUID" not in source:
            return None
        keep = Dataset()
        # Names were decoded with the source's character set when read; kept in UTF-8,
        # which holds any of them (without the element they would be written as ASCII).
        keep.SpecificCharacterSet = UTF8_CHARACTER_SET
        for keyword in IDENTITY_KEYWORDS:
            if keyword in source:
                setattr(keep, keyword, source[keyword].value)
        keep.file_meta = FileMetaDataset()
        keep.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        keep.file_meta.MediaStorageSOPClassUID = source.SOPClassUID
        keep.file_meta.MediaStorageSOPInstanceUID = source.SOPInstanceUID
        return keep

    @staticmethod
    def _write_identity(keep, target: Path) -> None:
        from pydicom.filebase import DicomBytesIO

        buffer = DicomBytesIO()
        keep.save_as(buffer, enforce_file_format=True)
        atomic_write(target, buffer.getvalue())  # 0600, no .part left on failure

    @classmethod
    def _save_identity(cls, path: str, target: Path) -> None:
        keep = cls.identity_dataset(path)
        if keep is not None:
            cls._write_identity(keep, target)

    # -- the SR thread
    def _token(self, series: str) -> float | None:
        """When the series last changed: monotonic for series seen here, else marker mtime."""
        if series in self._touched:
            return self._touched[series]
        try:
            return (self.state / f"{series}.pending").stat().st_mtime
        except OSError:
            return None

    def due_series(self, now: float | None = None) -> list[tuple[str, float]]:
        """(series UID, change token) of series idle for ``series_idle_s`` or more.

        The token is the monotonic time of the last image for series noted by this
        process, else the marker's mtime (a marker left by an earlier process).
        """
        wall = time.time() if now is None else now
        mono = time.monotonic()
        with self._lock:
            names = {marker.stem for marker in self.state.glob("*.pending")} | set(self._unsaved)
            due = []
            for series in sorted(names):
                if series in self._touched:
                    token = self._touched[series]
                    idle = mono - token
                else:
                    token = self._token(series)
                    if token is None:
                        continue
                    idle = wall - token
                retry = self._write_retry.get(series)
                if idle >= self.series_idle_s and (retry is None or mono >= retry[1]):
                    due.append((series, token))
        return due

    def report(self, series_uid: str) -> str | None:
        """Build the SR of one series from the QA log and queue it; return its SOP UID or None."""
        return self._report(series_uid)[1]

    def _report(self, series_uid: str) -> tuple[str, str | None]:
        """("queued", SOP UID), ("final", None) when refused or failed for good, or
        ("retry", None) when the SR could not be written here (disk full: built again later)."""
        import pydicom

        from deltaiqa_lite.output.sr import SRRefused, build_sr

        records = self.log.slices(series_uid=series_uid)
        identity_path = self.state / f"{series_uid}.dcm"
        try:
            with self._lock:
                kept = self._unsaved.get(series_uid)
            identity = kept if kept is not None else (
                pydicom.dcmread(identity_path) if identity_path.exists() else None)
            sop_classes = {r.sop_instance_uid: r.sop_class_uid for r in records
                           if r.sop_instance_uid and r.sop_class_uid}
            sr = build_sr(logged_slices(records), identity, self.model, sop_classes=sop_classes,
                          series_uid=series_uid)
        except SRRefused as error:
            self._event(series_uid, "refused", str(error))
            return "final", None
        except Exception as error:  # noqa: BLE001 - an SR problem must not stop the node
            self._event(series_uid, "error", f"SR not built: {type(error).__name__}: {error}")
            return "final", None
        try:
            self.outbox.enqueue(sr, series_uid)
        except OSError as error:
            # Our own disk: never a reason to drop the SR. The series stays pending.
            failures = self._write_retry.get(series_uid, (0, 0.0))[0] + 1
            wait = min(60.0, 2.0 ** failures)
            self._write_retry[series_uid] = (failures, time.monotonic() + wait)
            if failures == 1:
                self._event(series_uid, "error", f"SR not written to the outbox "
                                                 f"({error.strerror or error}); built again "
                                                 "when it can be written")
            return "retry", None
        self._write_retry.pop(series_uid, None)
        sop = str(sr.SOPInstanceUID)
        self._record(SREvent(series_uid=series_uid, event="queued", sr_sop_instance_uid=sop,
                             destination=str(self.outbox.destination),
                             content_datetime=f"{sr.ContentDate}{sr.ContentTime}"))
        return "queued", sop

    def _record(self, event: SREvent) -> None:
        try:
            self.log.record_sr(event)
        except Exception as error:  # noqa: BLE001 - a full disk must not stop the SR thread
            print(f"deltaiqa-lite: SR event {event.event} of series {event.series_uid} not "
                  f"logged: {error}", file=sys.stderr, flush=True)

    def _event(self, series_uid: str, event: str, reason: str) -> None:
        self._record(SREvent(series_uid=series_uid, event=event, reason=reason,
                             destination=str(self.outbox.destination)))
        print(f"deltaiqa-lite: SR of series {series_uid} {event}: {reason}", file=sys.stderr,
              flush=True)

    def _done(self, series_uid: str, token: float | None) -> None:
        """The series is reported: drop its marker and identity, unless an image came since."""
        with self._lock:
            if token is not None and self._token(series_uid) != token:
                return  # a late image while building: reported again later
            self._touched.pop(series_uid, None)
            self._unsaved.pop(series_uid, None)
            for name in (f"{series_uid}.pending", f"{series_uid}.dcm"):
                try:
                    (self.state / name).unlink(missing_ok=True)
                except OSError:
                    pass

    def _retry_unsaved(self) -> None:
        with self._lock:
            for series, identity in list(self._unsaved.items()):
                self._persist(series, identity)

    def run_once(self, stop: threading.Event | None = None) -> None:
        """One pass: write state kept in memory, report complete series, send what is due."""
        self._retry_unsaved()
        for series_uid, token in self.due_series():
            if stop is not None and stop.is_set():
                return
            status, _ = self._report(series_uid)
            if status != "retry":
                self._done(series_uid, token)
        self.outbox.send_due(stop)

    def flush(self) -> None:
        """Report every waiting series now (no idle wait) and try to send once (``watch --once``)."""
        self._retry_unsaved()
        with self._lock:
            names = sorted({m.stem for m in self.state.glob("*.pending")} | set(self._unsaved))
        for series_uid in names:
            status, _ = self._report(series_uid)
            if status != "retry":
                self._done(series_uid, None)
        self.outbox.send_due()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.run_once(self._stop)
            except Exception as error:  # noqa: BLE001 - keep reporting after a bug in one pass
                print(f"deltaiqa-lite: SR pass failed: {type(error).__name__}: {error}",
                      file=sys.stderr, flush=True)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="deltaiqa-sr", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread within seconds; waiting series and SRs stay on disk for the next
        start (the send in flight is aborted: that SR is sent again later)."""
        self._stop.set()
        self.outbox.abort()
        if self._thread is not None:
            # An association being set up cannot be aborted before the peer answers; the
            # thread (a daemon) is not waited for past STOP_BUDGET_S: what it was sending
            # is still in the outbox and goes out after the next start.
            self._thread.join(STOP_BUDGET_S)
            if self._thread.is_alive():
                print(f"deltaiqa-lite: SR sending still waiting for {self.outbox.destination} "
                      f"after {STOP_BUDGET_S:g} s; left to the next start", file=sys.stderr,
                      flush=True)
            self._thread = None
