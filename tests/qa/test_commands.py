"""The watch and report subcommands through deltaiqa_lite.cli.main."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from PIL import Image
from qa_builders import MR_IMAGE_STORAGE, write_ct
from qa_generate import generate_log

from deltaiqa_lite.cli import main
from deltaiqa_lite.qa.log import QALog


@pytest.fixture(scope="module")
def drift_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "qa.sqlite"
    generate_log(path, drift_day=60, drift=-0.4)
    return path


def test_report_table(drift_log: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["report", "--log", str(drift_log)]) == 0
    out = capsys.readouterr().out
    assert "CT1 / ABDOMEN / B30f" in out and "out-of-control" in out
    assert "OUT OF CONTROL CT1 / ABDOMEN / B30f: first flag 2024-03-01" in out
    assert "CT2 / THORAX / B70f" in out


def test_report_formats_and_pngs(drift_log: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture) -> None:
    assert main(["report", "--log", str(drift_log), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["out_of_control"] == ["CT1 / ABDOMEN / B30f"]
    assert main(["report", "--log", str(drift_log), "--format", "csv", "--station", "CT2",
                 "--since", "2024-03-01"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows and {r["station_name"] for r in rows} == {"CT2"}
    assert min(r["time"] for r in rows) >= "2024-03-01"
    html_path = tmp_path / "report.html"
    assert main(["report", "--log", str(drift_log), "--format", "html", "-o", str(html_path),
                 "--png-dir", str(tmp_path / "png")]) == 0
    assert html_path.read_text().count("data:image/png;base64,") == 2
    pngs = sorted(p.name for p in (tmp_path / "png").glob("*.png"))
    assert pngs == ["CT1_ABDOMEN_B30f.png", "CT2_THORAX_B70f.png"]
    assert Image.open(tmp_path / "png" / pngs[0]).size == (960, 380)


def test_report_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["report", "--log", str(tmp_path / "missing.sqlite")]) == 2
    assert "missing.sqlite: no such QA log" in capsys.readouterr().err
    assert main(["report", "--since", "last tuesday"]) == 2
    assert "expected an ISO date" in capsys.readouterr().err


def test_watch_once(tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture) -> None:
    inbox = tmp_path / "inbox"
    for i in range(3):
        write_ct(inbox / f"{i}.dcm", series_uid="1.2.826.0.1.3680043.8.498.31", instance=i + 1,
                 seed=i)
    write_ct(inbox / "mr.dcm", modality="MR", sop_class=MR_IMAGE_STORAGE)
    log = tmp_path / "qa.sqlite"
    salt = tmp_path / "salt"
    salt.write_text("a-long-site-secret-0123456789")
    argv = ["watch", str(inbox), "--once", "--settle", "0.1", "--model", str(tiny_model),
            "--log", str(log), "--archive", str(tmp_path / "archive"),
            "--patient-id-salt-file", str(salt)]
    assert main(argv) == 1  # one input refused
    err = capsys.readouterr().err
    assert "scored 3 files (3 slices), refused 1" in err
    assert "mr.dcm: refused: (0008,0016) SOP Class UID is 'MR Image Storage'" in err
    with QALog(log) as qa:
        rows = qa.slices(status="ok")
        assert len(rows) == 3 and len({r.patient_hash for r in rows}) == 1
        assert rows[0].patient_hash and len(rows[0].patient_hash) == 64
        dump = repr(qa.execute("SELECT * FROM slices")) + repr(qa.execute("SELECT * FROM series"))
    assert "PID-12345" not in dump and "DOE" not in dump and "19700101" not in dump
    assert sorted(p.name for p in (tmp_path / "archive").rglob("*.dcm")) == [
        "0.dcm", "1.dcm", "2.dcm", "mr.dcm"]
    # Run again: nothing left, nothing scored twice.
    assert main(argv) == 0
    assert "scored 0 files" in capsys.readouterr().err


def test_short_salt_refused(tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture) -> None:
    salt = tmp_path / "salt"
    salt.write_text("short")
    assert main(["watch", str(tmp_path), "--once", "--model", str(tiny_model),
                 "--patient-id-salt-file", str(salt)]) == 2
    assert "salt must be at least 16 bytes" in capsys.readouterr().err
