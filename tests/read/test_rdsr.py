"""CT Radiation Dose SR reading (TID 10011): full, partial and malformed reports; dciodvfy on what tests make."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.sequence import Sequence

from convert.checks.rdsr import Acquisition, ct_dose_report
from deltaiqa_lite.errors import InputError, RefusedInput
from deltaiqa_lite.read.rdsr import ENHANCED_SR, parse_rdsr, read_rdsr

ABDOMEN = ("818981001", "SCT", "Abdomen")
CHEST = ("51185008", "SCT", "Chest")
HEAD_PHANTOM = ("113690", "DCM", "IEC Head Dosimetry Phantom")


def two_acquisitions(**kwargs):
    return ct_dose_report(study_uid="2.25.100", series_uid="2.25.101", instance_uid="2.25.102", acquisitions=[
        Acquisition("Chest routine", CHEST, 8.0, 320.0, 400.0),
        Acquisition("Abdomen routine", ABDOMEN, 11.5, 506.0, 440.0, phantom=HEAD_PHANTOM),
    ], **kwargs)


def test_full_report_gives_total_dlp_and_each_acquisition(tmp_path: Path):
    path = tmp_path / "rdsr.dcm"
    pydicom.dcmwrite(path, two_acquisitions(), enforce_file_format=True)
    report = read_rdsr(path)
    assert report.study_instance_uid == "2.25.100" and report.sop_instance_uid == "2.25.102"
    assert report.total_dlp_mgy_cm == pytest.approx(826.0)
    assert report.problems == []
    first, second = report.acquisitions
    assert (first.protocol, first.target_region, first.ctdivol_mgy, first.dlp_mgy_cm, first.scanning_length_mm,
            first.phantom) == ("Chest routine", "Chest", 8.0, 320.0, 400.0, "113691")
    assert second.phantom == "113690" and second.acquisition_type == "Spiral Acquisition"


def test_total_differs_from_the_sum_and_the_total_wins():
    report = parse_rdsr(two_acquisitions(total_dlp_mgy_cm=900.0))
    assert report.total_dlp_mgy_cm == 900.0 and report.summed_dlp_mgy_cm == pytest.approx(826.0)


def test_partial_report_without_accumulated_data_sums_the_acquisitions():
    report = parse_rdsr(two_acquisitions(include_total=False))
    assert report.total_dlp_mgy_cm == pytest.approx(826.0)
    assert any("no (113811) CT Accumulated Dose Data" in p for p in report.problems)
    assert any("sum of the acquisitions" in p for p in report.problems)


def test_malformed_values_give_reasons_not_exceptions():
    ds = two_acquisitions()
    accumulated = [item for item in ds.ContentSequence if item.ConceptNameCodeSequence[0].CodeValue == "113811"][0]
    accumulated.ContentSequence[1].MeasuredValueSequence[0].NumericValue = "-5"
    acquisition = [item for item in ds.ContentSequence if item.ConceptNameCodeSequence[0].CodeValue == "113819"][1]
    dose = acquisition.ContentSequence[-1]
    dose.ContentSequence[0].MeasuredValueSequence = Sequence()   # CTDIvol without a value
    report = parse_rdsr(ds, "broken.dcm")
    assert report.acquisitions[1].ctdivol_mgy is None
    assert any("(113813) is -5.0" in p for p in report.problems)
    assert any("CT Acquisition 2: (113830) has no numeric value" in p for p in report.problems)
    # The total was bad and one acquisition DLP is fine: total falls back to the sum of both DLPs.
    assert report.total_dlp_mgy_cm == pytest.approx(826.0)


def test_content_tree_garbage_never_raises():
    ds = two_acquisitions()
    concepts = [item.ConceptNameCodeSequence[0].CodeValue for item in ds.ContentSequence]
    ds.ContentSequence[concepts.index("113819")].ContentSequence = Sequence([pydicom.Dataset()])  # no concepts
    del ds.ContentSequence[concepts.index("113811")].ContentSequence
    report = parse_rdsr(ds)
    assert report.total_dlp_mgy_cm is None
    assert "CT Accumulated Dose Data: no (113813) item" in report.problems
    assert "CT Acquisition 1: no (113829) CT Dose" in report.problems
    assert report.acquisitions[1].dlp_mgy_cm == 506.0


def test_enhanced_sr_counts_only_when_rooted_at_the_dose_report():
    ds = two_acquisitions()
    ds.SOPClassUID = ENHANCED_SR
    assert parse_rdsr(ds).total_dlp_mgy_cm == pytest.approx(826.0)
    ds.ConceptNameCodeSequence[0].CodeValue = "126000"   # Imaging Measurement Report
    with pytest.raises(RefusedInput, match="not an X-Ray Radiation Dose SR"):
        parse_rdsr(ds, "other-sr.dcm")


def test_unreadable_file_is_an_input_error(tmp_path: Path):
    path = tmp_path / "junk.dcm"
    path.write_bytes(b"\x00" * 10)
    with pytest.raises(InputError, match="junk.dcm"):
        read_rdsr(path)


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools (dciodvfy) not installed")
def test_report_made_here_passes_dciodvfy(tmp_path: Path):
    path = tmp_path / "rdsr.dcm"
    pydicom.dcmwrite(path, two_acquisitions(), enforce_file_format=True)
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]
    assert errors == []
    assert "XRayRadiationDoseSR" in done.stdout + done.stderr
