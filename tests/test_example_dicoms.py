"""Every shipped DICOM passes dciodvfy (dicom3tools) with no errors, and the example dose report reads back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from deltaiqa_lite.read.rdsr import read_rdsr

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p for p in REPO.rglob("*.dcm")
                 if not any(part in {"build", ".git", "node_modules"} or part.startswith(".") for part in
                            p.relative_to(REPO).parts))


def test_examples_are_shipped():
    names = {p.relative_to(REPO).as_posix() for p in SHIPPED}
    assert {"examples/dose-100.dcm", "examples-dose/dose-report.dcm"} <= names


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools (dciodvfy) not installed")
@pytest.mark.parametrize("path", SHIPPED, ids=[p.relative_to(REPO).as_posix() for p in SHIPPED])
def test_shipped_dicom_passes_dciodvfy(path: Path):
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]
    assert errors == [], "\n".join(errors)


def test_example_headers_and_dose_report_agree():
    """The nominal acquisition of each example (CTDIvol = 12 mGy x dose fraction, 5 mm) is what the report says."""
    report = read_rdsr(REPO / "examples-dose" / "dose-report.dcm")
    assert report.problems == []
    images = {str(ds.SeriesDescription): ds for ds in
              (pydicom.dcmread(p, stop_before_pixels=True) for p in sorted((REPO / "examples").glob("*.dcm")))}
    assert len(report.acquisitions) == len(images) == 5
    for acquisition in report.acquisitions:
        ds = images[acquisition.protocol]
        assert report.study_instance_uid == ds.StudyInstanceUID
        assert acquisition.ctdivol_mgy == pytest.approx(float(ds.CTDIvol))
        assert acquisition.dlp_mgy_cm == pytest.approx(float(ds.CTDIvol) * float(ds.SliceThickness) / 10)
        assert ds.CTDIPhantomTypeCodeSequence[0].CodeValue == acquisition.phantom == "113691"
    assert report.total_dlp_mgy_cm == pytest.approx(sum(a.dlp_mgy_cm for a in report.acquisitions))
    dose_100 = images["synthetic dose 100% 1000 views"]
    assert float(dose_100.CTDIvol) == 12.0 and float(dose_100.KVP) == 120


def test_score_reads_the_dose_report_beside_the_images(tiny_model: Path):
    """The report is not a failed input: score exits 0 and says the exam's DLP on stderr."""
    done = subprocess.run([sys.executable, "-m", "deltaiqa_lite", "score", "--model", str(tiny_model),
                           "--format", "csv", "examples/dose-100.dcm", "examples-dose/"],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert "examples-dose/dose-report.dcm: CT dose report of study" in done.stderr
    assert "total DLP 17.1 mGy.cm, 5 CT acquisitions" in done.stderr
    assert "dose-report" not in done.stdout and "dose-100.dcm" in done.stdout


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_streaming_score_reads_the_dose_report_too(tiny_model: Path, tmp_path: Path, suffix: str):
    """Streamed to a file, the report is not a failed row either: exit 0, no row, its DLP on stderr."""
    output = tmp_path / f"scores{suffix}"
    done = subprocess.run([sys.executable, "-m", "deltaiqa_lite", "score", "--model", str(tiny_model),
                           "--output", str(output), "--no-progress", "examples/dose-100.dcm", "examples-dose/"],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert "examples-dose/dose-report.dcm: CT dose report of study" in done.stderr
    assert "total DLP 17.1 mGy.cm, 5 CT acquisitions" in done.stderr
    assert "wrote 1 slices" in done.stderr and "0 failed" in done.stderr
    written = output.read_text(encoding="utf-8")
    assert "dose-report" not in written and "dose-100.dcm" in written
