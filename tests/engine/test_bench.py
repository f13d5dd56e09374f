"""The benchmark code: measurement helpers, ``deltaiqa-lite bench``, and the suite's smoke mode.

No speed targets here (those live in the benchmarks' results): these tests
check that timings are computed right, that generated series are what they
claim, and that the suite runs end to end and writes its three files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from model_builders import make_tiny_model
from PIL import Image

from deltaiqa_lite.engine.bench import (
    Budget,
    Timing,
    bench_cli,
    bench_inference,
    bench_series,
    bench_stages,
    series_bound,
    time_calls,
    write_series,
)
from deltaiqa_lite.cli import main
from deltaiqa_lite.read import read_slices
from deltaiqa_lite.score import Scorer

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # the benchmarks package lives beside the runtime, not inside it

from benchmarks.envs import tree_size_mb
from benchmarks.processes import clean_env, run_process
from benchmarks.suite import ratios, targets

EXAMPLES = sorted((REPO / "examples").glob("*.dcm"))


def test_timing_percentiles_and_throughput():
    timing = Timing.from_seconds([i / 1000 for i in range(1, 101)], items_per_call=4)
    assert timing.calls == 100
    assert timing.p50_ms == pytest.approx(50.5)
    assert timing.p95_ms == pytest.approx(95.05)
    assert timing.p99_ms == pytest.approx(99.01)
    assert timing.min_ms == pytest.approx(1.0)
    assert timing.total_s == pytest.approx(5.05)
    assert timing.throughput == pytest.approx(400 / 5.05)
    assert timing.per_item()["p50_ms"] == pytest.approx(50.5 / 4)
    with pytest.raises(ValueError, match="no timed calls"):
        Timing.from_seconds([])


def test_time_calls_warms_up_and_respects_budget():
    calls = []
    timing = time_calls(lambda: calls.append(1), Budget(warmup=2, min_calls=5, min_seconds=0.0, max_calls=5))
    assert len(calls) == 7 and timing.calls == 5
    # max_seconds stops a slow operation even though min_seconds is far away, but never below min_calls.
    started = time.perf_counter()
    timing = time_calls(lambda: time.sleep(0.02), Budget(warmup=0, min_calls=3, min_seconds=60.0, max_calls=1000,
                                                         max_seconds=0.1))
    assert 3 <= timing.calls <= 8
    assert time.perf_counter() - started < 2.0
    assert timing.min_ms >= 19.0


@pytest.mark.parametrize("syntax", ["explicit-le", "rle"])
def test_write_series_is_one_ordered_series_with_the_template_pixels(tmp_path, syntax):
    files = write_series(tmp_path / syntax, 5, EXAMPLES[:2], syntax=syntax, seed=3)
    assert [f.name for f in files] == [f"{i:04d}.dcm" for i in range(5)]
    slices = [next(read_slices(f)) for f in files]
    assert len({s.series_uid for s in slices}) == 1
    assert len({s.sop_instance_uid for s in slices}) == 5
    assert [s.instance_number for s in slices] == [1, 2, 3, 4, 5]
    assert sorted(s.slice_location for s in slices) == [s.slice_location for s in slices]
    expected_syntax = {"explicit-le": "1.2.840.10008.1.2.1", "rle": "1.2.840.10008.1.2.5"}[syntax]
    assert str(pydicom.dcmread(files[0]).file_meta.TransferSyntaxUID) == expected_syntax
    # Pixels are the template's, shifted by at most 8 pixels, losslessly stored.
    template = pydicom.dcmread(EXAMPLES[0]).pixel_array
    stored = pydicom.dcmread(files[0]).pixel_array
    assert any(np.array_equal(np.roll(template, (dy, dx), axis=(0, 1)), stored)
               for dy in range(-8, 9) for dx in range(-8, 9))


@pytest.mark.skipif(not shutil.which("dcmcjpeg"), reason="DCMTK dcmcjpeg not installed")
def test_write_series_jpeg_lossless_decodes_to_the_same_pixels(tmp_path):
    pytest.importorskip("pylibjpeg", reason="codecs extra needed to decode JPEG Lossless")
    plain = write_series(tmp_path / "plain", 2, EXAMPLES[:1], seed=5)
    jpeg = write_series(tmp_path / "jpeg", 2, EXAMPLES[:1], syntax="jpeg-lossless", seed=5)
    assert str(pydicom.dcmread(jpeg[1]).file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.4.70"
    assert np.array_equal(pydicom.dcmread(plain[1]).pixel_array, pydicom.dcmread(jpeg[1]).pixel_array)


def test_write_series_refuses_unknown_syntax(tmp_path):
    from deltaiqa_lite.errors import DeltaIQAError
    with pytest.raises(DeltaIQAError, match="unknown transfer syntax 'jpeg-xl'; choose explicit-le, rle"):
        write_series(tmp_path, 1, EXAMPLES[:1], syntax="jpeg-xl")


def test_bench_inference_reports_per_slice_figures(tiny_model):
    run = bench_inference(tiny_model, provider="cpu", threads=1, batch=2, budget=Budget.smoke())
    assert run.providers == ["CPUExecutionProvider"]
    assert (run.precision, run.threads, run.batch, run.timing.calls) == ("fp32", 1, 2, 3)
    assert run.per_slice["p50_ms"] == pytest.approx(run.timing.p50_ms / 2)
    assert run.slices_per_s == pytest.approx(2 * 3 / run.timing.total_s)
    assert run.gmac_per_s == pytest.approx(run.slices_per_s * 5.33)


def test_bench_series_scores_every_file(tiny_model, tmp_path):
    write_series(tmp_path / "series", 6, EXAMPLES, seed=1)
    scorer = Scorer(tiny_model, provider="cpu", batch_size=4)
    run = bench_series(scorer, tmp_path / "series", runs=1, budget=Budget.smoke())
    assert (run.slices, run.batch, run.runs) == (6, 4, 1)
    assert run.series_slices_per_s == pytest.approx(6 / run.series_s)
    assert run.ratio == pytest.approx(run.series_slices_per_s / run.inference_slices_per_s)
    # The bound comes from the measured stage costs and inference CPU, and the ratios from the bound.
    assert set(run.stages) == {"files", "slices", "read_ms", "decode_ms", "preprocess_ms", "physics_ms",
                               "output_ms", "total_ms"}
    assert run.bound_slices_per_s == pytest.approx(series_bound(
        1e3 / run.inference_slices_per_s, run.inference_cpu_ms, run.stages["total_ms"], run.cpus))
    assert run.bound_slices_per_s <= run.inference_slices_per_s * (1 + 1e-9)
    assert run.bound_ratio == pytest.approx(run.bound_slices_per_s / run.inference_slices_per_s)
    assert run.of_bound == pytest.approx(run.series_slices_per_s / run.bound_slices_per_s)
    assert run.inference_cpu_ms > 0 and run.peak_rss_mb > 0
    assert run.share_bound_ratio == pytest.approx(run.inference_cpu_ms / (run.inference_cpu_ms
                                                                          + run.stages["total_ms"]))


def test_series_bound_is_the_cpu_or_the_inference_limit():
    # 2 cores: 20 CPU ms of inference + 4 outside per slice -> 2000 / 24 slices/s, below 1000 / 10.
    assert series_bound(10.0, 20.0, 4.0, 2) == pytest.approx(2000 / 24)
    # Spare cores: nothing beats inference's own wall time per slice.
    assert series_bound(10.0, 10.0, 0.5, 4) == pytest.approx(100.0)
    assert series_bound(10.0, 10.0, 30.0, 1) == pytest.approx(25.0)


def test_bench_stages_times_each_stage_of_every_slice(tiny_model, tmp_path):
    files = write_series(tmp_path / "series", 3, EXAMPLES, seed=1)
    costs = bench_stages(Scorer(tiny_model, provider="cpu"), files, passes=2)
    assert (costs.files, costs.slices) == (3, 3)
    parts = [costs.read_ms, costs.decode_ms, costs.preprocess_ms, costs.physics_ms, costs.output_ms]
    assert all(value >= 0 for value in parts) and costs.decode_ms > 0 and costs.physics_ms > 0
    assert costs.total_ms == pytest.approx(sum(parts))
    assert costs.to_dict()["total_ms"] == pytest.approx(costs.total_ms)
    with pytest.raises(ValueError, match="no files to time"):
        bench_stages(Scorer(tiny_model, provider="cpu"), [])


def test_cli_bench_prints_the_bound_beside_the_ratio(tiny_model, capsys):
    code = main(["bench", "--model", str(tiny_model), "--quick", "--batch-size", "2", "--threads", "1",
                 "--generate", "3", "--template", str(EXAMPLES[0])])
    out = capsys.readouterr().out
    assert code == 0
    assert "3 slices" in out and "inference alone" in out
    assert "bound on" in out and "of the bound" in out and "at inference's own CPU share" in out
    assert "CPU ms per slice outside inference (one thread): read " in out and "physics " in out


@pytest.mark.slow
def test_bench_cli_splits_start_up_from_the_steady_rate(tiny_model, tmp_path):
    write_series(tmp_path / "series", 4, EXAMPLES, seed=1)
    cli = bench_cli(tmp_path / "series", model=str(tiny_model), runs=1)
    assert (cli.slices, cli.runs) == (4, 1)
    assert set(cli.startup) == {"import_s", "model_load_s", "first_call_s"}
    assert all(value > 0 for value in cli.startup.values())
    assert cli.whole_slices_per_s == pytest.approx(4 / cli.folder_s)
    if cli.folder_s > cli.one_file_s:
        assert cli.steady_slices_per_s == pytest.approx(3 / (cli.folder_s - cli.one_file_s))


@pytest.mark.filterwarnings("ignore:Expected implicit VR:UserWarning")
def test_bench_series_fails_loudly_on_unreadable_files(tiny_model, tmp_path):
    write_series(tmp_path / "series", 2, EXAMPLES, seed=1)
    (tmp_path / "series" / "notes.txt").write_text("not DICOM")
    with pytest.raises(RuntimeError, match="1 of 3 slices failed"):
        bench_series(Scorer(tiny_model, provider="cpu"), tmp_path / "series", runs=1, budget=Budget.smoke())


def test_cli_bench_json(tiny_model, capsys, tmp_path):
    code = main(["bench", "--model", str(tiny_model), "--quick", "--batch-size", "1", "2", "--threads", "1",
                 "--generate", "3", "--template", str(EXAMPLES[0]), "--json"])
    out = capsys.readouterr().out
    assert code == 0
    document = json.loads(out)
    assert [(r["batch"], r["threads"], r["timing"]["calls"]) for r in document["inference"]] == [(1, 1, 3), (2, 1, 3)]
    (series,) = document["series"]
    assert series["slices"] == 3 and series["ratio"] > 0


def test_cli_bench_usage_errors(tiny_model, capsys):
    assert main(["bench", "--model", str(tiny_model), "--generate", "3"]) == 2
    assert "--generate needs --template DICOM files" in capsys.readouterr().err
    assert main(["bench", "--batch-size", "0"]) == 2
    assert "must be >= 1, got 0" in capsys.readouterr().err


def test_run_process_measures_the_child_alone(tmp_path):
    # 300 MB touched by the child: its own ru_maxrss must show it, and the first line comes before the exit.
    script = "import sys, time\nprint('ready', flush=True)\nb = bytearray(300 * 1024 * 1024)\ntime.sleep(0.2)\n"
    run = run_process([sys.executable, "-c", script], env=clean_env(), cwd=str(tmp_path))
    assert run.returncode == 0 and run.stdout == "ready\n"
    assert run.peak_rss_mb >= 300
    assert run.first_output_s is not None and run.first_output_s + 0.2 <= run.wall_s
    # Forked from the small launcher, not from this (much larger) pytest process.
    small = run_process([sys.executable, "-c", "print(1)"], env=clean_env(), cwd=str(tmp_path))
    assert small.peak_rss_mb < 40


def test_tree_size_counts_files_not_links(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 1000)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"y" * 500)
    os.symlink(tmp_path / "a", tmp_path / "link")
    assert tree_size_mb(tmp_path) == pytest.approx(1500 / 1e6)


def _fake_results(int8_ms: float, tf_ms: float, predict_ms: float) -> dict:
    def run(precision, threads, batch, p50, rate):
        return {"precision": precision, "label": precision, "threads": threads, "batch": batch,
                "per_slice": {"p50_ms": p50},
                "slices_per_s": rate, "gmac_per_s": rate * 5.33}

    return {
        "config": {"threads": [1, 2]},
        "inference": {"runs": [run("int8", 2, 1, int8_ms, 1000 / int8_ms), run("int8", 2, 16, 8.0, 125.0),
                               run("int8", 1, 16, 4.0, 250.0), run("fp32", 2, 1, 40.0, 25.0),
                               # another INT8 model under its own label must not enter the ratios
                               run("int8", 2, 1, 1.0, 1000.0) | {"label": "int8-other"}]},
        "keras": {"latency": {"runs": [{"mode": "tf.function", "batch": 1, "per_slice": {"p50_ms": tf_ms}},
                                       {"mode": "model.predict", "batch": 1, "per_slice": {"p50_ms": predict_ms}}]},
                  "cold_start": {"first_output_s": 3.6, "peak_rss_mb": 600.0}, "environment": {"size_mb": 2000.0}},
        "install": {"cold_start": {"first_output_s": 0.4, "peak_rss_mb": 100.0}, "venv": {"size_mb": 240.0}},
        "series": {"runs": [{"syntax": "explicit-le", "api": "Scorer.score_series", "ratio": 0.9,
                             "bound_ratio": 1.0, "share_bound_ratio": 0.92},
                            {"syntax": "explicit-le", "api": "deltaiqa-lite score FOLDER", "ratio": 0.6,
                             "steady_ratio": 0.85}]},
        "ceiling": {"best": {"int8@2": {"gmac_per_s": 800.0}, "int8@any": {"gmac_per_s": 1000.0},
                             "fp32@2": {"gmac_per_s": 200.0}, "fp32@any": {"gmac_per_s": 200.0}}},
    }


def test_ratios_and_targets_from_one_run():
    values = ratios(_fake_results(int8_ms=10.0, tf_ms=40.0, predict_ms=60.0))
    assert values["int8_vs_tf_function"] == pytest.approx(4.0)
    assert values["int8_vs_model_predict"] == pytest.approx(6.0)
    assert values["cold_start_speedup"] == pytest.approx(9.0)
    assert values["peak_rss_fraction"] == pytest.approx(1 / 6)
    assert values["env_size_fraction"] == pytest.approx(0.12)
    # Best INT8 run anywhere (1 thread, 250 slices/s) against the best GEMM at any thread count;
    # and at all cores only (2 threads: 125 slices/s against 800).
    assert values["int8_ceiling_fraction"] == pytest.approx(250 * 5.33 / 1000)
    assert values["int8_ceiling_fraction_all_cores"] == pytest.approx(125 * 5.33 / 800)
    assert values["fp32_ceiling_fraction"] == pytest.approx(25 * 5.33 / 200)
    assert (values["cli_series_vs_inference"], values["cli_steady_vs_inference"]) == (0.6, 0.85)
    assert (values["series_bound"], values["series_share_bound"]) == (1.0, 0.92)
    assert values["series_jpeg_lossless_vs_inference"] is None and values["series_jpeg_lossless_bound"] is None
    met = {row["key"]: row["met"] for row in targets(values)}
    assert met == {"int8_vs_tf_function": True, "int8_vs_model_predict": False, "series_vs_inference": True,
                   "series_jpeg_lossless_vs_inference": None,
                   "cold_start_speedup": True, "peak_rss_fraction": True, "env_size_fraction": True,
                   "int8_ceiling_fraction": True}


def _smoke(tmp_path: Path, skip: list[str]) -> tuple[subprocess.CompletedProcess, Path]:
    models = tmp_path / "models"
    models.mkdir()
    make_tiny_model(models / "deltaiqa-int8.onnx")
    make_tiny_model(models / "deltaiqa-fp32.onnx")
    out = tmp_path / "results"
    done = subprocess.run([sys.executable, "-m", "benchmarks", "run", "--smoke", "--models", str(models),
                           "--out", str(out), "--no-create-venvs", "--skip", *skip],
                          capture_output=True, text=True, cwd=REPO, timeout=600, check=False)
    return done, out


def test_suite_smoke_writes_results(tmp_path):
    done, out = _smoke(tmp_path, ["install", "keras", "openvino"])
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["mode"] == "smoke"
    for name in ("machine", "inference", "profile", "ceiling", "preprocess", "series"):
        assert "error" not in results[name], results[name].get("traceback")
    assert results["install"] == {"skipped": "--skip"}
    assert results["machine"]["usable_cpus"] >= 1
    assert results["machine"]["int8_kernel"]
    # Both tiny graphs are the same model: INT8-vs-FP32 agreement on the 5 examples is exact.
    agreement = results["agreement"]
    assert agreement["slices"] == 5 and agreement["max_abs_difference"] == 0 and agreement["within_bar"]
    assert {(r["precision"], r["batch"], r["threads"]) for r in results["inference"]["runs"]} == {
        ("fp32", 1, 1)}  # the tiny graphs both say fp32
    assert {r["syntax"] for r in results["preprocess"]["runs"]} >= {"explicit-le", "rle"}
    series = results["series"]["runs"]
    assert [r["api"] for r in series] == ["Scorer.score_series", "deltaiqa-lite score FOLDER"]
    assert all(r["slices"] == 8 and r["series_slices_per_s"] > 0 for r in series)
    assert results["ceiling"]["best"]["int8@1"]["gmac_per_s"] > 0
    assert results["ratios"]["series_vs_inference"] == pytest.approx(series[0]["ratio"])
    report = (out / "results.md").read_text()
    assert "## Targets (issue 4)" in report and "| fp32 | CPU | 1 | 1 |" in report
    assert "install: skipped: --skip" in report
    assert "INT8 vs FP32 on the 5 examples: mean |score difference| 0.0000, worst 0.0000" in report
    with Image.open(out / "latency.png") as chart:
        assert chart.format == "PNG" and chart.size[0] == 1100
    assert "Scorer.score_series throughput / pure inference throughput" in done.stdout


@pytest.mark.slow
@pytest.mark.build
def test_suite_smoke_keras_baseline(tmp_path):
    pytest.importorskip("tensorflow")
    done, out = _smoke(tmp_path, ["openvino", "profile", "ceiling", "preprocess", "series", "install"])
    assert done.returncode == 0, done.stderr[-3000:]
    keras = json.loads((out / "results.json").read_text())["keras"]
    assert {(r["mode"], r["batch"]) for r in keras["latency"]["runs"]} == {("model.predict", 1), ("tf.function", 1)}
    assert keras["cold_start"]["first_output_s"] > 0 and keras["cold_start"]["peak_rss_mb"] > 200
    assert "tensorflow" in keras["environment"]["closure"] and keras["environment"]["size_mb"] > 100
    assert len(keras["latency"]["probe_probabilities"]) == 2
