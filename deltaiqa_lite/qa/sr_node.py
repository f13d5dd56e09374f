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
attributes the SR must carry (as the spool keeps whole images): protect the
folder like the spool. An SR that cannot be built is logged (``refused`` or
``error`` with the reason) and scoring goes on.
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
from deltaiqa_lite.qa.outbox import Outbox, private_folder

#: Attributes kept from a source header for the SR's patient, study and series identity.
IDENTITY_KEYWORDS = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "PatientAge", "PatientWeight", "PatientSize", "StudyInstanceUID", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription",
    "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID", "Modality",
)


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
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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
            try:
                if not identity.exists():
                    self._save_identity(outcome.path, identity)
                marker = self.state / f"{series}.pending"
                marker.touch()
                os.utime(marker)  # touch() keeps an existing file's mtime on some filesystems
            except OSError as error:
                print(f"deltaiqa-lite: SR state of series {series} not saved: {error}",
                      file=sys.stderr, flush=True)

    @staticmethod
    def _save_identity(path: str, target: Path) -> None:
        import pydicom
        from pydicom.dataset import Dataset, FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian

        from deltaiqa_lite.output.sr import UTF8_CHARACTER_SET

        try:
            source = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - an unreadable file: a later one of the series may do
            return
        if "SOPClassUID" not in source or "SOPInstanceUID" not in source:
            return
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
        partial = target.with_name(f".{target.name}.part")
        keep.save_as(partial, enforce_file_format=True)
        os.replace(partial, target)

    # -- the SR thread
    def due_series(self, now: float | None = None) -> list[tuple[str, float]]:
        """(series UID, marker mtime) of series idle for ``series_idle_s`` or more."""
        now = time.time() if now is None else now
        due = []
        for marker in sorted(self.state.glob("*.pending")):
            try:
                mtime = marker.stat().st_mtime
            except OSError:
                continue
            if now - mtime >= self.series_idle_s:
                due.append((marker.stem, mtime))
        return due

    def report(self, series_uid: str) -> str | None:
        """Build the SR of one series from the QA log and queue it; return its SOP UID or None."""
        import pydicom

        from deltaiqa_lite.output.sr import SRRefused, build_sr

        records = self.log.slices(series_uid=series_uid)
        identity_path = self.state / f"{series_uid}.dcm"
        try:
            identity = pydicom.dcmread(identity_path) if identity_path.exists() else None
            sop_classes = {r.sop_instance_uid: r.sop_class_uid for r in records
                           if r.sop_instance_uid and r.sop_class_uid}
            sr = build_sr(logged_slices(records), identity, self.model, sop_classes=sop_classes,
                          series_uid=series_uid)
            self.outbox.enqueue(sr, series_uid)
        except SRRefused as error:
            self._event(series_uid, "refused", str(error))
            return None
        except Exception as error:  # noqa: BLE001 - an SR problem must not stop the node
            self._event(series_uid, "error", f"SR not built or not written: "
                                             f"{type(error).__name__}: {error}")
            return None
        sop = str(sr.SOPInstanceUID)
        self.log.record_sr(SREvent(series_uid=series_uid, event="queued", sr_sop_instance_uid=sop,
                                   destination=str(self.outbox.destination),
                                   content_datetime=f"{sr.ContentDate}{sr.ContentTime}"))
        return sop

    def _event(self, series_uid: str, event: str, reason: str) -> None:
        self.log.record_sr(SREvent(series_uid=series_uid, event=event, reason=reason,
                                   destination=str(self.outbox.destination)))
        print(f"deltaiqa-lite: SR of series {series_uid} {event}: {reason}", file=sys.stderr,
              flush=True)

    def run_once(self) -> None:
        """One pass: report complete series, then send what is due."""
        for series_uid, mtime in self.due_series():
            self.report(series_uid)
            marker = self.state / f"{series_uid}.pending"
            with self._lock:
                try:
                    if marker.stat().st_mtime == mtime:  # no late image while building
                        marker.unlink()
                except OSError:
                    pass
        self.outbox.send_due()

    def flush(self) -> None:
        """Report every waiting series now (no idle wait) and try to send once (``watch --once``)."""
        for marker in sorted(self.state.glob("*.pending")):
            self.report(marker.stem)
            marker.unlink(missing_ok=True)
        self.outbox.send_due()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.run_once()
            except Exception as error:  # noqa: BLE001 - keep reporting after a bug in one pass
                print(f"deltaiqa-lite: SR pass failed: {type(error).__name__}: {error}",
                      file=sys.stderr, flush=True)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="deltaiqa-sr", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; waiting series and SRs stay on disk for the next start."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
