"""CT Radiation Dose SR (DICOM TID 10011): the dose of an exam as the scanner reports it.

Read with pydicom only. What is taken:

- CT Accumulated Dose Data (113811): CT Dose Length Product Total (113813);
- per CT Acquisition (113819): Acquisition Protocol (125203), Target Region
  (123014), CT Acquisition Type (113820), from CT Acquisition Parameters
  (113822) the Scanning Length (113825), from CT Dose (113829) the Mean CTDIvol
  (113830), the CTDIw Phantom Type (113835) and the DLP (113838).

A malformed or partial report never raises past :func:`parse_rdsr`: what is
missing is None and ``problems`` says why. Only a file that is not a dose
report at all (or not readable) raises :class:`~deltaiqa_lite.errors.InputError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from deltaiqa_lite.errors import InputError, RefusedInput
from deltaiqa_lite.read.names import display_text

XRAY_RADIATION_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
ENHANCED_SR = "1.2.840.10008.5.1.4.1.1.88.22"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
#: SOP classes that may carry a dose report (Enhanced and Comprehensive SR only when the root is 113701).
RDSR_SOP_CLASSES = (XRAY_RADIATION_DOSE_SR, ENHANCED_SR, COMPREHENSIVE_SR)

ROOT = "113701"                 # X-Ray Radiation Dose Report
ACCUMULATED = "113811"          # CT Accumulated Dose Data
DLP_TOTAL = "113813"            # CT Dose Length Product Total
ACQUISITION = "113819"          # CT Acquisition
PROTOCOL = "125203"             # Acquisition Protocol
TARGET_REGION = "123014"        # Target Region
ACQUISITION_TYPE = "113820"     # CT Acquisition Type
PARAMETERS = "113822"           # CT Acquisition Parameters
SCANNING_LENGTH = "113825"      # Scanning Length
CT_DOSE = "113829"              # CT Dose
MEAN_CTDIVOL = "113830"         # Mean CTDIvol
PHANTOM_TYPE = "113835"         # CTDIw Phantom Type
DLP = "113838"                  # DLP


@dataclass
class CTAcquisitionDose:
    """One CT Acquisition of a dose report (an irradiation event)."""

    protocol: str | None = None
    target_region: str | None = None
    acquisition_type: str | None = None
    ctdivol_mgy: float | None = None
    dlp_mgy_cm: float | None = None
    scanning_length_mm: float | None = None
    phantom: str | None = None          # code value: 113690 IEC Head, 113691 IEC Body


@dataclass
class RadiationDoseReport:
    """What a CT Radiation Dose SR says about its study."""

    path: str
    study_instance_uid: str | None = None
    sop_instance_uid: str | None = None
    total_dlp_mgy_cm: float | None = None
    acquisitions: list[CTAcquisitionDose] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def summed_dlp_mgy_cm(self) -> float | None:
        """The sum of the acquisitions' DLPs (None when any is missing)."""
        values = [a.dlp_mgy_cm for a in self.acquisitions]
        return float(sum(values)) if values and all(v is not None for v in values) else None


def _code_value(item: Dataset, keyword: str) -> str | None:
    sequence = item.get(keyword)
    if not sequence:
        return None
    return str(sequence[0].get("CodeValue", "") or sequence[0].get("LongCodeValue", "")) or None


def _concept(item: Dataset) -> str | None:
    return _code_value(item, "ConceptNameCodeSequence")


def _children(item: Dataset) -> list[Dataset]:
    return list(item.get("ContentSequence", None) or [])


def _find(item: Dataset, concept: str) -> list[Dataset]:
    return [child for child in _children(item) if _concept(child) == concept]


def _number(item: Dataset, concept: str, where: str, problems: list[str]) -> float | None:
    """The NUM value of the first child ``concept`` of ``item``; None with a problem when missing or bad."""
    found = _find(item, concept)
    if not found:
        problems.append(f"{where}: no ({concept}) item")
        return None
    measured = found[0].get("MeasuredValueSequence")
    try:
        value = float(measured[0].NumericValue)
    except (TypeError, ValueError, IndexError, AttributeError, KeyError):
        problems.append(f"{where}: ({concept}) has no numeric value")
        return None
    if not math.isfinite(value) or value < 0:
        problems.append(f"{where}: ({concept}) is {value!r}; expected a non-negative number")
        return None
    return value


def _code_meaning(item: Dataset, concept: str) -> str | None:
    found = _find(item, concept)
    if not found:
        return None
    sequence = found[0].get("ConceptCodeSequence")
    if not sequence:
        return None
    return str(sequence[0].get("CodeMeaning", "")) or _code_value(found[0], "ConceptCodeSequence")


def is_rdsr(dataset: Dataset) -> bool:
    """Whether ``dataset`` is an X-Ray Radiation Dose SR (its class, or an Enhanced SR rooted at 113701)."""
    sop_class = str(dataset.get("SOPClassUID", ""))
    if sop_class == XRAY_RADIATION_DOSE_SR:
        return True
    return sop_class in RDSR_SOP_CLASSES and _concept(dataset) == ROOT


def parse_rdsr(dataset: Dataset, path: str = "<dataset>") -> RadiationDoseReport:
    """The dose of a CT Radiation Dose SR; never raises for a malformed content tree.

    Raises
    ------
    RefusedInput
        When ``dataset`` is not a dose report at all.
    """
    if not is_rdsr(dataset):
        raise RefusedInput(path, f"(0008,0016) SOP Class UID is {str(dataset.get('SOPClassUID', 'missing'))!r} "
                                 f"with root concept {_concept(dataset)!r}; not an X-Ray Radiation Dose SR "
                                 f"(113701)")
    report = RadiationDoseReport(path, str(dataset.get("StudyInstanceUID", "")) or None,
                                 str(dataset.get("SOPInstanceUID", "")) or None)
    problems = report.problems
    if report.study_instance_uid is None:
        problems.append("(0020,000D) Study Instance UID missing; the dose cannot be matched to an exam")
    try:
        if _concept(dataset) != ROOT:
            problems.append(f"root concept is {_concept(dataset)!r}; expected (113701) X-Ray Radiation Dose Report")
        accumulated = _find(dataset, ACCUMULATED)
        if accumulated:
            report.total_dlp_mgy_cm = _number(accumulated[0], DLP_TOTAL, "CT Accumulated Dose Data", problems)
        else:
            problems.append("no (113811) CT Accumulated Dose Data: not a CT dose report (TID 10011)")
        for number, acquisition in enumerate(_find(dataset, ACQUISITION), 1):
            where = f"CT Acquisition {number}"
            event = CTAcquisitionDose(protocol=None, target_region=_code_meaning(acquisition, TARGET_REGION),
                                      acquisition_type=_code_meaning(acquisition, ACQUISITION_TYPE))
            protocol = _find(acquisition, PROTOCOL)
            if protocol:
                event.protocol = str(protocol[0].get("TextValue", "")) or None
            parameters = _find(acquisition, PARAMETERS)
            if parameters:
                event.scanning_length_mm = _number(parameters[0], SCANNING_LENGTH, where, problems)
            dose = _find(acquisition, CT_DOSE)
            if dose:
                event.ctdivol_mgy = _number(dose[0], MEAN_CTDIVOL, where, problems)
                event.dlp_mgy_cm = _number(dose[0], DLP, where, problems)
                phantom = _find(dose[0], PHANTOM_TYPE)
                if phantom:
                    event.phantom = _code_value(phantom[0], "ConceptCodeSequence")
            elif (event.acquisition_type or "").lower() not in {"constant angle acquisition"}:
                # Localizers (constant angle) carry no CT Dose; anything else should.
                problems.append(f"{where}: no (113829) CT Dose")
            report.acquisitions.append(event)
    except Exception as error:  # a broken tree costs the report its values, never the caller
        problems.append(f"content tree unreadable: {type(error).__name__}: {error}")
    if report.total_dlp_mgy_cm is None and report.summed_dlp_mgy_cm is not None:
        report.total_dlp_mgy_cm = report.summed_dlp_mgy_cm
        problems.append("total DLP taken as the sum of the acquisitions' DLPs")
    return report


def read_rdsr(path: str | Path) -> RadiationDoseReport:
    """Read a CT Radiation Dose SR file.

    Raises
    ------
    InputError
        Unreadable file, or not a dose report (:class:`RefusedInput`).
    """
    try:
        dataset = pydicom.dcmread(str(path), force=True)
    except Exception as error:
        raise InputError(str(path), f"not a readable DICOM file: {error}") from error
    return parse_rdsr(dataset, str(path))


#: How the readers name the SOP classes that may hold a dose report in a refusal.
_DOSE_CLASS_NAMES = tuple(UID(uid).name for uid in RDSR_SOP_CLASSES)


def split_dose_reports(results: list) -> tuple[list, list[RadiationDoseReport]]:
    """The results without the CT Radiation Dose SRs given beside the images, and those reports parsed.

    A dose report is not a slice to score: its refusal ("not an image") is
    replaced by its dose, reported apart. An SR of one of
    :data:`RDSR_SOP_CLASSES` that is not a dose report (an Enhanced SR of
    something else) stays a refusal.

    Parameters
    ----------
    results : list of SliceResult
        Anything with ``ok``, ``refused_kind``, ``error`` and ``path``.
    """
    kept, reports = [], []
    for result in results:
        error = result.error or ""
        if result.ok or result.refused_kind is None or not any(n in error for n in _DOSE_CLASS_NAMES):
            kept.append(result)
            continue
        try:
            reports.append(read_rdsr(result.path))
        except InputError:
            kept.append(result)
    return kept, reports


def dose_report_line(report: RadiationDoseReport) -> str:
    """One line about a dose report: file, study, total DLP, acquisitions, problems (escaped for display)."""
    total = "-" if report.total_dlp_mgy_cm is None else f"{report.total_dlp_mgy_cm:.1f} mGy.cm"
    line = (f"{report.path}: CT dose report of study {report.study_instance_uid}: total DLP {total}, "
            f"{len(report.acquisitions)} CT acquisitions")
    if report.problems:
        line += "; " + "; ".join(report.problems)
    return display_text(line)
