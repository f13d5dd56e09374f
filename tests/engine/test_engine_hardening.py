"""Issue 24: streaming runs under hostile names and interruptions.

Items covered: 2 (file names that are not valid UTF-8, every writer), 5 (``.csv --resume``
with a newline in a path; ``.parquet`` killed during its cleanup, then ``--resume``).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import shutil
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from deltaiqa_lite.cli import main
from deltaiqa_lite.engine import score_to_file
from deltaiqa_lite.engine.local import LocalEngine
from deltaiqa_lite.engine.output import open_writer
from deltaiqa_lite.read.names import path_from_display
from deltaiqa_lite.score import Scorer
from dicom_builders import ct_dataset, phantom_hu, save

needs_pyarrow = pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None,
                                   reason=".parquet needs pyarrow (the 'ray' extra)")
SUFFIXES = [".jsonl", ".csv", pytest.param(".parquet", marks=needs_pyarrow)]


@pytest.fixture(scope="module")
def scorer(tiny_model):
    return Scorer(tiny_model, provider="cpu", batch_size=4)


def _raw(folder: Path, name: bytes) -> Path:
    return Path(os.fsdecode(os.path.join(os.fsencode(folder), name)))


@pytest.fixture
def hostile(tmp_path):
    """One series: a plain name, a Latin-1 name, a name with a newline; plus a broken file
    with an undecodable name (its error message carries the name too)."""
    root = tmp_path / "in"
    root.mkdir()
    series = generate_uid()
    names = [b"plain.dcm", b"M\xfcller.dcm", b"two\nlines.dcm"]
    files = [save(ct_dataset(phantom_hu(seed=k), series_uid=series, ipp=(0, 0, k),
                             instance_number=k + 1), _raw(root, name))
             for k, name in enumerate(names)]
    broken = _raw(root, b"\xff\xfe.dcm")
    broken.write_bytes(b"not DICOM at all")
    return root, files + [broken]


def _read_paths(target: Path) -> list[str]:
    if target.suffix == ".jsonl":
        return [json.loads(line)["path"] for line in target.read_text().splitlines()
                if json.loads(line)["type"] == "slice"]
    if target.suffix == ".csv":
        with open(target, encoding="utf-8", newline="") as stream:
            return [row["path"] for row in csv.DictReader(stream)]
    import pyarrow.parquet as pq
    return pq.read_table(target, columns=["path"]).column("path").to_pylist()


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_non_utf8_names_written_escaped_and_resumed(tmp_path, hostile, scorer, suffix):
    """Items 2 and 5: every writer takes any file name; --resume finds every row again."""
    root, files = hostile
    target = tmp_path / f"run{suffix}"
    summary = score_to_file([root], target, LocalEngine(scorer))
    assert summary.slices_written == 4 and summary.n_failed == 1
    paths = _read_paths(target)
    assert sorted(path_from_display(p) for p in paths) == sorted(str(f) for f in files)
    assert any("M\\xfcller.dcm" in p for p in paths) and any("\n" in p for p in paths)
    again = score_to_file([root], target, LocalEngine(scorer), resume=True)
    assert again.files_skipped == 4 and again.slices_written == 0
    assert sorted(_read_paths(target)) == sorted(paths)  # no row twice
    assert sum(s.n_slices for s in again.series) == 4


def test_csv_resume_with_newline_in_path_after_interrupt(tmp_path, hostile, scorer):
    """Item 5: a quoted path holding a newline is one row to --resume (was KeyError 'frame')."""
    root, files = hostile
    target = tmp_path / "run.csv"
    score_to_file([root], target, LocalEngine(scorer))
    text = target.read_bytes()
    lines = text.split(b"\n")
    # Cut inside the last row, as a kill mid-write would.
    target.write_bytes(text[: len(text) - len(lines[-2]) // 2 - 1])
    writer = open_writer(target, resume=True)
    done = writer.done_keys()
    writer.abort()
    assert len(done) == 3
    again = score_to_file([root], target, LocalEngine(scorer), resume=True)
    assert again.slices_written == 1
    assert len(_read_paths(target)) == 4


@needs_pyarrow
def test_parquet_killed_during_cleanup_then_resume_writes_no_row_twice(tmp_path, hostile, scorer):
    """Item 5: the merged file plus leftover parts (kill -9 inside close) must not double."""
    root, _ = hostile
    target = tmp_path / "run.parquet"
    writer = open_writer(target)
    rows = list(scorer.iter_score_paths([root]))
    writer.write(rows)
    writer.abort()  # flushes the part files
    parts = target.with_name(target.name + ".parts")
    kept = tmp_path / "parts-copy"
    shutil.copytree(parts, kept)
    writer = open_writer(target, resume=True)
    writer.close()
    # What a kill -9 between the merge and the removal of the parts leaves behind.
    shutil.copytree(kept, parts)
    summary = score_to_file([root], target, LocalEngine(scorer), resume=True)
    assert summary.slices_written == 0
    assert len(_read_paths(target)) == 4
    assert sum(s.n_slices for s in summary.series) == 4


def test_score_to_stdout_with_non_utf8_names(tmp_path, hostile, tiny_model, capsysbinary):
    """Item 2: json, jsonl, csv and table output on stdout take the names too."""
    root, _ = hostile
    for fmt in ("json", "jsonl", "csv", "table"):
        code = main(["score", str(root), "--model", str(tiny_model), "--provider", "cpu",
                     "--format", fmt])
        out = capsysbinary.readouterr().out.decode("utf-8")
        assert code == 1
        assert "M\\\\xfcller.dcm" in out if fmt in ("json", "jsonl") else "M\\xfcller.dcm" in out


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv", ".parquet"])
def test_output_folder_or_missing_parent_is_one_line_exit_2_before_scoring(
        tmp_path, hostile, tiny_model, capsys, suffix):
    """Item 7: --output naming a folder or a file in a missing folder: one line, exit 2,
    and nothing scored (checked before the model is even loaded)."""
    root, _ = hostile
    folder = tmp_path / f"out{suffix}"
    folder.mkdir()
    missing = tmp_path / "no" / "such" / f"out{suffix}"
    for target, message in ((folder, "is a folder; give a file name"),
                            (missing, f"folder {missing.parent} does not exist")):
        code = main(["score", str(root), "--model", str(tmp_path / "never-loaded.onnx"),
                     "-o", str(target)])
        err = capsys.readouterr().err
        assert code == 2
        assert err.strip().splitlines() == [f"deltaiqa-lite: error: --output {target}: {message}"]


def test_manifest_duplicates_and_aliases_scored_once_and_reported(tmp_path, tiny_model, capsys):
    """Item 8: the same file as ./a, a, /abs/a, twice in a manifest and once more on the
    command line is one row; every repeat is reported on stderr; series counts stay true."""
    root = tmp_path / "in"
    root.mkdir()
    series = generate_uid()
    for k in range(2):
        save(ct_dataset(phantom_hu(seed=k), series_uid=series, ipp=(0, 0, k),
                        instance_number=k + 1), root / f"{k}.dcm")
    manifest = root / "list.txt"
    manifest.write_text(f"0.dcm\n./0.dcm\n{root / '0.dcm'}\n1.dcm\n1.dcm\n")
    target = tmp_path / "run.jsonl"
    code = main(["score", str(manifest), str(root / "1.dcm"), "--model", str(tiny_model),
                 "--provider", "cpu", "-o", str(target)])
    err = capsys.readouterr().err
    assert code == 0, err
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    slices = [r for r in rows if r["type"] == "slice"]
    assert sorted(os.path.basename(r["path"]) for r in slices) == ["0.dcm", "1.dcm"]
    (summary,) = [r for r in rows if r["type"] == "series"]
    assert summary["n_slices"] == 2
    repeats = [line for line in err.splitlines() if "given again" in line]
    assert len(repeats) == 4
    assert f"{manifest} entry 2" in repeats[0] and "command line" in repeats[-1]


def _hostile_result(path: str, error: str | None = None):
    from deltaiqa_lite.score import SliceResult

    return SliceResult(path=path, frame=None, status="error", error=error)


def test_score_csv_neutralises_formulas_and_resumes(tmp_path, scorer):
    """Item 8: CSV cells from file names and messages that start with = + - @ are written
    with a leading ' (numbers are not); --resume reads the paths back exactly; the
    switch keeps them raw."""
    from deltaiqa_lite.output.write import csv_row, neutralise_cell, restore_cell

    root = tmp_path / "in"
    root.mkdir()
    names = ["=HYPERLINK(1).dcm", "+1.dcm", "-x.dcm", "@sum.dcm", "'quoted.dcm", "plain.dcm"]
    for name in names:
        (root / name).write_bytes(b"not DICOM")
    target = tmp_path / "run.csv"
    score_to_file([root], target, LocalEngine(scorer))
    with open(target, encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    shown = {os.path.basename(r["path"]): r for r in rows}
    assert all(not r["path"].startswith(("=", "+", "-", "@")) for r in rows)
    assert all(not r["error"].startswith(("=", "+", "-", "@")) for r in rows)
    assert sorted(os.path.basename(restore_cell(r["path"])) for r in rows) == sorted(names)
    again = score_to_file([root], target, LocalEngine(scorer), resume=True)
    assert again.files_skipped == len(names) and again.slices_written == 0
    # Relative paths (as a manifest in the current folder gives them) start with the name.
    row = csv_row(_hostile_result("=cmd|' /C calc'!A0", "=cmd|' /C calc'!A0: not DICOM"))
    assert row["path"] == "'=cmd|' /C calc'!A0" and row["error"].startswith("'=")
    assert csv_row(_hostile_result("=x"), neutralise=False)["path"] == "=x"
    assert neutralise_cell("-12.5") == "-12.5" and neutralise_cell("-abc") == "'-abc"
    assert shown  # the names were written


def test_report_csv_neutralises_station_names(tmp_path, capsys):
    """Item 8: report --format csv neutralises DICOM strings; --csv-formulas keeps them."""
    from deltaiqa_lite.qa.log import QALog, SliceRecord

    path = tmp_path / "qa.sqlite"
    with QALog(path) as log:
        log.record([SliceRecord(source="test", status="ok", series_uid=f"1.2.{k}",
                                sop_instance_uid=f"1.2.{k}.1", station_name="=HYPERLINK(\"x\")",
                                protocol_name="@SUM(A1)", kernel="B30f",
                                acquisition_datetime=f"2025-01-{k + 1:02d}T08:00:00",
                                score=2.5, likert=3) for k in range(3)])
    assert main(["report", "--log", str(path), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows and {r["station_name"] for r in rows} == {"'=HYPERLINK(\"x\")"}
    assert {r["protocol_name"] for r in rows} == {"'@SUM(A1)"}
    assert main(["report", "--log", str(path), "--format", "csv", "--csv-formulas"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["station_name"] for r in rows} == {"=HYPERLINK(\"x\")"}


def test_report_png_names_bounded_unique_and_cjk(tmp_path, capsys):
    """Item 8: long and CJK station/protocol names give PNG names the file system takes,
    and two groups whose names clean to the same stem do not overwrite each other."""
    from deltaiqa_lite.qa.log import QALog, SliceRecord

    path = tmp_path / "qa.sqlite"
    groups = [("東京大学病院 第二CT室 " * 12, "胸部 腹部 造影 " * 10),
              ("CT/1", "ABD"), ("CT:1", "ABD"), ("ct 1", "abd")]
    with QALog(path) as log:
        log.record([SliceRecord(source="test", status="ok", series_uid=f"1.2.{g}.{k}",
                                sop_instance_uid=f"1.2.{g}.{k}.1", station_name=station,
                                protocol_name=protocol, kernel="B30f",
                                acquisition_datetime=f"2025-01-{k + 1:02d}T08:00:00",
                                score=2.5, likert=3)
                    for g, (station, protocol) in enumerate(groups) for k in range(3)])
    folder = tmp_path / "png"
    assert main(["report", "--log", str(path), "--format", "json", "--png-dir", str(folder)]) == 0
    capsys.readouterr()
    pngs = sorted(p.name for p in folder.glob("*.png"))
    assert len(pngs) == len(groups)  # none overwritten
    assert all(len(name.encode("utf-8")) <= 255 for name in pngs)
    assert any(name.startswith("東京大学病院") for name in pngs)
