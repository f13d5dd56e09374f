"""CLI: formats and their schemas, exit codes, per-series summary, info, lazy command loading."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from pydicom.uid import generate_uid

from dicom_builders import ct_dataset, phantom_hu, save
from deltaiqa_lite.cli import main
from deltaiqa_lite.output.write import CSV_COLUMNS, SERIES_KEYS

SLICE_KEYS = {"path", "sop_instance_uid", "series_uid", "slice_location", "score", "likert", "label",
              "probabilities", "status", "error", "model", "precision", "provider", "frame", "instance_number",
              "policy_override", "policy_note", "refused_kind",
              "noise_hu", "water_equivalent_diameter_mm", "ctdivol_mgy", "ssde_mgy", "noise_score", "flags",
              "physics_note"}


@pytest.fixture
def inputs(tmp_path):
    series = generate_uid()
    good = [save(ct_dataset(phantom_hu(seed=k) + 100 * k, series_uid=series, ipp=(0, 0, k)), tmp_path / f"s{k}.dcm")
            for k in range(3)]
    mr = save(ct_dataset(modality="MR"), tmp_path / "mr.dcm")
    return {"series": series, "good": [str(p) for p in good], "bad": str(mr), "tmp": tmp_path}


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_schema_and_exit_0(capsys, tiny_model, inputs):
    code, out, err = run_cli(capsys, "score", *inputs["good"], "--model", tiny_model, "--provider", "cpu",
                             "--json", "--flag-below", "3")
    assert code == 0, err
    document = json.loads(out)
    assert {"tool", "version", "model", "precision", "model_version", "model_path", "provider", "flag_below",
            "slices", "series"} <= set(document)
    assert document["provider"] == "CPUExecutionProvider" and document["flag_below"] == 3.0
    assert len(document["slices"]) == 3
    for record in document["slices"]:
        assert set(record) == SLICE_KEYS
        assert record["status"] == "ok" and record["error"] is None
        assert isinstance(record["score"], float) and 0 <= record["score"] <= 4
        assert isinstance(record["likert"], int) and record["label"] in ("bad", "poor", "fair", "good", "excellent")
        assert len(record["probabilities"]) == 5 and abs(sum(record["probabilities"]) - 1) < 1e-4
    (series,) = document["series"]
    assert set(SERIES_KEYS) <= set(series) and series["series_uid"] == inputs["series"]
    assert series["n_slices"] == 3 and series["slices"] == inputs["good"]
    scores = [r["score"] for r in document["slices"]]
    assert series["mean"] == pytest.approx(np.mean(scores)) and series["minimum"] == pytest.approx(min(scores))
    assert series["n_below"] == sum(s < 3 for s in scores)


def test_failed_input_gives_exit_1_and_appears(capsys, tiny_model, inputs):
    code, out, err = run_cli(capsys, "score", inputs["good"][0], inputs["bad"], "--model", tiny_model,
                             "--format", "jsonl")
    assert code == 1
    lines = [json.loads(line) for line in out.splitlines()]
    slices = [l for l in lines if l["type"] == "slice"]
    assert [s["status"] for s in slices] == ["ok", "error"]
    assert slices[1]["error"] == f"{inputs['bad']}: (0008,0060) Modality is 'MR'; deltaiqa-lite scores CT only"
    assert f"deltaiqa-lite: {inputs['bad']}: (0008,0060) Modality is 'MR'" in err
    assert [l["type"] for l in lines].count("series") == 2  # the good slice's series and the MR's


def test_csv_schema(capsys, tiny_model, inputs):
    code, out, _ = run_cli(capsys, "score", *inputs["good"], inputs["bad"], "--model", tiny_model, "--format", "csv")
    assert code == 1
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == CSV_COLUMNS
    assert len(rows) == 4
    ok = rows[0]
    assert 0 <= float(ok["score"]) <= 4 and ok["status"] == "ok" and ok["error"] == ""
    assert abs(sum(float(ok[f"p{k}"]) for k in range(5)) - 1) < 1e-4
    assert rows[3]["status"] == "error" and rows[3]["score"] == "" and "Modality is 'MR'" in rows[3]["error"]


def test_table_format(capsys, tiny_model, inputs):
    code, out, _ = run_cli(capsys, "score", *inputs["good"], inputs["bad"], "--model", tiny_model,
                           "--format", "table", "--flag-below", "4")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].split() == ["input", "score", "likert", "label", "noise_hu", "noise_score",
                                "water_equivalent_diameter_mm", "ctdivol_mgy", "ssde_mgy", "flags"]
    assert any("error:" in line and "Modality is 'MR'" in line for line in lines)
    summary = next(line for line in lines if line.startswith(f"series {inputs['series']}"))
    assert "3 slices" in summary and "below 4" in summary and "p10" in summary


def test_output_file(capsys, tiny_model, inputs):
    target = inputs["tmp"] / "out.json"
    code, out, _ = run_cli(capsys, "score", inputs["good"][0], "--model", tiny_model, "-o", target)
    assert code == 0 and out == ""
    assert json.loads(target.read_text())["slices"][0]["path"] == inputs["good"][0]


@pytest.mark.parametrize("argv", [
    ["score"],                                        # no PATH
    ["score", "x.dcm", "--batch-size", "0"],
    ["score", "x.dcm", "--format", "xml"],
    ["score", "x.dcm", "--provider", "rocm"],
    ["score", "x.dcm", "--image-window", "40"],
    ["frobnicate"],
    [],
])
def test_usage_errors_exit_2(capsys, argv):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert "usage:" in err or "error" in err


def test_missing_model_is_usage_error(capsys, inputs):
    code, out, err = run_cli(capsys, "score", inputs["good"][0], "--model", inputs["tmp"] / "none.onnx")
    assert code == 2 and out == ""
    assert err.strip() == f"deltaiqa-lite: error: {inputs['tmp'] / 'none.onnx'}: model file not found " \
                          "(give 'int8', 'fp32' or an .onnx path)"


def test_strict_provider_is_usage_error(capsys, tiny_model, inputs):
    from deltaiqa_lite.model.session import available_providers
    if "OpenVINOExecutionProvider" in available_providers():
        pytest.skip("OpenVINO is available here: no fallback to refuse")
    code, _, err = run_cli(capsys, "score", inputs["good"][0], "--model", tiny_model, "--provider", "openvino",
                           "--strict-provider")
    assert code == 2 and "provider 'openvino' (OpenVINOExecutionProvider) is not in this onnxruntime build" in err
    code, _, err = run_cli(capsys, "score", inputs["good"][0], "--model", tiny_model, "--provider", "openvino")
    assert code == 0 and "deltaiqa-lite: warning: provider 'openvino'" in err


def test_unavailable_command_fails_clearly(capsys, monkeypatch):
    """A command whose module cannot be imported (e.g. a trimmed install) fails with exit 2."""
    import importlib

    real_import = importlib.import_module

    def fake_import(name, *args, **kwargs):
        if name == "deltaiqa_lite.commands.report":
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    code, _, err = run_cli(capsys, "report", "x")
    assert code == 2
    assert "command 'report' is not available in this installation" in err


def test_info_json(capsys, tiny_model, monkeypatch, tmp_path):
    import shutil
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(tiny_model, folder / "deltaiqa-int8.onnx")
    monkeypatch.setenv("DELTAIQA_LITE_MODEL_DIR", str(folder))
    code, out, _ = run_cli(capsys, "info", "--json")
    assert code == 0
    info = json.loads(out)
    from deltaiqa_lite import __version__
    assert info["deltaiqa_lite"] == __version__
    assert "CPUExecutionProvider" in info["onnxruntime"]["providers"]
    int8 = next(m for m in info["models"] if m["name"] == "int8")
    assert int8["path"] == str(folder / "deltaiqa-int8.onnx") and int8["card"]["name"] == "tiny-test"
    assert info["codecs"]["decoders"]["RLE Lossless"] == ["pydicom"]
    code, out, _ = run_cli(capsys, "info")
    assert code == 0 and "tiny-test" in out and "providers:" in out and "decode JPEG 2000 Lossless" in out


def test_python_m_and_lazy_imports(tiny_model, inputs):
    """`python -m deltaiqa_lite score` works and loads neither scipy, TensorFlow nor other commands.

    ``commands._args`` (the shared options) may load: it imports the standard library only.
    """
    probe = ("import sys, runpy; sys.argv = ['deltaiqa-lite'] + sys.argv[1:];\n"
             "try:\n    runpy.run_module('deltaiqa_lite', run_name='__main__')\n"
             "except SystemExit as e:\n    code = e.code\n"
             "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('scipy', 'tensorflow', 'cv2', 'onnx')"
             " or m.startswith('deltaiqa_lite.commands.')"
             " and m not in ('deltaiqa_lite.commands.score', 'deltaiqa_lite.commands._args'))\n"
             "print('HEAVY', heavy, file=sys.stderr); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", probe, "score", inputs["good"][0], "--model", str(tiny_model),
                           "--json"], capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["slices"][0]["status"] == "ok"
    assert "HEAVY []" in done.stderr


def test_progress_only_when_stderr_is_a_terminal(tiny_model, inputs):
    import pty
    script = "import sys; from deltaiqa_lite.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = [sys.executable, "-c", script, "score", *inputs["good"], "--model", str(tiny_model), "--format", "csv"]
    piped = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and "read " not in piped.stderr
    master, slave = pty.openpty()
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=slave, timeout=120)
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
    assert done.returncode == 0
    assert b"read 3/3 files" in b"".join(chunks)
    assert b"read " not in done.stdout  # results stay clean on stdout
