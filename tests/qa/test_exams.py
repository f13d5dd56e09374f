"""Per-exam measure from the QA log: migration 6, report --exams against hand-computed values, RDSR via serve."""

from __future__ import annotations

import json
import shutil
import sqlite3
import statistics
import subprocess
from pathlib import Path

import pydicom
import pytest

from convert.checks.rdsr import Acquisition, ct_dose_report
from deltaiqa_lite.cli import main
from deltaiqa_lite.physics.exam import load_category_rules
from deltaiqa_lite.qa import exams as measure
from deltaiqa_lite.qa.log import SCHEMA_VERSION, DoseReportRow, QALog, SliceRecord, migrate

STUDY_A = "2.25.1001"    # abdomen, with a dose report
STUDY_B = "2.25.1002"    # chest, DLP estimated from the slices
STUDY_C = "2.25.1003"    # a phantom nobody mapped


def slice_row(study: str, series: str, number: int, *, z: float, noise: float | None, dw: float | None,
              ctdivol: float = 10.0, description: str = "ABDOMEN PELVIS", when: str = "2024-03-05T10:00:00",
              thickness: float = 5.0, station: str = "CT1") -> SliceRecord:
    return SliceRecord(source="serve", status="ok", study_uid=study, series_uid=series,
                       sop_instance_uid=f"{series}.{number}", acquisition_datetime=when, station_name=station,
                       series_description=description, study_description=description, ctdivol_mgy=ctdivol,
                       slice_thickness_mm=thickness, slice_location=z, noise_hu=noise,
                       water_equivalent_diameter_mm=dw, score=2.5, likert=2, label="fair")


def fixture_log(path: Path) -> dict:
    """Three exams; returns the values computed by hand."""
    a_noise = [12.0, 14.0, None, 35.0, 13.0]           # median of the four values: 13.5
    a_dw = [280.0, 300.0, 310.0, 305.0, 290.0]          # z 0..40 every 10 mm: middle z = 20 -> 310
    b_noise = [48.0, 52.0, 50.0]                        # median 50 -> >= 49: Chest Routine out
    rows = [slice_row(STUDY_A, "2.25.1001.1", i, z=10.0 * i, noise=n, dw=d) for i, (n, d) in
            enumerate(zip(a_noise, a_dw))]
    # A second, smaller series of study A (a scout-like recon): not the diagnostic series.
    rows += [slice_row(STUDY_A, "2.25.1001.2", i, z=5.0 * i, noise=90.0, dw=100.0) for i in range(2)]
    rows += [slice_row(STUDY_B, "2.25.1002.1", i, z=-7.5 * i, noise=n, dw=320.0, ctdivol=c,
                       description="CT CHEST", when="2024-04-02T09:00:00", thickness=2.5)
             for i, (n, c) in enumerate(zip(b_noise, [6.0, 8.0, 10.0]))]
    rows += [slice_row(STUDY_C, "2.25.1003.1", 0, z=0.0, noise=5.0, dw=200.0, description="=QA <phantom>",
                       when="2024-04-03T09:00:00", station="CT2")]
    with QALog(path) as log:
        log.record(rows)
        assert log.record_dose_report(DoseReportRow(source="serve", study_uid=STUDY_A, sop_instance_uid="2.25.9",
                                                    total_dlp_mgy_cm=612.5, n_acquisitions=1),
                                      [{"protocol": "Abdomen routine", "ctdivol_mgy": 10.0, "dlp_mgy_cm": 612.5}])
        assert not log.record_dose_report(DoseReportRow(source="serve", study_uid=STUDY_A, sop_instance_uid="2.25.9"))
    return {
        "a_noise": statistics.median([n for n in a_noise if n is not None]), "a_dw": 310.0, "a_dlp": 612.5,
        "b_noise": 50.0,
        # mean CTDIvol 8 mGy x (15 mm z range + 2.5 mm thickness) = 8 x 1.75 cm
        "b_dlp": 8.0 * 1.75,
    }


def test_report_exams_matches_hand_computed_values(tmp_path: Path, capsys):
    log = tmp_path / "qa.sqlite"
    expected = fixture_log(log)
    assert main(["report", "--exams", "--log", str(log), "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    exams = {e["study_uid"]: e for e in document["exams"]}
    a, b, c = exams[STUDY_A], exams[STUDY_B], exams[STUDY_C]
    assert a["category"] == "Abdomen and Pelvis Routine Dose" and a["series_uid"] == "2.25.1001.1"
    assert a["noise_hu"] == pytest.approx(expected["a_noise"]) and a["dw_middle_mm"] == expected["a_dw"]
    assert a["dlp_mgy_cm"] == expected["a_dlp"] and a["dlp_source"] == "RDSR"
    assert a["size_adjusted_dose_mgy_cm"] is None and a["status"] == "unknown"   # 13.5 < 29, SAD unknown
    assert b["category"] == "Chest Routine Dose" and b["noise_hu"] == expected["b_noise"]
    assert b["dlp_mgy_cm"] == pytest.approx(expected["b_dlp"]) and b["dlp_source"].startswith("estimated")
    assert b["status"] == "out" and b["reasons"] == ["noise 50.0 HU >= 49 HU"]
    assert c["category"] == "uncategorized" and document["uncategorized"] == ["=QA <phantom>"]
    shares = {(s["group_by"], s["group"], s["month"]): s for s in document["share_out_of_range"]}
    assert shares[("category", "Chest Routine Dose", "2024-04")]["share_out"] == 1.0
    assert shares[("station", "CT1", "2024-03")]["n_unknown"] == 1
    assert shares[("station", "CT1", "2024-03")]["share_out"] is None


def test_report_exams_csv_table_html_fhir_png(tmp_path: Path, capsys):
    log = tmp_path / "qa.sqlite"
    fixture_log(log)
    assert main(["report", "--exams", "--log", str(log), "--format", "csv"]) == 0
    csv_text = capsys.readouterr().out
    assert "'=QA <phantom>" in csv_text          # a formula in a description is defused
    assert main(["report", "--exams", "--log", str(log)]) == 0
    table = capsys.readouterr().out
    assert "uncategorized exams (1 descriptions" in table and "Chest Routine Dose" in table
    assert main(["report", "--exams", "--log", str(log), "--format", "html", "--png-dir",
                 str(tmp_path / "png")]) == 0
    html = capsys.readouterr().out
    assert "&lt;phantom&gt;" in html and "<phantom>" not in html
    assert (tmp_path / "png" / "exams_category_Chest-Routine-Dose.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["report", "--exams", "--log", str(log), "--format", "fhir"]) == 0
    bundle = json.loads(capsys.readouterr().out)
    assert bundle["resourceType"] == "Bundle" and len(bundle["entry"]) == 2     # the uncategorized one is left out
    chest = [e["resource"] for e in bundle["entry"]
             if e["resource"]["valueCodeableConcept"]["coding"][0]["code"] == "LA31759-6"][0]
    noise, sad = chest["component"]
    assert noise["code"]["coding"][0]["code"] == "96912-1"
    assert noise["valueQuantity"] == {"value": 50.0, "unit": "[hnsf'U]", "system": "http://unitsofmeasure.org",
                                      "code": "[hnsf'U]"}
    assert sad["code"]["coding"][0]["code"] == "96913-9" and sad["dataAbsentReason"]["coding"][0]["code"] == "unknown"


def test_site_category_file_and_bad_one(tmp_path: Path, capsys):
    log = tmp_path / "qa.sqlite"
    fixture_log(log)
    site = tmp_path / "site.toml"
    site.write_text('[[rule]]\ncategory = "Extremity"\nwords = ["qa phantom"]\n')
    assert main(["report", "--exams", "--log", str(log), "--categories", str(site), "--format", "json"]) == 0
    exams = {e["study_uid"]: e for e in json.loads(capsys.readouterr().out)["exams"]}
    assert exams[STUDY_C]["category"] == "Extremity" and exams[STUDY_A]["category"] == "uncategorized"
    site.write_text("[[rule]]\ncategory = 'Knee'\nwords = ['knee']\n")
    assert main(["report", "--exams", "--log", str(log), "--categories", str(site)]) == 2
    assert "site.toml: rule 1 has category 'Knee'" in capsys.readouterr().err


def test_version_5_log_upgrades_in_place(tmp_path: Path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, target=5) == 5
    conn.execute("INSERT INTO slices (scored_at, source, status, study_uid, series_uid, sop_instance_uid, noise_hu) "
                 "VALUES ('2024-01-01T00:00:00', 'watch', 'ok', '2.25.5', '2.25.5.1', '2.25.5.1.1', 11.0)")
    conn.close()
    with QALog(path) as log:
        assert log.schema_version == SCHEMA_VERSION
        (row,) = log.slices()
        assert row.noise_hu == 11.0 and row.study_description is None
        assert log.dose_reports() == []
        assert log.record_dose_report(DoseReportRow(source="watch", study_uid="2.25.5", total_dlp_mgy_cm=100.0))
        exams = measure.exam_rows(log, load_category_rules())
    assert exams[0].dlp_mgy_cm == 100.0 and exams[0].category == "uncategorized"


def test_rdsr_sent_with_storescu_gives_the_exam_dlp(tmp_path: Path, tiny_model: Path):
    """A dose report made here passes dciodvfy, goes to a real serve with DCMTK storescu, and gives the exam DLP."""
    from qa_builders import write_ct
    from benchmarks.node import dcmtk_tool
    from test_serve import ServeProcess

    storescu, dciodvfy = dcmtk_tool("storescu"), shutil.which("dciodvfy")
    if storescu is None or dciodvfy is None:
        pytest.skip("DCMTK storescu and dicom3tools dciodvfy needed")
    study = "1.2.826.0.1.3680043.8.498.4242"
    images = [tmp_path / "in" / f"ct{i}.dcm" for i in range(2)]
    for i, path in enumerate(images):
        write_ct(path, study_uid=study, series_uid=study + ".1", instance=i + 1, seed=i)
    report = tmp_path / "in" / "rdsr.dcm"
    pydicom.dcmwrite(report, ct_dose_report(study_uid=study, series_uid=study + ".99", instance_uid=study + ".99.1",
                                            acquisitions=[Acquisition("Abdomen", ("818981001", "SCT", "Abdomen"),
                                                                      9.5, 432.1, 450.0)]),
                     enforce_file_format=True)
    check = subprocess.run([dciodvfy, str(report)], capture_output=True, text=True, timeout=60)
    assert [line for line in (check.stdout + check.stderr).splitlines() if line.startswith("Error")] == []
    server = ServeProcess(tmp_path, tiny_model, "--allow", "SCANNER", "--store", str(tmp_path / "store"))
    try:
        sent = subprocess.run([storescu, "-aet", "SCANNER", "-aec", "DELTAIQA", server.host, str(server.port),
                               str(report), *map(str, images)], capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
        server.wait_logged(2)
        for _ in range(100):
            with QALog(server.log) as log:
                if log.dose_reports():
                    break
            subprocess.run(["sleep", "0.1"])
    finally:
        code, err = server.stop()
    assert code == 0, err
    assert "dose reports 1" in err
    with QALog(server.log) as log:
        (row,) = log.dose_reports(study_uid=study)
        assert row.total_dlp_mgy_cm == pytest.approx(432.1) and row.n_acquisitions == 1 and row.problems is None
        assert log.dose_acquisitions(row.sop_instance_uid)[0]["ctdivol_mgy"] == pytest.approx(9.5)
        (exam,) = measure.exam_rows(log, load_category_rules())
    assert exam.study_uid == study and exam.dlp_mgy_cm == pytest.approx(432.1) and exam.dlp_source == "RDSR"
    assert exam.category == "Abdomen and Pelvis Routine Dose"
    assert list((tmp_path / "store").rglob("*.dcm"))   # the report is kept with the study


def test_ingest_partial_report_non_dose_sr_and_resend(tmp_path: Path):
    """Partial report: stored with its problems; an Enhanced SR that is no dose report: refused; resend: duplicate."""
    from deltaiqa_lite.qa.ingest import DOSE, DUPLICATE, REFUSED, Ingestor
    from deltaiqa_lite.read.rdsr import ENHANCED_SR

    def write(ds, name):
        path = tmp_path / name
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        return str(path)

    acquisitions = [Acquisition("Chest", ("51185008", "SCT", "Chest"), 7.0, 280.0, 400.0)]
    partial = write(ct_dose_report(study_uid="2.25.71", series_uid="2.25.72", instance_uid="2.25.73",
                                   acquisitions=acquisitions, include_total=False), "partial.dcm")
    other = ct_dose_report(study_uid="2.25.81", series_uid="2.25.82", instance_uid="2.25.83", acquisitions=acquisitions)
    other.SOPClassUID = other.file_meta.MediaStorageSOPClassUID = ENHANCED_SR
    other.ConceptNameCodeSequence[0].CodeValue = "126000"
    other_path = write(other, "other.dcm")
    with QALog(tmp_path / "qa.sqlite") as log:
        ingestor = Ingestor(scorer=None, log=log, source="watch")
        first, second = ingestor.process([partial, other_path])
        again, = ingestor.process([partial])
        assert first.status == DOSE and "no (113811) CT Accumulated Dose Data" in first.reason
        assert second.status == REFUSED and "not an X-Ray Radiation Dose SR" in second.reason
        assert again.status == DUPLICATE
        (row,) = log.dose_reports()
        assert row.study_uid == "2.25.71" and row.total_dlp_mgy_cm == pytest.approx(280.0)
        assert "sum of the acquisitions" in row.problems and row.file_name == "partial.dcm"
        (refused,) = log.slices(status="refused")
        assert refused.sop_instance_uid == "2.25.83" and refused.refused_kind == "not CT"


def test_dose_reports_and_exams_on_both_backends(log_target: str):
    """The dose-report tables, their writer and the per-exam rows work on SQLite and on PostgreSQL."""
    with QALog(log_target) as log:
        log.record([SliceRecord(source="watch", status="ok", study_uid="2.25.77", series_uid="2.25.77.1",
                                sop_instance_uid="2.25.77.1.1", noise_hu=21.0, score=3.0)])
        assert log.record_dose_report(DoseReportRow(source="serve", study_uid="2.25.77", sop_instance_uid="2.25.78",
                                                    total_dlp_mgy_cm=345.5, n_acquisitions=2),
                                      [{"protocol": "Chest", "ctdivol_mgy": 8.0, "dlp_mgy_cm": 200.0},
                                       {"protocol": "Chest", "ctdivol_mgy": 6.0, "dlp_mgy_cm": 145.5}])
        assert not log.record_dose_report(DoseReportRow(source="serve", study_uid="2.25.77",
                                                        sop_instance_uid="2.25.78"))
        assert [r.total_dlp_mgy_cm for r in log.dose_reports(study_uid="2.25.77")] == [345.5]
        assert [a["dlp_mgy_cm"] for a in log.dose_acquisitions("2.25.78")] == [200.0, 145.5]
        (exam,) = measure.exam_rows(log, load_category_rules())
    assert exam.dlp_mgy_cm == 345.5 and exam.noise_hu == 21.0
