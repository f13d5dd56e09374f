"""DICOM Structured Reports of the scores: TID 1500 Measurement Report in a Comprehensive 3D SR.

One SR per scored series (Series Instance UID). Built with highdicom (the
``sr`` extra: ``pip install 'deltaiqa-lite[sr]'``), imported only when an SR
is made, so the base install keeps its four dependencies.

Content (docs/sr.md has the full table of items and codes)::

    TID 1500 Imaging Measurement Report
      observer context: device deltaiqa-lite (manufacturer, model, version)
      procedure: CT, image quality analysis
      TID 1501 one group per slice, referencing its source image (frame for
               multi-frame): Delta-IQA score, Likert class (coded), the physics
               measurements where the result has them; or "not scored" and why
      TID 1501 one series group: mean, median, minimum, 10th percentile of the
               score, slices scored and not scored

Identity: the SR's Series and SOP Instance UIDs are derived from the source
Series Instance UID and the sha256 of the model file (:func:`sr_uids`), so the
same series scored again with the same model gives the same SR identity and a
PACS replaces the earlier one instead of keeping two. Patient and study
attributes are copied from the source images; an SR is refused when the
source has no patient or study identity (never an SR with invented identity).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from deltaiqa_lite._version import __version__
from deltaiqa_lite.errors import DeltaIQAError
from deltaiqa_lite.physics import FLAG_SEPARATOR
from deltaiqa_lite.read.names import display_text

__all__ = ["SRError", "SRRefused", "SRModel", "SROutcome", "PRIVATE_SCHEME", "PRIVATE_CODES",
           "sr_uids", "model_identity", "build_sr", "write_sr", "write_series_srs",
           "read_sr_values", "PHYSICS_FIELDS"]

#: Private coding scheme designator (PS3.16 section 8.2: "99" prefix for private schemes).
PRIVATE_SCHEME = "99DIQA"
PRIVATE_SCHEME_NAME = "deltaiqa-lite codes"
MANUFACTURER = "deltaiqa-lite"
SR_SERIES_NUMBER = 9900  # high, so viewers list the SR after the image series it describes
SR_SERIES_DESCRIPTION = "deltaiqa-lite image quality SR"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"

#: Private codes: value -> meaning. Documented in docs/sr.md.
PRIVATE_CODES: dict[str, str] = {
    "DIQA001": "Delta-IQA quality score",
    "DIQA002": "Delta-IQA Likert class",
    "DIQA003": "Scoring status",
    "DIQA004": "Not scored",
    "DIQA005": "Reason not scored",
    "DIQA006": "Number of slices scored",
    "DIQA007": "Number of slices not scored",
    "DIQA010": "Global noise level",
    "DIQA011": "Physics noise score",
    "DIQA012": "Quality flag",
    "DIQA013": "Physics note",
    "DIQA100": "Likert 0 bad: desired features not shown",
    "DIQA101": "Likert 1 poor: diagnostic interpretation impossible",
    "DIQA102": "Likert 2 fair: limited clinical interpretation",
    "DIQA103": "Likert 3 good: suitable for diagnostic interpretation",
    "DIQA104": "Likert 4 excellent: anatomy evident",
}

#: Optional per-slice physics fields (added to SliceResult by the physics work):
#: attribute -> (code scheme, code value, meaning, UCUM unit, unit meaning).
PHYSICS_FIELDS: dict[str, tuple[str, str, str, str, str]] = {
    "noise_hu": (PRIVATE_SCHEME, "DIQA010", PRIVATE_CODES["DIQA010"], "[hnsf'U]", "Hounsfield unit"),
    "water_equivalent_diameter_mm": ("DCM", "113980", "Water Equivalent Diameter", "mm", "mm"),
    "ctdivol_mgy": ("DCM", "113830", "Mean CTDIvol", "mGy", "mGy"),
    "ssde_mgy": ("DCM", "113930", "Size Specific Dose Estimate", "mGy", "mGy"),
    "noise_score": (PRIVATE_SCHEME, "DIQA011", PRIVATE_CODES["DIQA011"], "{score}", "score"),
}


class SRError(DeltaIQAError):
    """An SR cannot be built, written or sent (the message says why)."""


class SRRefused(SRError):
    """The source lacks what an SR needs (patient/study identity, a series UID)."""


@dataclass(frozen=True)
class SRModel:
    """What the SR says about the model that scored.

    ``sha256`` is the sha256 of the ONNX file itself (for the shipped models
    the value listed in models/model-card.json); it is part of the SR identity.
    """

    name: str
    version: str
    precision: str
    sha256: str
    source_weights_sha256: str | None = None
    class_labels: tuple[str, ...] = ("bad", "poor", "fair", "good", "excellent")

    @property
    def algorithm_version(self) -> str:
        return f"{self.version} {self.precision}"


@dataclass(frozen=True)
class SROutcome:
    """What happened to the SR of one series: written (path), or refused/failed (reason)."""

    series_uid: str | None
    status: str  # written | refused | error | skipped (slices of no DICOM series)
    path: str | None = None
    sop_instance_uid: str | None = None
    reason: str | None = None


def _hd():
    try:
        import highdicom
    except ModuleNotFoundError as error:
        if error.name != "highdicom":
            raise
        raise SRError("DICOM SR output needs highdicom: pip install 'deltaiqa-lite[sr]'") from error
    return highdicom


def _uid(*parts: str) -> str:
    # 2.25.<integer of a UUID-sized hash>: PS3.5 B.2 allows UIDs from a 128-bit
    # number under 2.25; the first 16 bytes of a sha256 give at most 39 digits,
    # so the UID stays well under 64 characters.
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()[:16]
    return f"2.25.{int.from_bytes(digest, 'big')}"


def sr_uids(source_series_uid: str, model_sha256: str) -> tuple[str, str]:
    """The SR's (Series Instance UID, SOP Instance UID) for a source series and model.

    ``2.25.<int(sha256("deltaiqa-lite SR series" US source_series_uid US model_sha256)[:16])>``
    (US: the byte 0x1F), likewise with ``"deltaiqa-lite SR instance"`` for the
    SOP Instance UID. Same series and same model file give the same SR identity.
    """
    return (_uid("deltaiqa-lite SR series", source_series_uid, model_sha256),
            _uid("deltaiqa-lite SR instance", source_series_uid, model_sha256))


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_identity(scorer: Any) -> SRModel:
    """The :class:`SRModel` of a :class:`~deltaiqa_lite.Scorer` (hashes its model file)."""
    card = scorer.card
    return SRModel(name=str(card.get("architecture") or card.get("name") or scorer.model_name),
                   version=str(card.get("version", "unknown")), precision=scorer.precision,
                   sha256=file_sha256(scorer.model_path),
                   source_weights_sha256=card.get("source_weights_sha256"),
                   class_labels=tuple(scorer.class_labels))


def _text(ds: Any, keyword: str) -> str:
    value = ds.get(keyword) if ds is not None else None
    return "" if value is None else str(value).strip()


def identity_refusal(identity: Any, name: str) -> str | None:
    """Why ``identity`` (a source header) cannot give an SR its patient/study identity, or None."""
    from pydicom.uid import UID

    if identity is None:
        return f"{name}: no readable source header; an SR needs the source's patient and study"
    study = _text(identity, "StudyInstanceUID")
    if not study or not UID(study).is_valid:
        return (f"{name}: (0020,000D) Study Instance UID {study or 'missing'}; an SR is filed "
                "under the source's study and none is invented")
    if not _text(identity, "PatientID"):
        return (f"{name}: (0010,0020) Patient ID is missing or empty; an SR is filed under the "
                "source's patient and none is invented")
    return None


def _code(value: str, scheme: str, meaning: str):
    return _hd().sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def _private(value: str):
    return _code(value, PRIVATE_SCHEME, PRIVATE_CODES[value])


def _unit(code: str, meaning: str):
    return _code(code, "UCUM", meaning)


_IDENTITY_KEYWORDS = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "PatientAge", "PatientWeight", "PatientSize", "StudyInstanceUID", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription",
)


_TYPE2_KEYWORDS = ("PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                   "ReferringPhysicianName", "StudyID", "AccessionNumber")


def _evidence(identity: Any, series_uid: str, references: Sequence[tuple[str, str]]) -> list:
    """Minimal datasets of the referenced source instances (real UIDs, source identity)."""
    from pydicom.dataset import Dataset

    out = []
    for sop_class, sop_instance in references:
        ds = Dataset()
        for keyword in _IDENTITY_KEYWORDS:
            if keyword in identity:
                setattr(ds, keyword, identity[keyword].value)
        for keyword in _TYPE2_KEYWORDS:
            if keyword not in ds:  # Type 2: present, empty when the source has no value
                setattr(ds, keyword, None)
        ds.SeriesInstanceUID = series_uid
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop_instance
        ds.Modality = "CT"
        out.append(ds)
    return out


def _reason(result: Any) -> str:
    reason = getattr(result, "error", None) or getattr(result, "reason", None) or "not scored"
    path = getattr(result, "path", None)
    if path and reason.startswith(f"{path}: "):
        reason = reason[len(path) + 2:]
    # A file name that is not UTF-8 may be in the message: escaped, as in every output.
    return display_text(" ".join(str(reason).split()))[:1024]  # keep items short


def _ok(result: Any) -> bool:
    return getattr(result, "status", "ok") == "ok" and getattr(result, "score", None) is not None


def _algorithm(model: SRModel):
    hd = _hd()
    parameters = [f"model_sha256={model.sha256}"]
    if model.source_weights_sha256:
        parameters.append(f"source_weights_sha256={model.source_weights_sha256}")
    return hd.sr.AlgorithmIdentification(name=model.name, version=model.algorithm_version,
                                         parameters=parameters, manufacturer=MANUFACTURER)


def _text_item(name, value: str):
    hd = _hd()
    return hd.sr.TextContentItem(name=name, value=value,
                                 relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)


def _flags(flags: Any) -> list[str]:
    # A SliceResult has a list; a QA log row holds the codes joined with FLAG_SEPARATOR.
    if not flags:
        return []
    if isinstance(flags, str):
        return [flag for flag in flags.split(FLAG_SEPARATOR) if flag]
    return [str(flag) for flag in flags]


def _slice_group(result: Any, index: int, sop_class: str | None, model: SRModel, sr_sop: str):
    hd = _hd()
    sop = getattr(result, "sop_instance_uid", None)
    frame = getattr(result, "frame", None)
    sources = None
    if sop and sop_class:
        frames = [int(frame) + 1] if frame is not None and sop_class == ENHANCED_CT_IMAGE_STORAGE \
            else None
        sources = [hd.sr.SourceImageForMeasurementGroup(sop_class, sop, frames)]
    label = f"slice {index + 1}"
    if getattr(result, "instance_number", None) is not None:
        label += f" (instance {result.instance_number})"
    if frame is not None and sop_class == ENHANCED_CT_IMAGE_STORAGE:
        label += f" frame {int(frame) + 1}"
    tracking = hd.sr.TrackingIdentifier(uid=_uid(sr_sop, str(sop), str(frame), str(index)),
                                        identifier=label)
    measurements, evaluations, texts = [], [], []
    if _ok(result):
        measurements.append(hd.sr.Measurement(name=_private("DIQA001"), value=float(result.score),
                                              unit=_unit("{score}", "score")))
        likert = int(result.likert)
        evaluations.append(hd.sr.QualitativeEvaluation(_private("DIQA002"),
                                                       _private(f"DIQA10{likert}")))
        for attribute, (scheme, value, meaning, unit, unit_meaning) in PHYSICS_FIELDS.items():
            number = getattr(result, attribute, None)
            if number is not None and np.isfinite(float(number)):
                measurements.append(hd.sr.Measurement(name=_code(value, scheme, meaning),
                                                      value=float(number),
                                                      unit=_unit(unit, unit_meaning)))
        for flag in _flags(getattr(result, "flags", None)):
            texts.append(_text_item(_private("DIQA012"), str(flag)))
        note = getattr(result, "physics_note", None)
        if note:
            texts.append(_text_item(_private("DIQA013"), str(note)))
    else:
        evaluations.append(hd.sr.QualitativeEvaluation(_private("DIQA003"), _private("DIQA004")))
        texts.append(_text_item(_private("DIQA005"), _reason(result)))
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking, finding_type=_code("111101", "DCM", "Image Quality"),
        algorithm_id=_algorithm(model), measurements=measurements or None,
        qualitative_evaluations=evaluations, source_images=sources)
    if texts:
        group[0].ContentSequence.extend(texts)
    return group


def _series_group(results: Sequence[Any], series_uid: str, model: SRModel, sr_sop: str):
    hd = _hd()
    scores = [float(r.score) for r in results if _ok(r)]
    n_failed = len(results) - len(scores)
    score = _private("DIQA001")
    unit = _unit("{score}", "score")
    measurements = []
    if scores:
        values = np.asarray(scores, dtype=np.float64)
        # Same statistics as deltaiqa_lite.score.summarise_series (JSON output).
        for derivation, value in (
                (_code("373098007", "SCT", "Mean"), float(values.mean())),
                (_code("373099004", "SCT", "Median"), float(np.median(values))),
                (_code("255605001", "SCT", "Minimum"), float(values.min())),
                (_code("371890005", "SCT", "Tenth percentile"), float(np.percentile(values, 10)))):
            measurements.append(hd.sr.Measurement(name=score, value=value, unit=unit,
                                                  derivation=derivation))
    measurements.append(hd.sr.Measurement(name=_private("DIQA006"), value=float(len(scores)),
                                          unit=_unit("1", "no units")))
    measurements.append(hd.sr.Measurement(name=_private("DIQA007"), value=float(n_failed),
                                          unit=_unit("1", "no units")))
    tracking = hd.sr.TrackingIdentifier(uid=_uid(sr_sop, "series"),
                                        identifier=f"series {series_uid}"[:64])
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking, finding_type=_code("130550", "DCM", "Imaging Series Quality"),
        algorithm_id=_algorithm(model), measurements=measurements)


def _order(results: Sequence[Any]) -> list[Any]:
    # Anatomical order when known (slice location), else instance number, else input order.
    def key(item: tuple[int, Any]) -> tuple:
        index, result = item
        location = getattr(result, "slice_location", None)
        number = getattr(result, "instance_number", None)
        return (location is None, location or 0.0, number is None, number or 0,
                getattr(result, "frame", None) or 0, index)
    return [result for _, result in sorted(enumerate(results), key=key)]


def build_sr(results: Sequence[Any], identity: Any, model: SRModel, *,
             sop_classes: Mapping[str, str], series_uid: str | None = None,
             content_datetime: datetime | None = None) -> Any:
    """Build the Comprehensive 3D SR (TID 1500) of one scored series.

    Parameters
    ----------
    results : sequence of SliceResult (or objects with the same attributes)
        The slices of one series, ok and failed. Optional physics attributes
        (:data:`PHYSICS_FIELDS`, ``flags``, ``physics_note``) are reported when
        present and not None.
    identity : pydicom Dataset
        A source header of the series: patient and study attributes are copied from it.
    model : SRModel
    sop_classes : mapping
        SOP Instance UID -> SOP Class UID of the source images (for the references).
    series_uid : str, optional
        The source Series Instance UID (default: the results' own).
    content_datetime : datetime, optional
        Content Date/Time (default: now). The only part that changes between
        two SRs of the same series with the same slices.

    Returns
    -------
    highdicom.sr.Comprehensive3DSR

    Raises
    ------
    SRRefused
        No series UID, no patient/study identity, or no results.
    """
    hd = _hd()
    from pydicom.dataset import Dataset

    uids = {r.series_uid for r in results if getattr(r, "series_uid", None)}
    series_uid = series_uid or (uids.pop() if len(uids) == 1 else None)
    if not series_uid:
        raise SRRefused(f"results of {len(uids)} series given; an SR covers one Series Instance UID")
    if not results:
        raise SRRefused(f"series {series_uid}: no slices to report")
    refusal = identity_refusal(identity, f"series {series_uid}")
    if refusal:
        raise SRRefused(refusal)
    sr_series, sr_sop = sr_uids(series_uid, model.sha256)
    ordered = _order(results)
    references = sorted({(sop_classes[r.sop_instance_uid], r.sop_instance_uid) for r in ordered
                         if getattr(r, "sop_instance_uid", None) in sop_classes})
    groups = [_slice_group(r, i, sop_classes.get(getattr(r, "sop_instance_uid", None) or ""),
                           model, sr_sop) for i, r in enumerate(ordered)]
    groups.append(_series_group(ordered, series_uid, model, sr_sop))
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=_uid("deltaiqa-lite device", model.sha256), name="deltaiqa-lite",
        manufacturer_name=MANUFACTURER, model_name=f"{model.name} {model.precision}"[:64])
    context = hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=_code("121007", "DCM", "Device"), observer_identifying_attributes=device))
    report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=[_code("77477000", "SCT", "Computed Tomography"),
                            _code("133887000", "SCT", "Image quality analysis")],
        imaging_measurements=groups)
    when = content_datetime or datetime.now()
    sr = hd.sr.Comprehensive3DSR(
        evidence=_evidence(identity, series_uid, references), content=report[0],
        series_instance_uid=sr_series, series_number=SR_SERIES_NUMBER, sop_instance_uid=sr_sop,
        instance_number=1, manufacturer=MANUFACTURER, is_complete=True,
        content_date=when.date(), content_time=when.time())
    sr.SeriesDescription = SR_SERIES_DESCRIPTION
    sr.ManufacturerModelName = "deltaiqa-lite"
    sr.SoftwareVersions = __version__
    sr.SeriesDate, sr.SeriesTime = sr.ContentDate, sr.ContentTime
    scheme = Dataset()
    scheme.CodingSchemeDesignator = PRIVATE_SCHEME
    scheme.CodingSchemeName = PRIVATE_SCHEME_NAME
    scheme.CodingSchemeResponsibleOrganization = "deltaiqa-lite project"
    sr.CodingSchemeIdentificationSequence = [scheme]
    _set_character_set(sr, identity)
    return sr


#: Value representations whose text depends on Specific Character Set (PS3.5 6.1.2.3).
_CHARACTER_SET_VRS = {"SH", "LO", "ST", "LT", "UT", "PN", "UC"}
UTF8_CHARACTER_SET = "ISO_IR 192"


def _set_character_set(sr: Any, identity: Any) -> None:
    """Give the SR Specific Character Set (0008,0005) ISO_IR 192 whenever it needs one.

    Names copied from the source were decoded with the source's character set
    (pydicom does that on reading); the SR encodes them again in UTF-8, which holds
    every character of every DICOM character set (ISO 2022 escapes, GB18030,
    Latin-1 ...). Without the element a reader assumes ASCII and the names arrive
    mangled, so a PACS would see one Patient ID with two names. A source without a
    character set and an all-ASCII SR leave the element out, as before.
    """
    source = identity.get("SpecificCharacterSet") if identity is not None else None
    declared = [source] if isinstance(source, str) else list(source or [])
    if any(str(v).strip() not in ("", "ISO_IR 6") for v in declared) or _has_non_ascii(sr):
        sr.SpecificCharacterSet = UTF8_CHARACTER_SET


def _has_non_ascii(ds: Any) -> bool:
    for element in ds.iterall():
        if element.VR not in _CHARACTER_SET_VRS or element.value is None:
            continue
        values = element.value if isinstance(element.value, (list, tuple)) or \
            type(element.value).__name__ == "MultiValue" else [element.value]
        if any(not str(value).isascii() for value in values):
            return True
    return False


def write_sr(sr: Any, folder: str | os.PathLike) -> Path:
    """Write an SR as ``folder/<SOP Instance UID>.dcm`` (atomic rename); return the path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{sr.SOPInstanceUID}.dcm"
    partial = folder / f".{sr.SOPInstanceUID}.part"
    try:
        sr.save_as(partial, enforce_file_format=True)
        os.replace(partial, target)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise SRError(f"{target}: cannot write SR ({error.strerror or error})") from error
    return target


def _read_headers(paths: Sequence[str]) -> dict[str, Any]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    headers = {}
    for path in paths:
        try:
            headers[path] = pydicom.dcmread(path, stop_before_pixels=True)
        except (OSError, InvalidDicomError, ValueError, EOFError):
            continue  # the slice result already carries the reading error
    return headers


def write_series_srs(results: Sequence[Any], model: SRModel, folder: str | os.PathLike, *,
                     content_datetime: datetime | None = None) -> list[SROutcome]:
    """One SR per Series Instance UID of ``results`` into ``folder`` (``score --sr``).

    Results without a series UID (not DICOM, unreadable) belong to no SR and
    give one ``skipped`` outcome saying how many they are. Source
    headers are read again (no pixels) for the patient/study identity and
    SOP Class UIDs. Never raises for one series: each outcome says written,
    refused or error, so scoring output is never lost to an SR problem.
    """
    from deltaiqa_lite.read.series import group_series

    outcomes = []
    for series_uid, members in group_series(results):
        if not series_uid:
            outcomes.append(SROutcome(None, "skipped", reason=(
                f"{len(members)} slice(s) without a DICOM Series Instance UID (not DICOM, or "
                "unreadable) are in no SR")))
            continue
        headers = _read_headers(sorted({r.path for r in members if getattr(r, "path", None)}))
        sop_classes = {str(h.SOPInstanceUID): str(h.SOPClassUID) for h in headers.values()
                       if "SOPInstanceUID" in h and "SOPClassUID" in h}
        identity = next((h for h in headers.values() if identity_refusal(h, "") is None),
                        next(iter(headers.values()), None))
        try:
            sr = build_sr(members, identity, model, sop_classes=sop_classes, series_uid=series_uid,
                          content_datetime=content_datetime)
            path = write_sr(sr, folder)
            outcomes.append(SROutcome(series_uid, "written", str(path), str(sr.SOPInstanceUID)))
        except SRRefused as error:
            outcomes.append(SROutcome(series_uid, "refused", reason=str(error)))
        except Exception as error:  # noqa: BLE001 - an SR problem must not lose the scores
            outcomes.append(SROutcome(series_uid, "error",
                                      reason=f"series {series_uid}: SR not written: "
                                             f"{type(error).__name__}: {error}"))
    return outcomes


def _concept_code(item: Any) -> str:
    return str(item.ConceptNameCodeSequence[0].CodeValue)


def read_sr_values(source: Any) -> dict:
    """Read an SR written by deltaiqa-lite back into plain values (tests, docs, checks).

    Parameters
    ----------
    source : path or pydicom Dataset

    Returns
    -------
    dict
        ``{"series": {mean, median, minimum, p10, n_scored, n_not_scored},
        "slices": [{sop_instance_uid, frame, score, likert, reason, <physics fields>,
        flags}, ...]}`` in the SR's order; parsed with highdicom's TID 1500 classes.
    """
    hd = _hd()
    import pydicom

    ds = source if isinstance(source, pydicom.Dataset) else pydicom.dcmread(source)
    sr = hd.sr.Comprehensive3DSR.from_dataset(ds)
    report = sr.content
    by_code = {value: name for name, (_, value, *_rest) in PHYSICS_FIELDS.items()}
    derivations = {"373098007": "mean", "373099004": "median", "255605001": "minimum",
                   "371890005": "p10"}
    out: dict = {"series": {}, "slices": []}
    for group in report.get_image_measurement_groups():
        finding = group.finding_type
        if finding is not None and finding.value == "130550":
            for measurement in group.get_measurements():
                code = measurement.name.value
                if code == "DIQA001" and measurement.derivation is not None:
                    out["series"][derivations[measurement.derivation.value]] = measurement.value
                elif code == "DIQA006":
                    out["series"]["n_scored"] = int(measurement.value)
                elif code == "DIQA007":
                    out["series"]["n_not_scored"] = int(measurement.value)
            continue
        entry: dict = {"sop_instance_uid": None, "frame": None, "score": None, "likert": None,
                       "reason": None, "flags": [], "physics_note": None}
        sources = group.source_images
        if sources:
            entry["sop_instance_uid"] = sources[0].referenced_sop_instance_uid
            frames = sources[0].referenced_frame_numbers
            entry["frame"] = int(frames[0]) - 1 if frames else None
        for measurement in group.get_measurements():
            code = measurement.name.value
            if code == "DIQA001":
                entry["score"] = measurement.value
            elif code in by_code:
                entry[by_code[code]] = measurement.value
        for evaluation in group.get_qualitative_evaluations():
            if evaluation.name.value == "DIQA002":
                entry["likert"] = int(evaluation.value.value[-1])
        for item in group[0].ContentSequence:
            if item.ValueType == "TEXT":
                code = _concept_code(item)
                if code == "DIQA005":
                    entry["reason"] = str(item.TextValue)
                elif code == "DIQA012":
                    entry["flags"].append(str(item.TextValue))
                elif code == "DIQA013":
                    entry["physics_note"] = str(item.TextValue)
        out["slices"].append(entry)
    return out
