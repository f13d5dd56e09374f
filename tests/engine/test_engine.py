"""Streaming runs without Ray: manifests, writers, series summaries from written rows, resume, CLI."""

from __future__ import annotations

import csv
import importlib.util
import json
import pickle

import pytest
from pydicom.uid import generate_uid

from deltaiqa_lite.cli import main
from deltaiqa_lite.engine import score_to_file
from deltaiqa_lite.engine.inputs import count_inputs, iter_inputs, read_manifest
from deltaiqa_lite.engine.local import LocalEngine
from deltaiqa_lite.engine.output import open_writer, series_path, summarise_rows
from deltaiqa_lite.errors import DeltaIQAError, InputError, RefusedInput
from deltaiqa_lite.score import Scorer, group_results
from deltaiqa_lite.output.write import CSV_COLUMNS, SERIES_KEYS, slice_record
from dicom_builders import ct_dataset, phantom_hu, save


@pytest.fixture
def archive(tmp_path):
    """Two series of three slices in nested folders, an MR file and a non-DICOM file."""
    root = tmp_path / "archive"
    files = []
    for s, series in enumerate((generate_uid(), generate_uid())):
        folder = root / f"series{s}"
        folder.mkdir(parents=True)
        for k in range(3):
            files.append(save(ct_dataset(phantom_hu(seed=10 * s + k) + 60 * k, series_uid=series, ipp=(0, 0, k),
                                         instance_number=k + 1), folder / f"{k}.dcm"))
    files.append(save(ct_dataset(modality="MR"), root / "mr.dcm"))
    (root / "notes.dcm").write_text("not a DICOM file")
    files.append(root / "notes.dcm")
    return root


@pytest.fixture(scope="module")
def scorer(tiny_model):
    return Scorer(tiny_model, provider="cpu", batch_size=4)


# -- manifests ---------------------------------------------------------------------------

def test_text_manifest_relative_comments_and_folders(tmp_path, archive):
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"# export of 2026-11\n\narchive/series0/0.dcm\n  {archive / 'series1'}  \nmissing.dcm\n")
    entries = list(iter_inputs([manifest]))
    assert entries == [str(tmp_path / "archive/series0/0.dcm"), *(str(archive / "series1" / f"{k}.dcm")
                                                                  for k in range(3)), str(tmp_path / "missing.dcm")]
    # Four manifest entries lie in the archive given beside it: each file counts once (issue 24).
    assert count_inputs([manifest, archive]) == 5 + 8 - 4


def test_csv_manifest_path_column(tmp_path, archive):
    manifest = tmp_path / "export.csv"
    manifest.write_text(f"accession,Path\nA1,{archive / 'mr.dcm'}\nA2,\nA3,series9/x.dcm\n")
    assert list(read_manifest(manifest)) == [str(archive / "mr.dcm"), str(tmp_path / "series9/x.dcm")]


def test_bad_manifests_are_reported_not_raised(tmp_path):
    no_column = tmp_path / "bad.csv"
    no_column.write_text("file,accession\na.dcm,1\n")
    binary = tmp_path / "bad.txt"
    binary.write_bytes(b"ok.dcm\n\xff\xfe\x00garbage\nlast.dcm\n")
    entries = list(iter_inputs([no_column, binary]))
    assert isinstance(entries[0], InputError)
    assert str(entries[0]) == f"{no_column}: CSV manifest has no 'path' column (columns: file, accession)"
    # The undecodable line is reported and the lines around it are kept.
    assert entries[1] == str(tmp_path / "ok.dcm") and entries[3] == str(tmp_path / "last.dcm")
    assert isinstance(entries[2], InputError)
    assert str(entries[2]) == f"{binary}: line 2 is not UTF-8 text (invalid start byte); entry skipped"
    assert len(entries) == 4


def test_input_errors_survive_pickling():
    error = RefusedInput("mr.dcm", "(0008,0060) Modality is 'MR'; deltaiqa-lite scores CT only")
    error.series_uid = "1.2.3"
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is RefusedInput and str(copy) == str(error) and copy.series_uid == "1.2.3"


# -- writers ----------------------------------------------------------------------------

def _rows(scorer, archive):
    return list(scorer.iter_score_paths([archive]))


needs_pyarrow = pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None,
                                   reason=".parquet needs pyarrow (the 'ray' extra)")
SUFFIXES = [".jsonl", ".csv", pytest.param(".parquet", marks=needs_pyarrow)]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_writers_same_fields_as_score_and_series_from_rows(tmp_path, archive, scorer, suffix):
    results = _rows(scorer, archive)
    target = tmp_path / f"out{suffix}"
    writer = open_writer(target)
    writer.write(results[:3])
    writer.write(results[3:])
    summaries = writer.close(flag_below=0.5)
    expected = {(s.series_uid, s.n_slices, s.n_failed) for s in group_results(results)}
    assert {(s.series_uid, s.n_slices, s.n_failed) for s in summaries} == expected
    assert summaries[-1].series_uid is None and summaries[-1].n_failed == 1  # the non-DICOM file, last
    if suffix == ".jsonl":
        lines = [json.loads(line) for line in target.read_text().splitlines()]
        assert [line["type"] for line in lines] == ["slice"] * len(results) + ["series"] * len(summaries)
        # The slice rows are exactly score --format jsonl's.
        assert [{k: v for k, v in line.items() if k != "type"} for line in lines[:len(results)]] == \
            [slice_record(r) for r in results]
        assert set(lines[-1]) == {"type", *SERIES_KEYS}
    elif suffix == ".csv":
        rows = list(csv.DictReader(target.open()))
        assert list(rows[0]) == CSV_COLUMNS and len(rows) == len(results)
        assert [r["path"] for r in rows] == [r.path for r in results]
        series_rows = list(csv.DictReader(series_path(target).open()))
        assert list(series_rows[0]) == SERIES_KEYS and len(series_rows) == len(summaries)
    else:
        import pyarrow.parquet as pq
        table = pq.read_table(target)
        assert table.column_names == list(slice_record(results[0]))
        assert table.to_pylist() == [slice_record(r) for r in results]
        assert not (tmp_path / "out.parquet.parts").exists()
        assert pq.read_table(series_path(target)).column_names == SERIES_KEYS


@needs_pyarrow
def test_arrow_types_follow_the_type_hints():
    import pyarrow as pa

    from deltaiqa_lite.engine.output import _arrow_type, slice_schema
    assert _arrow_type(pa, float | None) == pa.float64() and _arrow_type(pa, int | None) == pa.int64()
    assert _arrow_type(pa, tuple[float, float] | None) == pa.list_(pa.float64())
    assert _arrow_type(pa, dict | None) == pa.string()  # a richer field added later is kept, as JSON text
    schema = slice_schema()
    assert schema.field("probabilities").type == pa.list_(pa.float64()) and schema.field("frame").type == pa.int64()


def test_unknown_output_extension():
    with pytest.raises(DeltaIQAError, match=r"out\.json: output extension '\.json' is not one of \.jsonl"):
        open_writer("out.json")


def test_summaries_spill_to_disk_same_as_in_memory(tmp_path):
    rows = [(f"1.2.{k % 7}" if k % 11 else None, k % 5 != 0, (k * 37 % 101) / 25.0) for k in range(3000)]
    in_memory = summarise_rows(rows, flag_below=2.0)
    spilled = summarise_rows(rows, flag_below=2.0, spill_dir=tmp_path, max_in_memory=100)
    assert [s.to_dict() for s in spilled] == [s.to_dict() for s in in_memory]
    assert in_memory[-1].series_uid is None and len(in_memory) == 8
    assert list(tmp_path.iterdir()) == []  # the spill folder is gone


# -- resume -----------------------------------------------------------------------------

class Interrupt(Exception):
    pass


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_resume_after_interrupt_every_input_once(tmp_path, archive, tiny_model, suffix):
    engine = LocalEngine(Scorer(tiny_model, provider="cpu", batch_size=2), chunk_files=3, rows_per_write=1)
    target = tmp_path / f"run{suffix}"

    def stop(state):
        if state.files_done >= 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        score_to_file([archive], target, engine, progress=stop)
    first = open_writer(target, resume=True)
    done_before = first.done_keys()
    first.abort()
    assert 3 <= len(done_before) < 8
    summary = score_to_file([archive], target, engine, resume=True)
    assert summary.files_skipped == len(done_before) and summary.slices_written == 8 - len(done_before)
    final = open_writer(target, resume=True)
    keys = final.done_keys()
    final.abort()
    expected = {(str(p), None) for p in sorted(archive.rglob("*.dcm"))}
    assert keys == expected
    assert sum(s.n_slices for s in summary.series) == 8  # summaries count both runs' rows exactly once
    assert summary.n_failed == 2


def test_resume_drops_partial_line_and_old_summaries(tmp_path, archive, scorer):
    target = tmp_path / "run.jsonl"
    summary = score_to_file([archive], target, LocalEngine(scorer))
    lines = target.read_text().splitlines(keepends=True)
    assert sum('"type": "series"' in line for line in lines) == len(summary.series)
    # Keep five whole rows and half of the sixth, as a killed run would.
    target.write_text("".join(lines[:5]) + lines[5][:40])
    again = score_to_file([archive], target, LocalEngine(scorer), resume=True)
    assert again.files_skipped == 5 and again.slices_written == 3
    records = [json.loads(line) for line in target.read_text().splitlines()]
    paths = [r["path"] for r in records if r["type"] == "slice"]
    assert sorted(paths) == sorted(str(p) for p in archive.rglob("*.dcm")) and len(set(paths)) == 8
    assert sum(r["type"] == "series" for r in records) == len(summary.series)


def test_resume_refuses_foreign_csv(tmp_path):
    target = tmp_path / "other.csv"
    target.write_text("path,score\na.dcm,1.0\n")
    with pytest.raises(DeltaIQAError, match=r"other\.csv: columns \['path', 'score'\] differ"):
        open_writer(target, resume=True)


# -- CLI --------------------------------------------------------------------------------

def test_cli_local_streaming_matches_score_jsonl(tmp_path, archive, tiny_model, capsys):
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"{archive / 'series0'}\n{tmp_path / 'gone.dcm'}\n")
    target = tmp_path / "out.jsonl"
    code = main(["score", str(manifest), "--model", str(tiny_model), "--provider", "cpu", "-o", str(target)])
    err = capsys.readouterr().err
    assert code == 1
    assert f"deltaiqa-lite: {tmp_path / 'gone.dcm'}: no such file or folder" in err
    assert "wrote 4 slices" in err and "1 failed in the file" in err
    code = main(["score", str(archive / "series0"), "--model", str(tiny_model), "--provider", "cpu",
                 "--format", "jsonl"])
    reference = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    written = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r for r in written if r["type"] == "slice"][:3] == [r for r in reference if r["type"] == "slice"]


@pytest.mark.parametrize("argv, message", [
    (["--engine", "ray"], "--engine ray needs --output FILE ending in .jsonl, .csv or .parquet"),
    (["--resume", "-o", "x.json"], "--resume needs --output FILE ending in .jsonl"),
    (["--engine", "ray", "-o", "x.jsonl", "--threads", "2"], "--threads is for the local engine"),
    (["-o", "x.jsonl", "--actors", "2"], "deltaiqa-lite: error: --actors need --engine ray"),
])
def test_cli_usage_errors(capsys, tiny_model, archive, argv, message):
    assert main(["score", str(archive), "--model", str(tiny_model), *argv]) == 2
    assert message in capsys.readouterr().err

