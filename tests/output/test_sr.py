"""DICOM SR (TID 1500) of scored series: content, identity, refusals, dciodvfy, read-back."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pytest

pytest.importorskip("highdicom", reason="SR output needs the 'sr' extra (highdicom)")

from dicom_builders import ct_dataset, enhanced_ct_dataset, phantom_hu, save
from pydicom.uid import UID
from sr_checks import content_items, dciodvfy_problems, needs_dciodvfy

from deltaiqa_lite import Scorer
from deltaiqa_lite.cli import main
from deltaiqa_lite.output.sr import (
    PRIVATE_SCHEME,
    SRError,
    SRModel,
    SRRefused,
    build_sr,
    file_sha256,
    model_identity,
    read_sr_values,
    sr_uids,
    write_series_srs,
)

REPO = Path(__file__).resolve().parents[2]
STUDY = "1.2.826.0.1.3680043.8.498.4242"
MODEL = SRModel(name="Delta-IQA", version="0.1.0", precision="int8", sha256="ab" * 32)


def _series(folder: Path, series_uid: str, datasets: list[pydicom.Dataset]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, ds in enumerate(datasets):
        ds.SeriesInstanceUID = series_uid
        ds.StudyInstanceUID = STUDY
        ds.PatientID = "SR-TEST-1"
        ds.StudyDate, ds.StudyTime = "20260101", "120000"
        paths.append(save(ds, folder / f"{index}.dcm"))
    return paths


@needs_dciodvfy
def test_score_sr_of_examples_matches_json_and_validates(tmp_path: Path, shipped_models: Path) -> None:
    model = shipped_models / "deltaiqa-int8.onnx"
    out, srs = tmp_path / "out.json", tmp_path / "sr"
    code = main(["score", str(REPO / "examples"), "--model", str(model), "--sr", str(srs),
                 "-o", str(out), "--no-progress"])
    assert code == 0
    report = json.loads(out.read_text())
    written = sorted(srs.glob("*.dcm"))
    assert len(written) == len(report["series"]) == 5  # the examples: one file, one series each
    sha = file_sha256(model)
    by_series = {s["series_uid"]: s for s in report["series"]}
    for path in written:
        assert dciodvfy_problems(path) == []
        ds = pydicom.dcmread(path)
        source_series = ds.CurrentRequestedProcedureEvidenceSequence[0] \
            .ReferencedSeriesSequence[0].SeriesInstanceUID
        expected = by_series.pop(source_series)
        members = [s for s in report["slices"] if s["series_uid"] == source_series]
        source = pydicom.dcmread(members[0]["path"], stop_before_pixels=True)
        # Patient and study copied from the source; a new series with the derived identity.
        assert (ds.PatientID, ds.PatientName, ds.StudyInstanceUID) == \
            (source.PatientID, source.PatientName, source.StudyInstanceUID)
        assert (ds.SeriesInstanceUID, ds.SOPInstanceUID) == sr_uids(source_series, sha)
        assert ds.SeriesInstanceUID != source_series
        assert ds.Manufacturer == "deltaiqa-lite" and ds.CompletionFlag == "COMPLETE"
        values = read_sr_values(ds)
        assert values["series"] == pytest.approx({
            "mean": expected["mean"], "median": expected["median"],
            "minimum": expected["minimum"], "p10": expected["p10"],
            "n_scored": expected["n_ok"], "n_not_scored": expected["n_failed"]}, rel=1e-12)
        assert [(s["sop_instance_uid"], s["score"], s["likert"]) for s in values["slices"]] == [
            (s["sop_instance_uid"], pytest.approx(s["score"], rel=1e-12), s["likert"])
            for s in members]
        algorithm = [item for item in content_items(ds) if getattr(item, "TextValue", None)
                     and str(item.TextValue).startswith("model_sha256=")]
        assert [str(a.TextValue) for a in algorithm][0] == f"model_sha256={sha}"
    assert by_series == {}

    # Scoring again with the same model: the same SR identity and the same values.
    again = tmp_path / "sr2"
    assert main(["score", str(REPO / "examples"), "--model", str(model), "--sr", str(again),
                 "-o", str(tmp_path / "again.json"), "--no-progress"]) == 0
    assert sorted(p.name for p in again.glob("*.dcm")) == [p.name for p in written]
    for path in written:
        assert read_sr_values(again / path.name) == read_sr_values(path)


def test_sr_uids_are_derived_valid_and_distinct() -> None:
    series, sop = sr_uids("1.2.3.4", "00" * 32)
    assert (series, sop) == sr_uids("1.2.3.4", "00" * 32)
    assert series != sop and all(UID(u).is_valid and len(u) <= 64 and u.startswith("2.25.")
                                 for u in (series, sop))
    assert sr_uids("1.2.3.5", "00" * 32)[1] != sop
    assert sr_uids("1.2.3.4", "01" + "00" * 31)[1] != sop


@needs_dciodvfy
def test_mixed_orientation_series_one_sr_with_not_scored_slice(tmp_path: Path,
                                                               tiny_model: Path) -> None:
    series = "1.2.826.0.1.3680043.8.498.101"
    tilted = (1.0, 0.0, 0.0, 0.0, 0.9659258, -0.2588190)  # 15 degree gantry tilt: still scored
    datasets = [ct_dataset(seed=1, instance_number=1, ipp=(-48, -48, 0)),
                ct_dataset(seed=2, instance_number=2, iop=tilted, ipp=(-48, -48, 3)),
                ct_dataset(seed=3, instance_number=3, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))]
    paths = _series(tmp_path / "in", series, datasets)
    scorer = Scorer(tiny_model)
    results = scorer.score_paths(paths)
    assert [r.status for r in results] == ["ok", "ok", "error"]
    assert all(r.series_uid == series for r in results)
    outcomes = write_series_srs(results, model_identity(scorer), tmp_path / "sr")
    assert [(o.series_uid, o.status) for o in outcomes] == [(series, "written")]
    assert dciodvfy_problems(outcomes[0].path) == []
    values = read_sr_values(outcomes[0].path)
    assert values["series"]["n_scored"] == 2 and values["series"]["n_not_scored"] == 1
    scored = {s["sop_instance_uid"]: s for s in values["slices"]}
    assert set(scored) == {str(d.SOPInstanceUID) for d in datasets}
    for result in results:
        entry = scored[result.sop_instance_uid]
        if result.ok:
            assert entry["score"] == pytest.approx(result.score, rel=1e-12)
            assert entry["likert"] == result.likert and entry["reason"] is None
        else:
            assert entry["score"] is None and "localizer" in entry["reason"]


def test_source_without_identity_refused_scoring_goes_on(tmp_path: Path, tiny_model: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    good, anonymous = "1.2.826.0.1.3680043.8.498.201", "1.2.826.0.1.3680043.8.498.202"
    _series(tmp_path / "in" / "a", good, [ct_dataset(seed=1)])
    paths = _series(tmp_path / "in" / "b", anonymous, [ct_dataset(seed=2)])
    ds = pydicom.dcmread(paths[0])
    del ds.PatientID
    ds.save_as(paths[0])
    out = tmp_path / "out.json"
    code = main(["score", str(tmp_path / "in"), "--model", str(tiny_model), "--sr",
                 str(tmp_path / "sr"), "-o", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1  # every slice scored, but an SR that was asked for is missing
    assert all(s["status"] == "ok" for s in json.loads(out.read_text())["slices"])
    refusal = [line for line in err.splitlines() if "SR refused" in line]
    assert refusal == [f"deltaiqa-lite: SR refused: series {anonymous}: (0010,0020) Patient ID is "
                       "missing or empty; an SR is filed under the source's patient and none is "
                       "invented"]
    assert len(list((tmp_path / "sr").glob("*.dcm"))) == 1


def test_build_refuses_without_study_and_for_several_series() -> None:
    identity = pydicom.Dataset()
    identity.PatientID = "X"

    @dataclass
    class Result:
        series_uid: str
        sop_instance_uid: str = "1.2.3"
        score: float = 2.0
        likert: int = 2
        status: str = "ok"

    with pytest.raises(SRRefused, match=r"\(0020,000D\) Study Instance UID missing"):
        build_sr([Result("1.2")], identity, MODEL, sop_classes={})
    with pytest.raises(SRRefused, match="results of 2 series"):
        build_sr([Result("1.2"), Result("1.3")], identity, MODEL, sop_classes={})


@dataclass
class PhysicsResult:
    """A slice result with the physics fields (as SliceResult gets them with the physics work)."""

    sop_instance_uid: str
    series_uid: str
    score: float
    likert: int
    frame: int | None = None
    status: str = "ok"
    noise_hu: float | None = 12.5
    water_equivalent_diameter_mm: float | None = 287.25
    ctdivol_mgy: float | None = 9.5
    ssde_mgy: float | None = 12.125
    noise_score: float | None = 2.75
    flags: list[str] = field(default_factory=lambda: ["noise above reference", "truncated body"])
    physics_note: str | None = "water-equivalent diameter from the image"


@needs_dciodvfy
def test_physics_fields_reported_when_present(tmp_path: Path) -> None:
    identity = ct_dataset()
    identity.StudyInstanceUID = STUDY
    series = "1.2.826.0.1.3680043.8.498.301"
    full = PhysicsResult("1.2.826.0.1.3680043.8.498.311", series, 3.1, 3)
    partial = PhysicsResult("1.2.826.0.1.3680043.8.498.312", series, 1.4, 1, ssde_mgy=None,
                            noise_score=None, flags=[], physics_note=None)
    classes = {full.sop_instance_uid: identity.SOPClassUID,
               partial.sop_instance_uid: identity.SOPClassUID}
    sr = build_sr([full, partial], identity, MODEL, sop_classes=classes)
    path = tmp_path / "physics.dcm"
    sr.save_as(path, enforce_file_format=True)
    assert dciodvfy_problems(path) == []
    first, second = read_sr_values(path)["slices"]
    assert first == {"sop_instance_uid": full.sop_instance_uid, "frame": None, "score": 3.1,
                     "likert": 3, "reason": None, "noise_hu": 12.5,
                     "water_equivalent_diameter_mm": 287.25, "ctdivol_mgy": 9.5,
                     "ssde_mgy": 12.125, "noise_score": 2.75,
                     "flags": ["noise above reference", "truncated body"],
                     "physics_note": "water-equivalent diameter from the image"}
    assert second == {"sop_instance_uid": partial.sop_instance_uid, "frame": None, "score": 1.4,
                      "likert": 1, "reason": None, "noise_hu": 12.5,
                      "water_equivalent_diameter_mm": 287.25, "ctdivol_mgy": 9.5,
                      "flags": [], "physics_note": None}
    # Standard codes where they exist: WED, CTDIvol and SSDE are DCM concepts.
    names = {(str(i.ConceptNameCodeSequence[0].CodingSchemeDesignator),
              str(i.ConceptNameCodeSequence[0].CodeValue)) for i in content_items(sr)
             if i.ValueType == "NUM"}
    assert {("DCM", "113980"), ("DCM", "113830"), ("DCM", "113930"),
            (PRIVATE_SCHEME, "DIQA010")} <= names


@needs_dciodvfy
def test_enhanced_ct_frames_are_referenced(tmp_path: Path, tiny_model: Path) -> None:
    ds = enhanced_ct_dataset([phantom_hu(seed=i) for i in range(3)])
    ds.PatientID, ds.StudyInstanceUID = "SR-TEST-2", STUDY
    path = save(ds, tmp_path / "enhanced.dcm")
    scorer = Scorer(tiny_model)
    results = scorer.score_paths([path])
    outcomes = write_series_srs(results, model_identity(scorer), tmp_path / "sr")
    assert dciodvfy_problems(outcomes[0].path) == []
    slices = read_sr_values(outcomes[0].path)["slices"]
    assert [(s["sop_instance_uid"], s["frame"]) for s in slices] == [
        (str(ds.SOPInstanceUID), r.frame) for r in results] == [
        (str(ds.SOPInstanceUID), i) for i in range(3)]
    references = [i.ReferencedSOPSequence[0] for i in content_items(pydicom.dcmread(outcomes[0].path))
                  if i.ValueType == "IMAGE"]
    assert {str(r.ReferencedSOPInstanceUID) for r in references} == {str(ds.SOPInstanceUID)}
    assert sorted(int(r.ReferencedFrameNumber) for r in references) == [1, 2, 3]


def test_missing_highdicom_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from deltaiqa_lite.output.sr import _hd

    monkeypatch.setitem(sys.modules, "highdicom", None)
    with pytest.raises(SRError, match=r"^DICOM SR output needs highdicom: pip install "
                                      r"'deltaiqa-lite\[sr\]'$"):
        _hd()


def test_flags_as_the_qa_log_stores_them_are_split() -> None:
    identity = ct_dataset()
    identity.StudyInstanceUID = STUDY
    result = PhysicsResult("1.2.826.0.1.3680043.8.498.321", "1.2.826.0.1.3680043.8.498.302",
                           2.0, 2, flags="streaks;low dose")  # as the QA log's flags column holds them
    sr = build_sr([result], identity, MODEL,
                  sop_classes={result.sop_instance_uid: identity.SOPClassUID})
    assert read_sr_values(sr)["slices"][0]["flags"] == ["streaks", "low dose"]


def test_inputs_without_dicom_series_are_named_not_dropped(tmp_path: Path, tiny_model: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    import numpy as np

    np.save(tmp_path / "slice.npy", phantom_hu())
    paths = _series(tmp_path / "in", "1.2.826.0.1.3680043.8.498.401", [ct_dataset(seed=4)])
    code = main(["score", str(tmp_path / "slice.npy"), str(paths[0]), "--model", str(tiny_model),
                 "--sr", str(tmp_path / "sr"), "--format", "csv", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0
    assert "deltaiqa-lite: SR skipped: 1 slice(s) without a DICOM Series Instance UID (not DICOM, " \
           "or unreadable) are in no SR" in err.splitlines()
    assert len(list((tmp_path / "sr").glob("*.dcm"))) == 1
