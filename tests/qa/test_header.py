from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from qa_builders import (
    ENHANCED_CT_IMAGE_STORAGE,
    MR_IMAGE_STORAGE,
    ct_dataset,
    write_ct,
)

from deltaiqa_lite.errors import InputError
from deltaiqa_lite.qa.header import (
    QAHeader,
    header_from_dataset,
    is_valid_uid,
    patient_hash,
    read_qa_header,
    refusal_reason,
)


def test_reads_acquisition_fields(tmp_path: Path) -> None:
    ds = write_ct(tmp_path / "a.dcm", station="CT2", protocol="THORAX", kernel="Br40d")
    header = read_qa_header(tmp_path / "a.dcm")
    assert header.sop_instance_uid == ds.SOPInstanceUID
    assert header.series_uid == ds.SeriesInstanceUID
    assert header.study_uid == ds.StudyInstanceUID
    assert header.station_name == "CT2"
    assert header.protocol_name == "THORAX"
    assert header.kernel == "Br40d"
    assert header.kvp == 120.0
    assert header.tube_current_ma == 250.0
    assert header.exposure_mas == 180.0
    assert header.ctdivol_mgy == pytest.approx(9.5)
    assert header.slice_thickness_mm == 3.0
    assert header.reconstruction_diameter_mm == 380.0
    assert header.acquisition_datetime == "2024-03-05T10:15:30"
    assert header.body_part == "ABDOMEN"
    assert header.manufacturer == "ACME" and header.model_name == "Scan 9000"
    assert refusal_reason(header) is None


def test_no_patient_identity_unless_salted(tmp_path: Path) -> None:
    write_ct(tmp_path / "a.dcm")
    plain = read_qa_header(tmp_path / "a.dcm")
    text = repr(plain.as_dict())
    # The birth date in either form; a bare "1970" also turns up inside the random UIDs.
    assert "DOE" not in text and "PID-12345" not in text
    assert "19700101" not in text and "1970-01-01" not in text
    assert plain.patient_hash is None
    salted = read_qa_header(tmp_path / "a.dcm", patient_id_salt=b"site-secret")
    assert salted.patient_hash == patient_hash("PID-12345", b"site-secret")
    assert salted.patient_hash != patient_hash("PID-12345", b"other-secret")
    assert "PID-12345" not in salted.patient_hash and len(salted.patient_hash) == 64


def test_multivalued_kernel_joined() -> None:
    ds = ct_dataset()
    ds.ConvolutionKernel = ["Br40d", "3"]
    assert header_from_dataset(ds).kernel == "Br40d\\3"


def test_enhanced_ct_functional_groups() -> None:
    ds = Dataset()
    ds.SOPClassUID = ENHANCED_CT_IMAGE_STORAGE
    ds.SOPInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = "1.2.3"
    ds.Modality = "CT"
    ds.NumberOfFrames = 3
    ds.AcquisitionDateTime = "20240102083000"
    xray, exposure, recon, measures, group = Dataset(), Dataset(), Dataset(), Dataset(), Dataset()
    xray.KVP = "100"
    exposure.CTDIvol = 4.2
    exposure.XRayTubeCurrentInmA = 150.0
    exposure.ExposureInmAs = 90.0
    recon.ConvolutionKernel = "FC08"
    recon.ReconstructionDiameter = 350.0
    measures.SliceThickness = "1.0"
    group.CTXRayDetailsSequence = [xray]
    group.CTExposureSequence = [exposure]
    group.CTReconstructionSequence = [recon]
    group.PixelMeasuresSequence = [measures]
    ds.SharedFunctionalGroupsSequence = [group]
    header = header_from_dataset(ds)
    assert (header.kvp, header.ctdivol_mgy, header.tube_current_ma, header.exposure_mas) == (
        100.0, 4.2, 150.0, 90.0)
    assert header.kernel == "FC08" and header.reconstruction_diameter_mm == 350.0
    assert header.slice_thickness_mm == 1.0 and header.number_of_frames == 3
    assert header.acquisition_datetime == "2024-01-02T08:30:00"


def test_refusals_name_element() -> None:
    mr = header_from_dataset(ct_dataset(modality="MR", sop_class=MR_IMAGE_STORAGE))
    assert refusal_reason(mr) == ("(0008,0016) SOP Class UID is 'MR Image Storage'; deltaiqa-lite "
                                  "scores CT Image Storage and Enhanced CT Image Storage only")
    ct_class_mr = header_from_dataset(ct_dataset(modality="MR"))
    assert refusal_reason(ct_class_mr) == "(0008,0060) Modality is 'MR'; deltaiqa-lite scores CT only"
    bad_uid = QAHeader(sop_class_uid="1.2.840.10008.5.1.4.1.1.2", modality="CT",
                       sop_instance_uid="1.2/../../etc")
    assert "is not a valid UID" in refusal_reason(bad_uid)


@pytest.mark.parametrize("uid,ok", [
    ("1.2.840.10008.5.1.4.1.1.2", True), ("1.02.3", True), ("1", True),
    ("..", False), (".", False), ("1..2", False), ("1.2.", False), (".1.2", False),
    ("1/2", False), ("1.2\\3", False), ("", False), ("1" * 65, False), ("1.2a", False),
    (None, False), ("1.2\x00", False),
])
def test_uid_validation(uid: object, ok: bool) -> None:
    assert is_valid_uid(uid) is ok


def test_not_dicom_raises_with_file_name(tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("hello, this is not DICOM\n")
    with pytest.raises(InputError, match=r"notes\.txt: not a DICOM file"):
        read_qa_header(junk)
    with pytest.raises(InputError, match=r"missing\.dcm: cannot read"):
        read_qa_header(tmp_path / "missing.dcm")
