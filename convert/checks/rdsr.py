"""Build a CT Radiation Dose SR (X-Ray Radiation Dose SR, TID 10011) for examples and tests.

Synthetic and honest: the device is the deltaiqa-lite simulator, the values
are the ones given. The output passes ``dciodvfy`` with no errors (checked by
``tests/test_example_dicoms.py``). The reader is :mod:`deltaiqa_lite.read.rdsr`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

XRAY_RADIATION_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"


@dataclass
class Acquisition:
    """One CT Acquisition of the report."""

    protocol: str
    target_region: tuple[str, str, str]          # (code value, scheme, meaning), e.g. ("818981001", "SCT", "Abdomen")
    ctdivol_mgy: float
    dlp_mgy_cm: float
    scanning_length_mm: float
    phantom: tuple[str, str, str] = ("113691", "DCM", "IEC Body Dosimetry Phantom")
    kvp: float = 120.0
    tube_current_ma: float = 200.0
    exposure_time_s: float = 5.0
    event_uid: str = ""


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _item(relationship: str, value_type: str, concept: tuple[str, str, str]) -> Dataset:
    item = Dataset()
    item.RelationshipType = relationship
    item.ValueType = value_type
    item.ConceptNameCodeSequence = Sequence([_code(*concept)])
    return item


def _num(concept: tuple[str, str, str], value: float, unit: tuple[str, str, str]) -> Dataset:
    item = _item("CONTAINS", "NUM", concept)
    measured = Dataset()
    measured.NumericValue = f"{value:.6g}"
    measured.MeasurementUnitsCodeSequence = Sequence([_code(*unit)])
    item.MeasuredValueSequence = Sequence([measured])
    return item


def _code_item(relationship: str, concept: tuple[str, str, str], value: tuple[str, str, str]) -> Dataset:
    item = _item(relationship, "CODE", concept)
    item.ConceptCodeSequence = Sequence([_code(*value)])
    return item


def _container(relationship: str, concept: tuple[str, str, str], children: list[Dataset]) -> Dataset:
    item = _item(relationship, "CONTAINER", concept)
    item.ContinuityOfContent = "SEPARATE"
    item.ContentSequence = Sequence(children)
    return item


def _text(concept: tuple[str, str, str], value: str) -> Dataset:
    item = _item("CONTAINS", "TEXT", concept)
    item.TextValue = value
    return item


MGY = ("mGy", "UCUM", "mGy")
MGY_CM = ("mGy.cm", "UCUM", "mGy.cm")
MM = ("mm", "UCUM", "mm")
SECONDS = ("s", "UCUM", "s")
KV = ("kV", "UCUM", "kV")
MA = ("mA", "UCUM", "mA")
EVENTS = ("{events}", "UCUM", "events")
NO_UNITS = ("1", "UCUM", "no units")
SPIRAL = ("116152004", "SCT", "Spiral Acquisition")
COMPUTED_TOMOGRAPHY = ("77477000", "SCT", "Computed Tomography X-Ray")


def ct_dose_report(*, study_uid: str, series_uid: str, instance_uid: str, acquisitions: list[Acquisition],
                   patient_name: str = "SYNTHETIC^PHANTOM", patient_id: str = "DELTAIQA-SIM",
                   implementation_uid: str = "2.25.1", total_dlp_mgy_cm: float | None = None,
                   study_description: str = "", include_total: bool = True) -> Dataset:
    """An X-Ray Radiation Dose SR dataset with TID 10011 content.

    ``total_dlp_mgy_cm`` defaults to the sum of the acquisitions' DLPs;
    ``include_total=False`` leaves out the CT Accumulated Dose Data (a partial report, for tests).
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = XRAY_RADIATION_DOSE_SR
    meta.MediaStorageSOPInstanceUID = instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = implementation_uid
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = XRAY_RADIATION_DOSE_SR
    ds.SOPInstanceUID = instance_uid
    ds.StudyDate = ds.StudyTime = ds.AccessionNumber = ds.ReferringPhysicianName = ""
    ds.ContentDate, ds.ContentTime = "20000101", "000000"
    ds.Modality = "SR"
    ds.Manufacturer = "deltaiqa-lite simulator"
    ds.StudyDescription = study_description
    ds.SeriesDescription = "synthetic CT dose report"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "synthetic phantom; no patient"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "SIM"
    ds.SeriesNumber = 99
    ds.InstanceNumber = 1
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    ds.PerformedProcedureCodeSequence = Sequence()
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code("113701", "DCM", "X-Ray Radiation Dose Report")])
    ds.ContinuityOfContent = "SEPARATE"
    template = Dataset()
    template.MappingResource = "DCMR"
    template.TemplateIdentifier = "10011"
    ds.ContentTemplateSequence = Sequence([template])
    total = sum(a.dlp_mgy_cm for a in acquisitions) if total_dlp_mgy_cm is None else total_dlp_mgy_cm
    content = [
        _code_item("HAS CONCEPT MOD", ("121058", "DCM", "Procedure reported"),
                   COMPUTED_TOMOGRAPHY),
        _code_item("HAS OBS CONTEXT", ("121005", "DCM", "Observer Type"), ("121007", "DCM", "Device")),
    ]
    device = _item("HAS OBS CONTEXT", "UIDREF", ("121012", "DCM", "Device Observer UID"))
    device.UID = implementation_uid
    content.append(device)
    start = _item("HAS OBS CONTEXT", "DATETIME", ("113809", "DCM", "Start of X-Ray Irradiation"))
    start.DateTime = "20000101000000"
    end = _item("HAS OBS CONTEXT", "DATETIME", ("113810", "DCM", "End of X-Ray Irradiation"))
    end.DateTime = "20000101000100"
    content += [start, end,
                _code_item("CONTAINS", ("113705", "DCM", "Scope of Accumulation"), ("113014", "DCM", "Study"))]
    content[-1].RelationshipType = "HAS OBS CONTEXT"
    scope_uid = _item("HAS PROPERTIES", "UIDREF", ("110180", "DCM", "Study Instance UID"))
    scope_uid.UID = study_uid
    content[-1].ContentSequence = Sequence([scope_uid])
    if include_total:
        content.append(_container("CONTAINS", ("113811", "DCM", "CT Accumulated Dose Data"), [
            _num(("113812", "DCM", "Total Number of Irradiation Events"), len(acquisitions), EVENTS),
            _num(("113813", "DCM", "CT Dose Length Product Total"), total, MGY_CM),
        ]))
    for number, acquisition in enumerate(acquisitions, 1):
        event_uid = _item("CONTAINS", "UIDREF", ("113769", "DCM", "Irradiation Event UID"))
        event_uid.UID = acquisition.event_uid or f"{instance_uid}.{number}"
        source = _container("CONTAINS", ("113831", "DCM", "CT X-Ray Source Parameters"), [
            _text(("113832", "DCM", "Identification of the X-Ray Source"), "A"),
            _num(("113733", "DCM", "KVP"), acquisition.kvp, KV),
            _num(("113833", "DCM", "Maximum X-Ray Tube Current"), acquisition.tube_current_ma, MA),
            _num(("113734", "DCM", "X-Ray Tube Current"), acquisition.tube_current_ma, MA),
        ])
        parameters = _container("CONTAINS", ("113822", "DCM", "CT Acquisition Parameters"), [
            _num(("113824", "DCM", "Exposure Time"), acquisition.exposure_time_s, SECONDS),
            _num(("113825", "DCM", "Scanning Length"), acquisition.scanning_length_mm, MM),
            _num(("113826", "DCM", "Nominal Single Collimation Width"), 0.625, MM),
            _num(("113827", "DCM", "Nominal Total Collimation Width"), 40.0, MM),
            _num(("113823", "DCM", "Number of X-Ray Sources"), 1, NO_UNITS),
            source,
        ])
        dose = _container("CONTAINS", ("113829", "DCM", "CT Dose"), [
            _num(("113830", "DCM", "Mean CTDIvol"), acquisition.ctdivol_mgy, MGY),
            _code_item("CONTAINS", ("113835", "DCM", "CTDIw Phantom Type"), acquisition.phantom),
            _num(("113838", "DCM", "DLP"), acquisition.dlp_mgy_cm, MGY_CM),
        ])
        content.append(_container("CONTAINS", ("113819", "DCM", "CT Acquisition"), [
            _text(("125203", "DCM", "Acquisition Protocol"), acquisition.protocol),
            _code_item("CONTAINS", ("123014", "DCM", "Target Region"), acquisition.target_region),
            _code_item("CONTAINS", ("113820", "DCM", "CT Acquisition Type"), SPIRAL),
            _code_item("CONTAINS", ("408730004", "SCT", "Procedure Context"), COMPUTED_TOMOGRAPHY),
            event_uid,
            parameters,
            dose,
        ]))
    ds.ContentSequence = Sequence(content)
    return ds
