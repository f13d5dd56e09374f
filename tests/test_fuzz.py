"""Seeded fuzzing of the reader and the QA header check over real DICOM objects (issue 13).

Mutated copies of pydicom's bundled test files and of examples/ go through what the QA
node does with a received file (header check, then the scorer with a tiny model) in a
separate process, one input at a time under a 10 s alarm. Asserted: exactly one line per
input, no traceback and no raw warning on stderr, no input over 10 s (a hang guard, not
a speed target: header-refusal time lives in benchmarks/), peak RSS under 400 MB.

Public test files are used for tests only.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

REPO = Path(__file__).resolve().parents[1]
SEED = 13
CASES_PER_SEED = 64
PER_INPUT_LIMIT_S = 10
RSS_LIMIT_MB = 400

# Hostile values by element: the families the security review tried.
HOSTILE_TEXT = {
    ("NumberOfFrames", "IS"): ["0", "-1", "1000000", "2000000", "1e9", "abc", "NaN", "3"],
    ("RescaleSlope", "DS"): ["NaN", "0", "inf", "-inf", "1e308", "-1", "abc", "1e-300"],
    ("RescaleIntercept", "DS"): ["NaN", "1e308", "-1e300", "x"],
    ("ImageOrientationPatient", "DS"): ["NaN\\0\\0\\0\\1\\0", "1\\0\\0\\0\\inf\\0", "0\\0\\0\\0\\0\\0",
                                        "1\\0\\0", "a\\b\\c\\d\\e\\f", "1e308\\0\\0\\0\\1\\0"],
    ("ImagePositionPatient", "DS"): ["NaN\\0\\0", "x\\y\\z", "1e308\\1e308\\1e308"],
    ("PixelSpacing", "DS"): ["0\\0", "NaN\\1", "-1\\-1", "abc"],
    ("InstanceNumber", "IS"): ["abc", "1.5", "99999999999999999999", ""],
    ("SliceLocation", "DS"): ["x", "NaN", "inf"],
    ("SOPInstanceUID", "UI"): ["../../etc/passwd", "1.2.3/../x", "", "1." * 40, "\x00\x01"],
    ("SeriesInstanceUID", "UI"): ["../x", "1..2", "a.b"],
    ("StudyInstanceUID", "UI"): ["1.2/3", "..", ""],
    ("Modality", "CS"): ["MR", "", "CT\\MR", "SR"],
    ("ImageType", "CS"): ["ORIGINAL\\PRIMARY\\LOCALIZER", "", "DERIVED"],
    ("PhotometricInterpretation", "CS"): ["RGB", "PALETTE COLOR", "", "YBR_FULL"],
    ("KVP", "DS"): ["NaN", "inf", "-5", "abc"],
    ("CTDIvol", "FD"): [],  # binary; handled by byte mutation
}
HOSTILE_US = {"Rows": [0, 1, 63, 65535], "Columns": [0, 1, 65535], "BitsAllocated": [0, 1, 12, 64],
              "SamplesPerPixel": [0, 3, 65535], "PixelRepresentation": [1, 7],
              "BitsStored": [0, 64], "PixelPaddingValue": [0, 65535]}


def seeds() -> list[Path]:
    files = [Path(get_testdata_file(name)) for name in
             ("CT_small.dcm", "MR_small.dcm", "emri_small.dcm", "JPEG2000.dcm")]
    files.append(REPO / "examples" / "dose-100.dcm")
    return [f for f in files if f.is_file()]


def as_ct(path: Path) -> bytes:
    """The seed as a CT image object, so that MR seeds reach the reader, not only the header check."""
    ds = pydicom.dcmread(path)
    ds.Modality = "CT"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def _raw_text(ds: pydicom.Dataset, keyword: str, vr: str, text: str) -> None:
    tag = Tag(pydicom.datadict.tag_for_keyword(keyword))
    value = text.encode("latin-1")
    value += b" " * (len(value) % 2)
    ds._dict[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)


def _raw_us(ds: pydicom.Dataset, keyword: str, number: int) -> None:
    tag = Tag(pydicom.datadict.tag_for_keyword(keyword))
    value = int(number).to_bytes(2, "little")
    ds._dict[tag] = RawDataElement(tag, "US", 2, value, 0, False, True)


def mutate(data: bytes, rng: random.Random, scratch: Path) -> bytes:
    """One hostile variant of a DICOM file: element values, truncation or byte damage."""
    kind = rng.choice(["element", "element", "element", "us", "pixels", "truncate", "bytes",
                       "splice"])
    if kind in ("element", "us", "pixels"):
        source = scratch / "source.dcm"
        source.write_bytes(data)
        ds = pydicom.dcmread(source)
        for _ in range(rng.randint(1, 3)):
            if kind == "element":
                (keyword, vr), values = rng.choice([i for i in HOSTILE_TEXT.items() if i[1]])
                _raw_text(ds, keyword, vr, rng.choice(values))
            elif kind == "us":
                keyword, values = rng.choice(list(HOSTILE_US.items()))
                _raw_us(ds, keyword, rng.choice(values))
            elif "PixelData" in ds:
                pixels = ds.PixelData
                cut = rng.randint(0, len(pixels))
                ds.PixelData = pixels[:cut - cut % 2]
        out = scratch / "mutated.dcm"
        try:
            ds.save_as(out)  # writes raw values as they are: no validation on the way out
        except ValueError:
            # pydicom will not write cut encapsulated Pixel Data: damage the bytes instead.
            return data[:rng.randint(0, len(data))]
        return out.read_bytes()
    if kind == "truncate":
        return data[:rng.randint(0, len(data))]
    if kind == "bytes":
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 32)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        return bytes(damaged)
    start = rng.randrange(len(data))
    chunk = data[start:start + rng.randint(1, 4096)]
    at = rng.randrange(len(data))
    return data[:at] + chunk + data[at:]


DRIVER = r'''
import os, signal, sys, time, warnings
from deltaiqa_lite.errors import InputError, WarningTally
from deltaiqa_lite.qa.header import read_qa_header, refusal_reason
from deltaiqa_lite.score import Scorer

folder, model, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
scorer = Scorer(model, threads=1, batch_size=4)

class Hang(Exception):
    pass

def alarm(signum, frame):
    raise Hang()

signal.signal(signal.SIGALRM, alarm)
with WarningTally(sys.stderr) as tally:
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        started = time.monotonic()
        signal.alarm(limit)
        try:
            header = read_qa_header(path)
            reason = refusal_reason(header)
            if reason is not None:
                line = f"refused\t{reason}"
            else:
                results = scorer.score_paths([path])
                failed = [r for r in results if not r.ok]
                if failed:
                    kind = "refused" if all(r.refused for r in failed) else "error"
                    line = f"{kind}\t{failed[0].error}"
                else:
                    line = f"ok\t{len(results)} slices"
        except InputError as error:
            line = f"error\t{error}"
        except Hang:
            line = "HANG\t"
        except BaseException as error:
            line = f"CRASH\t{type(error).__name__}: {error}"
        finally:
            signal.alarm(0)
        elapsed = time.monotonic() - started
        status, _, detail = line.partition("\t")
        print(f"{name}\t{elapsed:.3f}\t{status}\t{' '.join(detail.split())}", flush=True)
'''

PARENT = r'''
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stdout.write(done.stdout)
sys.stderr.write(done.stderr)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
print(f"PEAK_RSS_MB\t{peak:.1f}", file=sys.stderr)
sys.exit(done.returncode)
'''


@pytest.mark.slow
def test_fuzzed_inputs_one_line_each_no_traceback_bounded(tmp_path: Path, tiny_model: Path) -> None:
    rng = random.Random(SEED)
    cases = tmp_path / "cases"
    scratch = tmp_path / "scratch"
    cases.mkdir()
    scratch.mkdir()
    names = []
    for seed_index, seed_file in enumerate(seeds()):
        data = as_ct(seed_file)
        for k in range(CASES_PER_SEED):
            name = f"{seed_index}-{seed_file.stem}-{k:03d}.dcm"
            (cases / name).write_bytes(mutate(data, rng, scratch))
            names.append(name)
    assert len(names) >= 300
    done = subprocess.run(
        [sys.executable, "-c", PARENT, sys.executable, "-c", DRIVER, str(cases), str(tiny_model),
         str(PER_INPUT_LIMIT_S)],
        capture_output=True, text=True, timeout=3600, cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert [line.split("\t", 1)[0] for line in lines] == sorted(names)  # exactly one line each
    fields = [line.split("\t") for line in lines]
    statuses = [f[2] for f in fields]
    assert "CRASH" not in statuses, [line for line in lines if "\tCRASH\t" in line][:5]
    assert "HANG" not in statuses
    assert max(float(f[1]) for f in fields) < PER_INPUT_LIMIT_S
    assert set(statuses) <= {"ok", "refused", "error"}
    # The mutator bites, and enough inputs get past the header check to test the reader.
    assert statuses.count("ok") >= 30 and statuses.count("error") >= 30
    assert not any("unexpected " in line for line in lines), \
        [line for line in lines if "unexpected " in line][:5]
    err = done.stderr
    assert "Traceback" not in err and "warn_and_log" not in err
    peak = float(err.rsplit("PEAK_RSS_MB\t", 1)[1].split()[0])
    assert peak < RSS_LIMIT_MB, f"peak RSS {peak} MB"


# -- issue 24: hostile names, zero-filled files, character sets ------------------------

CHARSET_NAMES = {
    "ISO_IR 192": "Müller^Jürgen=山田^太郎",
    "\\ISO 2022 IR 87": "Yamada^Tarou=山田^太郎=やまだ^たろう",
    "GB18030": "Wang^XiaoDong=王^小东",
    "ISO_IR 100": "Müller^Jürgen",
}


def _hostile_name(rng: random.Random) -> bytes:
    """A file name that is not valid UTF-8: Latin-1 and random high bytes, no '/' or NUL."""
    body = bytes(rng.choice(b"abcXYZ019_-. ") if rng.random() < 0.5 else rng.randrange(0x80, 0x100)
                 for _ in range(rng.randrange(3, 40)))
    try:
        body.decode("utf-8")
        body += b"\xff"
    except UnicodeDecodeError:
        pass
    return body.lstrip(b".") + b".dcm"


def test_hostile_names_zero_files_and_charsets(tmp_path: Path, tiny_model: Path,
                                               capsysbinary) -> None:
    """Issue 24 items 2, 3, 6, 8: non-UTF-8 names, zero-filled files, CJK names near the
    255-byte limit and sources in four character sets go through ``score`` (every writer,
    with ``--sr``) and ``watch --once``: one outcome per file, no traceback, SR names equal."""
    from dicom_builders import ct_dataset, phantom_hu, save

    from deltaiqa_lite.cli import main
    from deltaiqa_lite.qa.log import QALog

    rng = random.Random(SEED + 24)
    folder = tmp_path / "in"
    folder.mkdir()
    raw = os.fsencode(folder)
    expected = 0
    for k in range(12):
        ds = ct_dataset(phantom_hu(seed=k), instance_number=k + 1, ipp=(0, 0, k))
        save(ds, Path(os.fsdecode(raw + b"/" + _hostile_name(rng))))
        expected += 1
    for k in range(3):  # CJK names close to NAME_MAX (255 bytes)
        name = ("胸部造影検査" * 14)[: 80 - k] + f"{k}.dcm"
        assert len(name.encode("utf-8")) <= 255
        save(ct_dataset(phantom_hu(seed=20 + k)), folder / name)
        expected += 1
    (folder / "empty.dcm").write_bytes(b"")
    (folder / "zeros-4k.dcm").write_bytes(b"\0" * 4096)
    with open(folder / "zeros-sparse.dcm", "wb") as handle:
        handle.truncate(64 << 20)
    expected += 3
    sources = {}
    for k, (charset, name) in enumerate(CHARSET_NAMES.items()):
        ds = ct_dataset(phantom_hu(seed=40 + k))
        ds.SpecificCharacterSet = charset.split("\\") if "\\" in charset else charset
        ds.PatientName = name
        ds.PatientID = f"CHARSET-{k}"
        sources[str(ds.SeriesInstanceUID)] = name
        save(ds, folder / f"charset-{k}.dcm")
        expected += 1

    for suffix in (".jsonl", ".csv", ".parquet"):
        if suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
            continue
        target = tmp_path / f"out{suffix}"
        code = main(["score", str(folder), "--model", str(tiny_model), "--provider", "cpu",
                     "-o", str(target), "--no-progress"])
        err = capsysbinary.readouterr().err.decode("utf-8")
        assert code == 1 and "Traceback" not in err  # 1: the three zero/empty files
        assert f"wrote {expected} slices" in err
    code = main(["score", str(folder), "--model", str(tiny_model), "--provider", "cpu",
                 "--format", "jsonl", "--sr", str(tmp_path / "sr"), "--no-progress"])
    out, err = (stream.decode("utf-8") for stream in capsysbinary.readouterr())
    assert code == 1 and "Traceback" not in err
    slices = [json.loads(line) for line in out.splitlines() if '"type": "slice"' in line]
    assert len(slices) == expected
    assert sum("all zero" in (s["error"] or "") for s in slices) == 2
    srs = [pydicom.dcmread(p) for p in sorted((tmp_path / "sr").glob("*.dcm"))]
    by_series = {str(sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
                     .SeriesInstanceUID): str(sr.PatientName) for sr in srs}
    for series, name in sources.items():
        assert by_series[series] == name

    log = tmp_path / "qa.sqlite"
    for _ in range(2):  # the second run is a restart: nothing logged twice
        code = main(["watch", str(folder), "--log", str(log), "--model", str(tiny_model),
                     "--once", "--settle", "0.1", "-q"])
        err = capsysbinary.readouterr().err.decode("utf-8")
        assert "Traceback" not in err
    with QALog(log) as qa:
        counts = qa.counts()
    assert counts == {"ok": expected - 3, "error": 3}
