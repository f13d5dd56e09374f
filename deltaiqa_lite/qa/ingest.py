"""Score a batch of received files and record every one of them in the QA log.

Shared by ``watch`` and ``serve``. Per file: read the header (no pixels),
refuse what is not CT, skip what the log already holds (restart safety),
score the rest with one ``Scorer.score_paths`` call (batched inference), and
write all rows of the batch in one transaction. Every input ends as exactly
one outcome: scored, refused, error or duplicate, or dose for a CT Radiation
Dose SR (X-Ray Radiation Dose SR, or an Enhanced or Comprehensive SR rooted at
113701), whose dose goes to the ``dose_reports`` table keyed by study.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Protocol

from deltaiqa_lite.errors import InputError, RefusedInput
from deltaiqa_lite.qa.header import CT_SOP_CLASSES, QAHeader, read_qa_header, refusal_reason
from deltaiqa_lite.physics import FLAG_SEPARATOR
from deltaiqa_lite.qa.log import DoseReportRow, QALog, SliceRecord
from deltaiqa_lite.read.policy import header_refusal_kind
from deltaiqa_lite.read.rdsr import RDSR_SOP_CLASSES, read_rdsr

SCORED, REFUSED, ERROR, DUPLICATE = "scored", "refused", "error", "duplicate"
DOSE = "dose"  # a CT Radiation Dose SR, stored in the dose_reports table
# At most this many rows for one refused multi-frame object (one per frame, as images are counted).
MAX_FRAMES_COUNTED = 10000


class ScorerLike(Protocol):
    """What the QA pipeline needs of :class:`deltaiqa_lite.Scorer` (contract 4)."""

    def score_paths(self, paths: Sequence[str]) -> list: ...


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one input file."""

    path: str
    status: str  # scored | refused | error | duplicate | dose
    reason: str | None = None
    sop_instance_uid: str | None = None
    series_uid: str | None = None
    n_slices: int = 0
    score: float | None = None  # mean over the file's slices


def _strip_path(message: str, path: str) -> str:
    # InputError messages lead with the full path; the log keeps the file name in
    # its own column, so the reason is stored without the (possibly long) path.
    prefix = f"{path}: "
    return message.removeprefix(prefix)


def header_record(header: QAHeader, *, source: str, status: str, file_name: str | None,
                  reason: str | None = None, refused_kind: str | None = None) -> SliceRecord:
    """A slice record carrying only header fields (refusals, errors)."""
    fields = header.as_dict()
    fields.pop("number_of_frames")
    return SliceRecord(source=source, status=status, file_name=file_name, reason=reason,
                       refused_kind=refused_kind, **fields)


def header_refused_kind(header: QAHeader) -> str:
    """The kind the log counts for an object that :func:`refusal_reason` refused."""
    modality = (header.modality or "").upper()
    if (header.sop_class_uid and header.sop_class_uid not in CT_SOP_CLASSES) or modality not in ("", "CT"):
        return header_refusal_kind(header.sop_class_uid, header.modality)
    return "invalid header"


class Ingestor:
    """Score files and record them.

    Parameters
    ----------
    scorer : Scorer
        A ready :class:`deltaiqa_lite.Scorer` (its session is reused for every batch).
    log : QALog
    source : str
        Written to the ``source`` column (``watch``, ``serve``).
    patient_id_salt : bytes, optional
        Site secret for the optional Patient ID hash.
    """

    def __init__(self, scorer: ScorerLike, log: QALog, *, source: str,
                 patient_id_salt: bytes | None = None) -> None:
        self.scorer = scorer
        self.log = log
        self.source = source
        self.patient_id_salt = patient_id_salt

    def read_header(self, path: str) -> QAHeader | InputError:
        """The QA header of a file, or the InputError saying why it cannot be read."""
        try:
            return read_qa_header(path, patient_id_salt=self.patient_id_salt)
        except InputError as error:
            return error

    def _dose_report(self, path: str, name: str, header: QAHeader) -> tuple[FileOutcome, SliceRecord | None]:
        """Store a CT Radiation Dose SR in the log; a refusal or error row for anything else."""
        try:
            report = read_rdsr(path)
        except InputError as error:
            refused = isinstance(error, RefusedInput)
            status = REFUSED if refused else ERROR
            record = header_record(header, source=self.source, status=status, file_name=name,
                                   reason=error.reason, refused_kind=header_refused_kind(header) if refused else None)
            return FileOutcome(path, status, error.reason, header.sop_instance_uid, header.series_uid), record
        problems = "; ".join(report.problems) or None
        row = DoseReportRow(source=self.source, file_name=name, study_uid=report.study_instance_uid,
                            sop_instance_uid=report.sop_instance_uid, station_name=header.station_name,
                            total_dlp_mgy_cm=report.total_dlp_mgy_cm, n_acquisitions=len(report.acquisitions),
                            problems=problems)
        if not self.log.record_dose_report(row, [asdict(a) for a in report.acquisitions]):
            return FileOutcome(path, DUPLICATE, "SOP Instance UID already in the QA log", header.sop_instance_uid,
                               header.series_uid), None
        return FileOutcome(path, DOSE, problems, header.sop_instance_uid, header.series_uid), None

    def process(self, paths: Sequence[str], *, names: dict[str, str | None] | None = None,
                headers: dict[str, QAHeader | InputError] | None = None,
                defer_errors: Collection[str] = ()) -> list[FileOutcome]:
        """Score and record ``paths``; one outcome per path, in order.

        Parameters
        ----------
        paths : sequence of str
            Files to ingest.
        names : dict, optional
            Name to log for each path (e.g. relative to the watched folder);
            default: the base name.
        headers : dict, optional
            Headers already read by the caller, to avoid reading twice.
        defer_errors : collection of str, optional
            Paths whose ``error`` outcome is returned but not logged yet (``watch``
            retries a file that may still be being written before calling it broken).
        """
        names = names or {}
        headers = dict(headers or {})
        outcomes: dict[str, FileOutcome] = {}
        records: list[SliceRecord] = []
        to_score: list[str] = []
        seen_in_batch: set[str] = set()
        for path in paths:
            name = names.get(path, os.path.basename(path))
            header = headers.get(path) or self.read_header(path)
            headers[path] = header
            if isinstance(header, InputError):
                reason = header.reason
                if path not in defer_errors:
                    records.append(SliceRecord(source=self.source, status="error",
                                               file_name=name, reason=reason))
                outcomes[path] = FileOutcome(path, ERROR, reason)
                continue
            sop = header.sop_instance_uid
            if header.sop_class_uid in RDSR_SOP_CLASSES:
                outcome, record = self._dose_report(path, name, header)
                outcomes[path] = outcome
                if record is not None:
                    records.append(record)
                continue
            if sop and (sop in seen_in_batch or self.log.has_sop(sop)):
                outcomes[path] = FileOutcome(path, DUPLICATE, "SOP Instance UID already in the QA log",
                                             sop, header.series_uid)
                continue
            reason = refusal_reason(header)
            if reason is not None:
                records.append(header_record(header, source=self.source, status="refused",
                                             file_name=name, reason=reason,
                                             refused_kind=header_refused_kind(header)))
                outcomes[path] = FileOutcome(path, REFUSED, reason, sop, header.series_uid)
                if sop:
                    seen_in_batch.add(sop)
                continue
            seen_in_batch.add(sop)
            to_score.append(path)

        if to_score:
            by_path: dict[str, list] = {}
            # The scorer normalises paths the way pathlib does; key on the same form.
            for result in self.scorer.score_paths(to_score):
                by_path.setdefault(str(Path(result.path)), []).append(result)
            for path in to_score:
                header = headers[path]
                assert isinstance(header, QAHeader)
                name = names.get(path, os.path.basename(path))
                results = by_path.get(str(Path(path)), [])
                failed = [r for r in results if r.status != "ok"]
                if failed or not results:
                    reason = (_strip_path(failed[0].error or "scoring failed", path) if failed
                              else "no slices were scored")
                    # The reader's refusals (selection policy: localizer, MIP, maps ...; scout or
                    # too small from the pixels) are refusals in the log too, counted per kind;
                    # everything else is an error.
                    status = REFUSED if failed and all(r.refused for r in failed) else ERROR
                    kind = failed[0].refused_kind if status == REFUSED else None
                    if status == REFUSED or path not in defer_errors:
                        record = header_record(header, source=self.source,
                                               status="refused" if status == REFUSED else "error",
                                               file_name=name, reason=reason, refused_kind=kind)
                        # A refused enhanced object counts as the images (frames) it holds; the
                        # reader has checked the frame count against the bytes present.
                        frames = min(header.number_of_frames, MAX_FRAMES_COUNTED) if status == REFUSED else 1
                        records.extend(replace(record, frame=frame) for frame in range(frames))
                    outcomes[path] = FileOutcome(path, status, reason, header.sop_instance_uid,
                                                 header.series_uid)
                    continue
                base = header.as_dict()
                base.pop("number_of_frames")
                for result in results:
                    probabilities = result.probabilities or (None,) * 5
                    records.append(SliceRecord(
                        source=self.source, status="ok", file_name=name, **(base | {
                            "frame": int(result.frame or 0)}),
                        score=result.score, likert=result.likert, label=result.label,
                        p0=probabilities[0], p1=probabilities[1], p2=probabilities[2],
                        p3=probabilities[3], p4=probabilities[4], model=result.model,
                        precision=result.precision, provider=result.provider,
                        policy_override=result.policy_override,
                        slice_location=result.slice_location, noise_hu=result.noise_hu,
                        water_equivalent_diameter_mm=result.water_equivalent_diameter_mm,
                        ssde_mgy=result.ssde_mgy, noise_score=result.noise_score,
                        flags=FLAG_SEPARATOR.join(result.flags), physics_note=result.physics_note))
                scores = [r.score for r in results]
                outcomes[path] = FileOutcome(path, SCORED, None, header.sop_instance_uid,
                                             header.series_uid, len(results),
                                             sum(scores) / len(scores))
        self.log.record(records)
        return [outcomes[p] for p in paths]
