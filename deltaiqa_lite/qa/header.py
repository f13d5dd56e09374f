"""Acquisition fields a QA physicist trends on, read from a DICOM header.

Only the header is read (``stop_before_pixels``), so this is cheap enough to
run on every file a watch folder sees, before deciding whether to score it.
Enhanced (multi-frame) CT keeps most acquisition fields in functional group
sequences instead of the top level; both places are looked at.

Privacy: patient name, ID and birth date are never returned. A site may ask
for a salted HMAC of Patient ID (``patient_id_salt``) to link the series of
one patient without storing the ID itself.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from deltaiqa_lite.errors import InputError
from deltaiqa_lite.read.dicom import sniff_refusal

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
CT_SOP_CLASSES = frozenset({CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE})

# A DICOM UID is dot-separated digit groups, at most 64 characters (PS3.5 9.1).
# Leading zeros inside a component are tolerated because real scanners emit
# them; anything else (empty components, '/', '..', letters) is refused, so a
# validated UID is always safe as a file or folder name.
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def is_valid_uid(uid: object) -> bool:
    """Whether ``uid`` is a syntactically valid DICOM UID (and so a safe file name)."""
    return isinstance(uid, str) and 0 < len(uid) <= 64 and _UID_RE.fullmatch(uid) is not None


@dataclass(frozen=True)
class QAHeader:
    """Identity and acquisition fields of one DICOM object (no patient identity)."""

    study_uid: str | None = None
    series_uid: str | None = None
    sop_instance_uid: str | None = None
    sop_class_uid: str | None = None
    modality: str | None = None
    acquisition_datetime: str | None = None  # ISO 8601, scanner local time
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
    number_of_frames: int = 1
    patient_hash: str | None = None
    study_description: str | None = None
    procedure_code: str | None = None       # (0008,1032) Procedure Code Sequence: code value
    procedure_meaning: str | None = None    # and its code meaning

    def as_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (for the QA log)."""
        return asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        """Names of the fields, in declaration order."""
        return [f.name for f in fields(cls)]


def patient_hash(patient_id: str, salt: bytes) -> str:
    """HMAC-SHA256 of a Patient ID under a site secret, hex.

    An HMAC rather than ``sha256(id)``: Patient IDs are short and guessable, so
    an unsalted hash could be reversed by enumerating them.
    """
    return hmac.new(salt, patient_id.strip().encode("utf-8"), hashlib.sha256).hexdigest()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        # Convolution Kernel may be multi-valued (e.g. Siemens 'Br40d\\3').
        text = "\\".join(str(v).strip() for v in value)
    else:
        text = str(value).strip()
    return text or None


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
        if value is None:
            return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    # NaN and infinities are not acquisition values; SQLite would store NaN as NULL anyway.
    return number if math.isfinite(number) else None


def _first_item(ds: Dataset, keyword: str) -> Dataset | None:
    seq = ds.get(keyword)
    if seq is None or len(seq) == 0:
        return None
    return seq[0]


def _functional_item(ds: Dataset, macro: str) -> Dataset | None:
    """First item of ``macro`` in the shared, else the first per-frame, functional group."""
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        group = _first_item(ds, groups)
        if group is not None:
            item = _first_item(group, macro)
            if item is not None:
                return item
    return None


def _lookup(ds: Dataset, keyword: str, macros: tuple[str, ...] = ()) -> Any:
    value = ds.get(keyword)
    if value is not None and value != "":
        return value
    for macro in macros:
        item = _functional_item(ds, macro)
        if item is not None:
            value = item.get(keyword)
            if value is not None and value != "":
                return value
    return None


def _acquisition_datetime(ds: Dataset) -> str | None:
    """Best acquisition time: AcquisitionDateTime, else date+time of acquisition, content, series."""
    candidates: list[tuple[str | None, str | None]] = []
    frame_content = _functional_item(ds, "FrameContentSequence")
    dt_value = ds.get("AcquisitionDateTime") or (
        frame_content.get("FrameAcquisitionDateTime") if frame_content is not None else None)
    if dt_value:
        text = str(dt_value)
        candidates.append((text[:8], text[8:] or None))
    for date_kw, time_kw in (("AcquisitionDate", "AcquisitionTime"), ("ContentDate", "ContentTime"),
                             ("SeriesDate", "SeriesTime"), ("StudyDate", "StudyTime")):
        date = ds.get(date_kw)
        if date:
            candidates.append((str(date), str(ds.get(time_kw) or "") or None))
    for date, time in candidates:
        stamp = _parse_da_tm(date, time)
        if stamp is not None:
            return stamp
    return None


def _parse_da_tm(date: str | None, time: str | None) -> str | None:
    if not date or len(date) < 8:
        return None
    try:
        day = datetime.strptime(date[:8], "%Y%m%d")
    except ValueError:
        return None
    hh = mm = ss = 0
    micro = 0
    if time:
        digits = time.split("+")[0].split("-")[0].replace(":", "")
        whole, _, frac = digits.partition(".")
        try:
            hh = int(whole[0:2]) if len(whole) >= 2 else 0
            mm = int(whole[2:4]) if len(whole) >= 4 else 0
            ss = int(whole[4:6]) if len(whole) >= 6 else 0
            micro = int((frac + "000000")[:6]) if frac else 0
            stamp = day.replace(hour=hh, minute=mm, second=min(ss, 59), microsecond=micro)
        except ValueError:
            stamp = day
    else:
        stamp = day
    return stamp.isoformat(timespec="seconds")


def header_from_dataset(ds: Dataset, *, patient_id_salt: bytes | None = None) -> QAHeader:
    """Extract the QA fields from a dataset already in memory.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The dataset (pixel data not needed).
    patient_id_salt : bytes, optional
        Site secret; when given, ``patient_hash`` is the HMAC-SHA256 of Patient ID.

    Returns
    -------
    QAHeader
    """
    meta = getattr(ds, "file_meta", None)
    sop_class = ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta else None)
    sop_instance = ds.get("SOPInstanceUID") or (
        meta.get("MediaStorageSOPInstanceUID") if meta else None)
    frames = _number(ds.get("NumberOfFrames"))
    procedure = _first_item(ds, "ProcedureCodeSequence")
    hashed = None
    if patient_id_salt is not None and ds.get("PatientID"):
        hashed = patient_hash(str(ds.PatientID), patient_id_salt)
    return QAHeader(
        study_uid=_text(ds.get("StudyInstanceUID")),
        series_uid=_text(ds.get("SeriesInstanceUID")),
        sop_instance_uid=_text(sop_instance),
        sop_class_uid=_text(sop_class),
        modality=_text(ds.get("Modality")),
        acquisition_datetime=_acquisition_datetime(ds),
        station_name=_text(ds.get("StationName")),
        manufacturer=_text(ds.get("Manufacturer")),
        model_name=_text(ds.get("ManufacturerModelName")),
        protocol_name=_text(ds.get("ProtocolName")),
        series_description=_text(ds.get("SeriesDescription")),
        body_part=_text(ds.get("BodyPartExamined")),
        kvp=_number(_lookup(ds, "KVP", ("CTXRayDetailsSequence",))),
        tube_current_ma=_number(ds.get("XRayTubeCurrent")
                                or _lookup(ds, "XRayTubeCurrentInmA", ("CTExposureSequence",))),
        exposure_mas=_number(ds.get("Exposure")
                             or _lookup(ds, "ExposureInmAs", ("CTExposureSequence",))),
        ctdivol_mgy=_number(_lookup(ds, "CTDIvol", ("CTExposureSequence",))),
        kernel=_text(_lookup(ds, "ConvolutionKernel", ("CTReconstructionSequence",))),
        slice_thickness_mm=_number(_lookup(ds, "SliceThickness", ("PixelMeasuresSequence",))),
        reconstruction_diameter_mm=_number(
            _lookup(ds, "ReconstructionDiameter", ("CTReconstructionSequence",))),
        number_of_frames=int(frames) if frames and 1 <= frames < 2**31 else 1,
        patient_hash=hashed,
        study_description=_text(ds.get("StudyDescription")),
        procedure_code=_text(procedure.get("CodeValue")) if procedure is not None else None,
        procedure_meaning=_text(procedure.get("CodeMeaning")) if procedure is not None else None,
    )


def read_qa_header(path: str | os.PathLike[str], *,
                   patient_id_salt: bytes | None = None) -> QAHeader:
    """Read the QA fields of a DICOM file without its pixel data.

    Raises
    ------
    InputError
        When the file is not DICOM or cannot be read; the message names the file.
    """
    name = os.fspath(path)
    refusal = sniff_refusal(name)  # bounded time, before pydicom's forced parse
    if refusal is not None:
        raise InputError(name, refusal)
    try:
        ds = pydicom.dcmread(name, stop_before_pixels=True)
    except InvalidDicomError:
        try:
            # Some exporters omit the 128-byte preamble; pydicom reads those with force.
            ds = pydicom.dcmread(name, stop_before_pixels=True, force=True)
        except Exception as exc:
            raise InputError(name, f"not a DICOM file ({exc})") from exc
        if "SOPInstanceUID" not in ds and not getattr(ds, "file_meta", None):
            raise InputError(name, "not a DICOM file (no preamble, no File Meta "
                                   "Information, no SOP Instance UID)")
    except OSError as exc:
        raise InputError(name, f"cannot read ({exc.strerror or exc})") from exc
    except Exception as exc:
        raise InputError(name, f"unreadable DICOM header ({exc})") from exc
    try:
        return header_from_dataset(ds, patient_id_salt=patient_id_salt)
    except Exception as exc:  # pydicom converts values on access and may raise anything
        raise InputError(name, f"unreadable DICOM header value ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc


def refusal_reason(header: QAHeader) -> str | None:
    """Why deltaiqa-lite will not score this object, or None if it is a CT image.

    The wording follows pydicom (element, value, what was expected); callers
    put the file name in front where there is one.
    """
    if header.sop_class_uid and header.sop_class_uid not in CT_SOP_CLASSES:
        from pydicom.uid import UID

        kind = UID(header.sop_class_uid).name
        return (f"(0008,0016) SOP Class UID is '{kind}'; "
                "deltaiqa-lite scores CT Image Storage and Enhanced CT Image Storage only")
    if header.modality is not None and header.modality.upper() != "CT":
        return f"(0008,0060) Modality is '{header.modality}'; deltaiqa-lite scores CT only"
    if header.sop_instance_uid is None:
        return "(0008,0018) SOP Instance UID is missing"
    if not is_valid_uid(header.sop_instance_uid):
        return f"(0008,0018) SOP Instance UID {header.sop_instance_uid!r} is not a valid UID"
    if header.series_uid is not None and not is_valid_uid(header.series_uid):
        return f"(0020,000E) Series Instance UID {header.series_uid!r} is not a valid UID"
    return None
