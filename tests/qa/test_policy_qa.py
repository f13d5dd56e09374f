"""The selection policy on the QA node: refused kinds per series in the log and the report."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from qa_builders import ct_dataset

from deltaiqa_lite.cli import main
from deltaiqa_lite.qa.log import QALog, migrate

SERIES = "1.2.826.0.1.3680043.8.498.77"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def _write(path: Path, image_type: tuple[str, ...], instance: int, **kwargs) -> None:
    ds = ct_dataset(series_uid=SERIES, instance=instance, seed=instance, **kwargs)
    ds.ImageType = list(image_type)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _inbox(folder: Path) -> Path:
    """One series as a scanner routes it: 2 axial slices, a scout, 2 MIPs and a dose screen."""
    _write(folder / "ax1.dcm", ("ORIGINAL", "PRIMARY", "AXIAL"), 1)
    _write(folder / "ax2.dcm", ("DERIVED", "SECONDARY", "AXIAL"), 2)
    _write(folder / "scout.dcm", ("ORIGINAL", "PRIMARY", "LOCALIZER"), 3)
    _write(folder / "mip1.dcm", ("DERIVED", "SECONDARY", "MIP"), 4)
    _write(folder / "mip2.dcm", ("DERIVED", "SECONDARY", "MIP"), 5)
    _write(folder / "dose.dcm", ("DERIVED", "SECONDARY", "SCREEN SAVE"), 6, sop_class=SECONDARY_CAPTURE)
    return folder


def _watch(tmp_path: Path, tiny_model: Path, *extra: str) -> tuple[int, Path]:
    log = tmp_path / "qa.sqlite"
    code = main(["watch", str(_inbox(tmp_path / "inbox")), "--once", "--settle", "0.1",
                 "--model", str(tiny_model), "--log", str(log), "-q", *extra])
    return code, log


def test_watch_counts_refused_kinds_per_series(tmp_path: Path, tiny_model: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    code, log = _watch(tmp_path, tiny_model)
    assert code == 1  # refused inputs make --once exit 1
    assert "scored 2 files (2 slices), refused 4, failed 0" in capsys.readouterr().err
    with QALog(log) as qa:
        refused = {r.file_name: (r.refused_kind, r.reason) for r in qa.slices(status="refused")}
        assert {name: kind for name, (kind, _) in refused.items()} == {
            "scout.dcm": "localizer", "mip1.dcm": "MIP", "mip2.dcm": "MIP", "dose.dcm": "secondary capture"}
        assert refused["mip1.dcm"][1].startswith("(0008,0008) Image Type is 'DERIVED\\SECONDARY\\MIP'; "
                                                 "a maximum intensity projection")
        assert not qa.slices(status="error")
        (series,) = qa.series()
        assert (series.n_slices, series.n_refused, series.n_error) == (2, 4, 0)
        assert series.refused_kinds == "MIP=2; localizer=1; secondary capture=1"
        assert series.refused_counts == {"MIP": 2, "localizer": 1, "secondary capture": 1}

    assert main(["report", "--log", str(log)]) == 0
    table = capsys.readouterr().out
    assert "refused images (selection policy) in 1 series: MIP 2, localizer 1, secondary capture 1" in table
    assert f"{SERIES} ABDOMEN 3mm (2 scored): MIP 2, localizer 1, secondary capture 1" in table
    assert main(["report", "--log", str(log), "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["refused_totals"] == {"MIP": 2, "localizer": 1, "secondary capture": 1}
    assert document["refused"][0]["series_uid"] == SERIES and document["refused"][0]["n_scored"] == 2
    html = tmp_path / "report.html"
    assert main(["report", "--log", str(log), "--format", "html", "-o", str(html)]) == 0
    assert "Refused images (selection policy)" in html.read_text(encoding="utf-8")


def test_watch_accept_scores_on_purpose_and_logs_the_override(tmp_path: Path, tiny_model: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    code, log = _watch(tmp_path, tiny_model, "--accept", "MIP", "--accept", "localizer")
    assert code == 1  # the dose screen is still refused
    with QALog(log) as qa:
        overrides = {r.file_name: r.policy_override for r in qa.slices(status="ok")}
        assert overrides == {"ax1.dcm": None, "ax2.dcm": None, "scout.dcm": "LOCALIZER",
                             "mip1.dcm": "MIP", "mip2.dcm": "MIP"}
        (series,) = qa.series()
        assert series.n_slices == 5 and series.refused_kinds == "secondary capture=1"


def test_migration_backfills_kinds_of_old_refusals(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, target=2) == 2
    conn.execute("INSERT INTO slices (scored_at, source, series_uid, sop_instance_uid, status, sop_class_uid, "
                 "modality, reason) VALUES "
                 f"('2024-01-01T00:00:00', 'serve', '9.9', '9.9.1', 'refused', '{SECONDARY_CAPTURE}', 'CT', 'sc'), "
                 "('2024-01-01T00:00:01', 'serve', '9.9', '9.9.2', 'refused', '1.2.840.10008.5.1.4.1.1.4', 'MR', "
                 "'mr'), "
                 "('2024-01-01T00:00:02', 'serve', '9.9', '9.9.3', 'ok', '1.2.840.10008.5.1.4.1.1.2', 'CT', NULL)")
    conn.close()
    with QALog(path) as qa:
        kinds = [r.refused_kind for r in qa.slices()]
        assert kinds == ["secondary capture", "not CT", None]
        (series,) = qa.series()
        assert series.refused_kinds == "not CT=1; secondary capture=1"


def test_refused_enhanced_object_counts_its_frames(tmp_path: Path, tiny_model: Path) -> None:
    from dicom_builders import enhanced_ct_dataset, phantom_hu
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    from deltaiqa_lite import Scorer
    from deltaiqa_lite.qa.ingest import REFUSED, Ingestor

    ds = enhanced_ct_dataset([phantom_hu(seed=s) for s in range(3)], series_uid=SERIES)
    frame_type = Dataset()
    frame_type.FrameType = ["DERIVED", "PRIMARY", "AXIAL", "MAXIMUM"]
    ds.SharedFunctionalGroupsSequence[0].CTImageFrameTypeSequence = DicomSequence([frame_type])
    path = tmp_path / "mip-slab.dcm"
    ds.save_as(path, enforce_file_format=True)
    with QALog(tmp_path / "qa.sqlite") as qa:
        (outcome,) = Ingestor(Scorer(str(tiny_model), threads=1), qa, source="watch").process([str(path)])
        assert outcome.status == REFUSED
        assert outcome.reason.startswith("(0008,9007) Frame Type of frame 1/3 is "
                                         "'DERIVED\\PRIMARY\\AXIAL\\MAXIMUM'; a maximum intensity projection")
        assert [(r.frame, r.refused_kind) for r in qa.slices()] == [(0, "MIP"), (1, "MIP"), (2, "MIP")]
        assert qa.series()[0].refused_kinds == "MIP=3"
