"""Issue 24, item 3: SRs carry Specific Character Set (0008,0005) and their names read back.

Sources in ISO_IR 192 (UTF-8), ISO 2022 IR 87 (Japanese, with escape sequences), GB18030
and ISO_IR 100 (Latin-1); for each, ``score --sr`` (write_series_srs) and the node's path
(identity file in the SR state folder, then the SR) must give an SR that dciodvfy accepts
and whose names equal the source's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

pytest.importorskip("highdicom", reason="SR output needs the 'sr' extra (highdicom)")

from dicom_builders import ct_dataset, save
from sr_checks import dciodvfy_problems, needs_dciodvfy

from deltaiqa_lite.output.sr import SRModel, build_sr, write_series_srs
from deltaiqa_lite.qa.sr_node import SeriesReporter

MODEL = SRModel(name="Delta-IQA", version="0.1.0", precision="int8", sha256="cd" * 32)
STUDY = "1.2.826.0.1.3680043.8.498.4243"

CHARSETS = {
    # Specific Character Set: (PatientName, ReferringPhysicianName, StudyDescription)
    "ISO_IR 192": ("Müller^Jürgen=山田^太郎", "Ωμέγα^Δ", "Thorax ü 胸部"),
    "\\ISO 2022 IR 87": ("Yamada^Tarou=山田^太郎=やまだ^たろう", "Sato^Ken=佐藤^健", "CT chest"),
    "GB18030": ("Wang^XiaoDong=王^小东", "张^三", "胸部 CT"),
    "ISO_IR 100": ("Müller^Jürgen", "Núñez^José", "Thorax Übersicht"),
}


@dataclass
class Result:
    path: str
    sop_instance_uid: str
    series_uid: str
    score: float = 2.5
    likert: int = 2
    status: str = "ok"
    frame: int | None = None
    slice_location: float | None = None
    instance_number: int | None = None


def _source(folder: Path, charset: str) -> Path:
    name, physician, description = CHARSETS[charset]
    ds = ct_dataset(seed=3)
    ds.SpecificCharacterSet = charset.split("\\") if "\\" in charset else charset
    ds.StudyInstanceUID = STUDY
    ds.PatientID = "CHARSET-1"
    ds.PatientName = name
    ds.ReferringPhysicianName = physician
    ds.StudyDescription = description
    folder.mkdir(parents=True, exist_ok=True)
    return save(ds, folder / "source.dcm")


def _check(sr_path: Path, source_path: Path, charset: str) -> None:
    source = pydicom.dcmread(source_path, stop_before_pixels=True)
    sr = pydicom.dcmread(sr_path)
    assert "SpecificCharacterSet" in sr
    for keyword in ("PatientName", "ReferringPhysicianName", "StudyDescription"):
        assert str(sr[keyword].value) == str(source[keyword].value), keyword
    assert str(sr.PatientName) == CHARSETS[charset][0]


@needs_dciodvfy
@pytest.mark.parametrize("charset", list(CHARSETS))
def test_score_sr_keeps_names_in_every_character_set(tmp_path: Path, charset: str) -> None:
    """Item 3 (score --sr): Specific Character Set present, names equal, dciodvfy clean."""
    source = _source(tmp_path / "in", charset)
    ds = pydicom.dcmread(source, stop_before_pixels=True)
    results = [Result(str(source), str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID))]
    (outcome,) = write_series_srs(results, MODEL, tmp_path / "sr")
    assert outcome.status == "written", outcome.reason
    _check(Path(outcome.path), source, charset)
    assert dciodvfy_problems(outcome.path) == []


@needs_dciodvfy
@pytest.mark.parametrize("charset", list(CHARSETS))
def test_node_identity_file_keeps_names_in_every_character_set(tmp_path: Path,
                                                                charset: str) -> None:
    """Item 3 (serve/watch --send-sr): the identity file and the SR built from it."""
    source = _source(tmp_path / "in", charset)
    ds = pydicom.dcmread(source, stop_before_pixels=True)
    identity = tmp_path / "state" / "identity.dcm"
    identity.parent.mkdir()
    SeriesReporter._save_identity(str(source), identity)
    kept = pydicom.dcmread(identity)
    sr = build_sr([Result(str(source), str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID))],
                  kept, MODEL, sop_classes={str(ds.SOPInstanceUID): str(ds.SOPClassUID)})
    target = tmp_path / "sr.dcm"
    sr.save_as(target, enforce_file_format=True)
    _check(target, source, charset)
    assert dciodvfy_problems(target) == []
