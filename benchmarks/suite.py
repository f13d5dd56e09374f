"""The benchmark suite: every measurement of issue 4 in one run, then JSON, Markdown and a PNG chart.

Sections (each can be skipped with ``--skip``; a section that cannot run here
records why instead of stopping the run):

machine      CPU model and flags, cores, memory, versions, load average, the INT8 kernel kind
agreement    INT8 vs FP32 on examples/*.dcm on this CPU (mean/worst |score difference|,
             rounded-score agreement): whether INT8's timings here are for right answers
inference    onnxruntime CPU EP: precision x threads x batch, p50/p95/p99, slices/s, GMAC/s
openvino     the same through the OpenVINO EP, in its own virtual environment
profile      onnxruntime's profiler: time per operator type of each model
ceiling      GEMM microbenchmarks: best FP32 and INT8 GMAC/s onnxruntime reaches here
preprocess   DICOM read + HU + window + crop/resize per slice, per transfer syntax
series       Scorer.score_series and the CLI on >= 200 DICOM files vs pure inference
install      wheel -> fresh runtime-only venv: size; cold start and peak RSS of
             ``deltaiqa-lite score one.dcm`` from it
keras        the Keras original from the build environment: model.predict and
             tf.function latency, cold start, peak RSS, environment size
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks import envs
from benchmarks.ceiling import save_gemm_models
from benchmarks.machine import load_average, machine_facts
from benchmarks.processes import clean_env, run_process
from deltaiqa_lite.engine.bench import (
    GMAC_PER_SLICE,
    Budget,
    bench_cli,
    bench_inference,
    bench_preprocessing,
    bench_series,
    cpu_count,
    make_session,
    write_series,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.dcm"))
SECTIONS = ("machine", "agreement", "inference", "openvino", "profile", "ceiling", "preprocess", "series", "install", "keras")
MODEL_FILES = {"int8": "deltaiqa-int8.onnx", "fp32": "deltaiqa-fp32.onnx"}
WEIGHTS_FILE = "deltaiqa.weights.h5"

# Targets of issue 4, as (ratio key, comparison, threshold, wording).
TARGETS = (
    ("int8_vs_tf_function", ">=", 3.5, "INT8 CPU per-slice latency vs Keras tf.function (batch 1)"),
    ("int8_vs_model_predict", ">=", 7.0, "INT8 CPU per-slice latency vs Keras model.predict (batch 1)"),
    ("series_vs_inference", ">=", 0.9, "Scorer.score_series throughput / pure inference throughput (issue 25)"),
    ("series_jpeg_lossless_vs_inference", ">=", 0.75,
     "JPEG Lossless series / pure inference (issue 25; or at its decode bound, see series_jpeg_lossless_bound)"),
    ("cold_start_speedup", ">=", 6.0, "Keras cold start / deltaiqa-lite cold start"),
    ("peak_rss_fraction", "<=", 0.25, "deltaiqa-lite peak RSS / Keras peak RSS"),
    ("env_size_fraction", "<=", 0.125, "runtime venv size / TensorFlow venv size"),
    ("int8_ceiling_fraction", ">=", 0.70, "INT8 model GMAC/s / INT8 GEMM ceiling (best of each, CPU EP)"),
)


@dataclass
class Config:
    """What one run measures and where it writes."""

    out: Path
    smoke: bool = False
    models_dir: Path | None = None
    weights: Path | None = None
    skip: set[str] = field(default_factory=set)
    build_python: str = sys.executable
    create_venvs: bool = True
    series_slices: int = 240
    cold_runs: int = 5
    extra_models: dict[str, Path] = field(default_factory=dict)
    wait_quiet_s: float = 0.0
    log: Callable[[str], None] = lambda message: print(message, file=sys.stderr, flush=True)

    @property
    def threads(self) -> list[int]:
        return [1] if self.smoke else sorted({1, cpu_count()})

    @property
    def batches(self) -> list[int]:
        return [1] if self.smoke else [1, 4, 16]

    @property
    def budget(self) -> Budget:
        return Budget.smoke() if self.smoke else Budget(warmup=3, min_calls=20, min_seconds=3.0, max_calls=300,
                                                        max_seconds=20.0)


def find_models(models_dir: Path | None) -> tuple[dict[str, Path], str]:
    """The two models and a word on where they came from (shipped models/, or a given folder)."""
    candidates = [models_dir] if models_dir else [REPO / "models"]
    for folder in candidates:
        paths = {k: folder / v for k, v in MODEL_FILES.items()}
        if all(p.is_file() for p in paths.values()):
            source = "shipped models/" if folder.resolve() == (REPO / "models").resolve() else str(folder)
            return paths, source
    raise SystemExit(f"benchmarks: {', '.join(MODEL_FILES.values())} not found in {candidates[0]}; "
                     "pass --models FOLDER")


def _fingerprints(paths: dict[str, Path | None]) -> dict[str, str | None]:
    """sha256 of each file (None for a missing one): which exact models a run measured."""
    import hashlib

    out = {}
    for label, path in paths.items():
        if path is None or not Path(path).is_file():
            out[label] = None
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        out[label] = digest.hexdigest()
    return out


def _busy_cpu_s() -> float | None:
    """Busy CPU time of the whole machine since boot (all CPUs, /proc/stat), in seconds."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(v) for v in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    busy = sum(ticks[:8]) - idle  # user nice system idle iowait irq softirq steal (guest is inside user)
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    """CPU time of this process and its finished children."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _wait_quiet(config: Config, name: str, window_s: float = 5.0, threshold_cpus: float = 0.15) -> float:
    """Wait (at most ``config.wait_quiet_s``) until other processes use under ``threshold_cpus`` CPUs.

    Returns the seconds waited. The suite is idle while it samples, so all busy time is others'.
    """
    started = time.perf_counter()
    while True:
        before = _busy_cpu_s()
        time.sleep(window_s)
        after = _busy_cpu_s()
        if before is None or after is None:
            return 0.0
        others = (after - before) / window_s
        waited = time.perf_counter() - started
        if others < threshold_cpus:
            return round(waited, 1)
        if waited >= config.wait_quiet_s:
            config.log(f"[{name}] machine still busy ({others:.2f} CPUs used by others) after {waited:.0f} s; "
                       "measuring anyway")
            return round(waited, 1)
        config.log(f"[{name}] waiting for a quiet machine ({others:.2f} CPUs used by others)")


def _section(results: dict, name: str, config: Config, body: Callable[[], dict]) -> None:
    if name in config.skip:
        results[name] = {"skipped": "--skip"}
        return
    waited = _wait_quiet(config, name) if config.wait_quiet_s > 0 else None
    started = time.perf_counter()
    busy_before, own_before = _busy_cpu_s(), _own_cpu_s()
    config.log(f"[{name}] ...")
    try:
        results[name] = body()
    except Exception as error:  # noqa: BLE001 - one failing section must not lose the others' figures
        results[name] = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()[-3000:]}
        config.log(f"[{name}] failed: {type(error).__name__}: {error}")
    results[name]["section_s"] = round(time.perf_counter() - started, 1)
    results[name]["load_average_after"] = load_average()
    busy_after, own_after = _busy_cpu_s(), _own_cpu_s()
    if busy_before is not None and busy_after is not None:
        # CPU seconds spent by everything else on the machine while this section ran: other
        # people's work skews timings, and this says by how much it could have.
        results[name]["other_cpu_s"] = round(max(0.0, (busy_after - busy_before) - (own_after - own_before)), 1)
    if waited is not None:
        results[name]["waited_for_quiet_s"] = waited
    config.log(f"[{name}] done in {results[name]['section_s']} s")


# -- sections ------------------------------------------------------------------

def run_agreement(models: dict[str, Path]) -> dict:
    """``deltaiqa-lite compare --model-a fp32 --model-b int8 examples/`` on this CPU, with issue 9's bar.

    INT8 arithmetic differs by CPU (int16 pair saturation without VNNI), so a
    timing of INT8 says little unless this CPU also gives INT8 the FP32 answers.
    """
    from deltaiqa_lite import Scorer
    from deltaiqa_lite.validate.compare import compare, to_json
    from deltaiqa_lite.model.cpu import cpu_info

    if not EXAMPLES:
        return {"skipped": "examples/*.dcm not found"}
    report = to_json(compare(Scorer(models["fp32"], provider="cpu"), Scorer(models["int8"], provider="cpu"),
                             [str(p) for p in EXAMPLES]))
    figures = {k: report[k] for k in ("mean_abs_difference", "max_abs_difference", "max_difference_at",
                                      "rounded_score_agreement", "class_agreement")}
    card = Scorer(models["int8"], provider="cpu").card
    return {**figures, "slices": report["counts"]["compared_slices"],
            "within_bar": (figures["mean_abs_difference"] <= 0.05 and figures["max_abs_difference"] <= 0.15
                           and figures["rounded_score_agreement"] >= 0.97),
            "bar": "mean <= 0.05, worst <= 0.15, rounded agreement >= 0.97 (issue 9)",
            "int8_kernel": cpu_info().kernel(),
            "int8_saturation_safe": (card.get("quantization") or {}).get("saturation_safe") is True,
            "scores": {Path(row["input"]).name: {"fp32": row["score_a"], "int8": row["score_b"]}
                       for row in report["slices"]}}


def run_inference(models: dict[str, Path], config: Config) -> dict:
    runs = []
    for precision, path in models.items():
        for threads in config.threads:
            session = make_session(path, "cpu", threads)
            for batch in config.batches:
                run = bench_inference(path, provider="cpu", threads=threads, batch=batch, budget=config.budget,
                                      session=session)
                config.log(f"  {precision} cpu threads {threads} batch {batch}: "
                           f"{run.per_slice['p50_ms']:.1f} ms/slice p50, {run.slices_per_s:.1f} slices/s")
                runs.append(run.to_dict() | {"label": precision})
    return {"runs": runs}


def run_openvino(models: dict[str, Path], config: Config, work: Path) -> dict:
    venv = envs.openvino_venv(clean_env(), create=config.create_venvs and not config.smoke)
    if venv is None:
        return {"skipped": "no OpenVINO venv (build/test-venvs/openvino or build/bench-venvs/openvino); "
                           "a full run creates one"}
    budget = config.budget
    spec = {"models": {k: str(v) for k, v in models.items()}, "provider": "openvino", "threads": config.threads,
            "batches": config.batches, "smoke": config.smoke,
            "gemm": save_gemm_models(work / "gemm", smoke=config.smoke),
            "budget": {k: getattr(budget, k) for k in ("warmup", "min_calls", "min_seconds", "max_calls",
                                                       "max_seconds")}}
    done = run_process([envs.venv_bin(venv, "python"), str(REPO / "benchmarks" / "worker.py"), json.dumps(spec)],
                       env=clean_env({"PYTHONPATH": str(REPO)}), cwd=str(REPO), timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"OpenVINO worker failed ({done.returncode}): {done.stderr[-1500:]}")
    document = json.loads(done.stdout)
    document["venv"] = str(venv)
    return document


def run_profile(models: dict[str, Path], config: Config) -> dict:
    from benchmarks.ceiling import profile_ops

    threads, batch = cpu_count(), (1 if config.smoke else 16)
    return {precision: profile_ops(path, threads=threads, batch=batch, runs=1 if config.smoke else 5)
            for precision, path in models.items()}


def run_ceiling(config: Config) -> dict:
    from benchmarks.ceiling import ceilings

    return ceilings(config.threads, smoke=config.smoke)


def _available_syntaxes() -> tuple[list[str], dict[str, str]]:
    syntaxes, missing = ["explicit-le", "rle"], {}
    if shutil.which("dcmcjpeg"):
        syntaxes.append("jpeg-lossless")
    else:
        missing["jpeg-lossless"] = "DCMTK dcmcjpeg not on PATH (needed to write it)"
    try:
        from pydicom.pixels.encoders import JPEG2000LosslessEncoder
        if JPEG2000LosslessEncoder.is_available:
            syntaxes.append("jpeg2000-lossless")
        else:
            missing["jpeg2000-lossless"] = "pylibjpeg-openjpeg not installed (needed to write it)"
    except ImportError as error:
        missing["jpeg2000-lossless"] = str(error)
    return syntaxes, missing


def run_preprocess(config: Config, work: Path) -> dict:
    syntaxes, missing = _available_syntaxes()
    count, passes = (4, 1) if config.smoke else (40, 3)
    runs = []
    for syntax in syntaxes:
        files = write_series(work / f"pre-{syntax}", count, EXAMPLES, syntax=syntax, seed=1)
        run = bench_preprocessing(files, syntax, passes=passes)
        config.log(f"  {syntax}: {run.timing.p50_ms:.1f} ms/slice p50 ({run.mean_file_kb:.0f} kB/file)")
        runs.append(run.to_dict())
    return {"runs": runs, "not_measured": missing}


def run_series(models: dict[str, Path], config: Config, work: Path) -> dict:
    from deltaiqa_lite.score import Scorer

    syntaxes, _ = _available_syntaxes()
    chosen = ["explicit-le"] + (["jpeg-lossless"] if "jpeg-lossless" in syntaxes and not config.smoke else [])
    count = 8 if config.smoke else config.series_slices
    out: dict = {"slices": count, "runs": []}
    for syntax in chosen:
        folder = work / f"series-{syntax}"
        write_series(folder, count, EXAMPLES, syntax=syntax, seed=2)
        scorer = Scorer(models["int8"], provider="cpu")
        run = bench_series(scorer, folder, runs=1 if config.smoke else 3, budget=config.budget).to_dict()
        run["syntax"] = syntax
        run["api"] = "Scorer.score_series"
        config.log(f"  score_series {syntax}: {run['series_slices_per_s']:.1f} slices/s vs inference "
                   f"{run['inference_slices_per_s']:.1f} ({run['ratio']:.0%})")
        out["runs"].append(run)
        # The CLI on the same folder: fresh processes on one file and on the folder, so that start-up
        # (interpreter, imports, model load, first call) and the steady rate are told apart.
        cli = bench_cli(folder, model=str(models["int8"]), provider="cpu", runs=1 if config.smoke else 2)
        out["runs"].append({"syntax": syntax, "api": "deltaiqa-lite score FOLDER", "slices": count,
                            "wall_s": cli.folder_s, "series_slices_per_s": cli.whole_slices_per_s,
                            "inference_slices_per_s": run["inference_slices_per_s"],
                            "ratio": cli.whole_slices_per_s / run["inference_slices_per_s"],
                            "steady_ratio": cli.steady_slices_per_s / run["inference_slices_per_s"],
                            **{k: v for k, v in cli.to_dict().items() if k not in ("slices",)},
                            "note": "whole: wall time of the process on the folder; steady: (slices - 1) / "
                                    "(folder process - one-file process)"})
        config.log(f"  CLI {syntax}: whole {cli.whole_slices_per_s:.1f} slices/s "
                   f"({cli.whole_slices_per_s / run['inference_slices_per_s']:.0%}), start-up {cli.one_file_s:.2f} s, "
                   f"steady {cli.steady_slices_per_s:.1f} slices/s "
                   f"({cli.steady_slices_per_s / run['inference_slices_per_s']:.0%})")
    if not config.smoke:
        out["what_if"] = series_what_if(models, config, work / "series-explicit-le")
    return out


def series_what_if(models: dict[str, Path], config: Config, folder: Path) -> list[dict]:
    """Diagnostics for the series target: the same series with one pipeline setting changed.

    Not how the runtime runs today; each row says which knob would move the
    end-to-end ratio, so the owner of score.py/session.py can decide.
    """
    from deltaiqa_lite.score import Scorer

    variants = []
    for label, make in (
            ("reader_threads=1", lambda: Scorer(models["int8"], provider="cpu", reader_threads=1)),
            ("batch_size=16", lambda: Scorer(models["int8"], provider="cpu", batch_size=16)),
            ("intra-op spinning on", lambda: Scorer(models["int8"], provider="cpu", spinning=True)),
            ("intra-op spinning off", lambda: Scorer(models["int8"], provider="cpu", spinning=False))):
        scorer = make()
        run = bench_series(scorer, folder, runs=3, budget=config.budget).to_dict()
        run["variant"] = label
        config.log(f"  what-if {label}: {run['series_slices_per_s']:.1f} vs {run['inference_slices_per_s']:.1f} "
                   f"slices/s ({run['ratio']:.0%})")
        variants.append(run)
    return variants


def _median_process(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return float(statistics.median(values)) if values else None


def _cold_runs(command: list[str], config: Config, env: dict, cwd: str) -> dict:
    """One unmeasured run (page cache), then ``cold_runs`` measured fresh processes."""
    count = 1 if config.smoke else config.cold_runs
    first = run_process(command, env=env, cwd=cwd)
    if first.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {first.returncode}: {first.stderr[-1500:]}")
    runs = [run_process(command, env=env, cwd=cwd).to_dict() for _ in range(count)]
    failed = [r for r in runs if r["returncode"] != 0]
    if failed:
        raise RuntimeError(f"{' '.join(command)} failed: {failed[0]['stderr']}")
    return {"command": command, "first_run": first.to_dict(), "runs": runs,
            "first_output_s": _median_process(runs, "first_output_s"), "wall_s": _median_process(runs, "wall_s"),
            "peak_rss_mb": _median_process(runs, "peak_rss_mb")}


def run_install(models: dict[str, Path], source: str, config: Config, work: Path) -> dict:
    wheel = envs.build_wheel(work / "dist")
    venv_info = envs.runtime_venv(work / "venvs", wheel, clean_env())
    venv = Path(venv_info["venv"])
    example = work / "one.dcm"
    shutil.copy(REPO / "examples" / "dose-025.dcm", example)
    command = [envs.venv_bin(venv, "deltaiqa-lite"), "score", str(example), "--json", "--provider", "cpu"]
    if source != "shipped models/":
        command += ["--model", str(models["int8"])]  # the wheel carries no models until models/ holds them
    cold = _cold_runs(command, config, clean_env(), str(work))
    document = json.loads(subprocess.run(command, capture_output=True, text=True, env=clean_env(),
                                         cwd=str(work), check=False).stdout)
    cold["score"] = document["slices"][0]["score"]
    cold["model_path"] = document["model_path"]
    return {"venv": venv_info, "cold_start": cold}


def _build_python_has_tf(python: str) -> bool:
    done = subprocess.run([python, "-c", "import importlib.util as u; print(bool(u.find_spec('tensorflow')))"],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip() == "True"


def run_keras(models: dict[str, Path], config: Config, work: Path, empty_venv_mb: float | None) -> dict:
    python = config.build_python
    if not _build_python_has_tf(python):
        return {"skipped": f"{python} has no TensorFlow (the build environment: pip install '.[build]')"}
    env = clean_env({"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"})
    weights = config.weights
    weights_note = "given"
    if weights is None or not weights.is_file():
        weights = work / "random.weights.h5"
        done = subprocess.run([python, "-m", "benchmarks.keras_baseline", "random-weights", str(weights)],
                              capture_output=True, text=True, env=env, cwd=str(REPO), check=False)
        if done.returncode != 0:
            raise RuntimeError(f"random weights: {done.stderr[-1500:]}")
        weights_note = "random (seed 0): no weights file given; latency does not depend on weight values"
    latency_cmd = [python, "-m", "benchmarks.keras_baseline", "latency", str(weights), "--batch",
                   *map(str, config.batches if config.smoke else [1, 16])]
    if config.smoke:
        latency_cmd.append("--smoke")
    done = run_process(latency_cmd, env=env, cwd=str(REPO), timeout=1200)
    if done.returncode != 0:
        raise RuntimeError(f"Keras latency failed: {done.stderr[-1500:]}")
    latency = json.loads(done.stdout)
    for run in latency["runs"]:
        config.log(f"  keras {run['mode']} batch {run['batch']}: {run['per_slice']['p50_ms']:.1f} ms/slice p50")
    # Same weights as the FP32 ONNX model? Compare on the probe input.
    probe = np.random.default_rng(123).random((2, 512, 512, 1), dtype=np.float32)
    onnx_probs = make_session(models["fp32"], "cpu").run(["probabilities"], {"image": probe})[0]
    latency["max_abs_diff_vs_onnx_fp32"] = float(np.abs(np.asarray(latency["probe_probabilities"]) - onnx_probs).max())
    example = work / "one.dcm"
    if not example.exists():
        shutil.copy(REPO / "examples" / "dose-025.dcm", example)
    cold = _cold_runs([python, "-m", "benchmarks.keras_baseline", "coldstart", str(weights), str(example)],
                      config, env, str(REPO))
    closure = subprocess.run([python, "-c", envs.closure_size_script, "tensorflow", "pydicom"],
                             capture_output=True, text=True, check=False)
    if closure.returncode != 0:
        raise RuntimeError(f"environment size: {closure.stderr[-1500:]}")
    size = json.loads(closure.stdout)
    if empty_venv_mb is None:
        empty = work / "venvs" / "empty-for-keras"
        subprocess.run([sys.executable, "-m", "venv", str(empty)], check=True, capture_output=True)
        empty_venv_mb = envs.tree_size_mb(empty)
    build_prefix = subprocess.run([python, "-c", "import sys; print(sys.prefix)"], capture_output=True,
                                  text=True, check=False).stdout.strip()
    return {"weights": str(weights), "weights_note": weights_note, "latency": latency, "cold_start": cold,
            "environment": {"tensorflow_closure_mb": size["size_mb"], "closure": size["closure"],
                            "empty_venv_mb": empty_venv_mb, "size_mb": size["size_mb"] + empty_venv_mb,
                            "whole_build_venv_mb": envs.tree_size_mb(build_prefix), "build_venv": build_prefix}}


# -- ratios ----------------------------------------------------------------------

def _find(runs: list[dict], **where) -> dict | None:
    for run in runs:
        if all(run.get(k) == v for k, v in where.items()):
            return run
    return None


def ratios(results: dict) -> dict:
    """Headline ratios from one run's figures; a ratio whose inputs are missing is None."""
    all_cores = results.get("config", {}).get("threads", [1])[-1]
    cpu_runs = results.get("inference", {}).get("runs", [])
    int8_b1 = _find(cpu_runs, label="int8", threads=all_cores, batch=1)
    keras_runs = results.get("keras", {}).get("latency", {}).get("runs", [])
    tf_b1 = _find(keras_runs, mode="tf.function", batch=1)
    predict_b1 = _find(keras_runs, mode="model.predict", batch=1)
    out: dict = {}

    def ratio(a, b):
        return a / b if a is not None and b not in (None, 0) else None

    int8_ms = int8_b1["per_slice"]["p50_ms"] if int8_b1 else None
    out["int8_vs_tf_function"] = ratio(tf_b1["per_slice"]["p50_ms"] if tf_b1 else None, int8_ms)
    out["int8_vs_model_predict"] = ratio(predict_b1["per_slice"]["p50_ms"] if predict_b1 else None, int8_ms)
    # Throughput at batch 16 (informative: the per-slice target is set at batch 1).
    int8_b16 = _find(cpu_runs, label="int8", threads=all_cores, batch=16)
    tf_b16 = _find(keras_runs, mode="tf.function", batch=16)
    out["int8_vs_tf_function_b16_throughput"] = ratio(int8_b16["slices_per_s"] if int8_b16 else None,
                                                      tf_b16["slices_per_s"] if tf_b16 else None)
    series = [r for r in results.get("series", {}).get("runs", []) if r.get("syntax") == "explicit-le"]
    api = _find(series, api="Scorer.score_series")
    cli = _find(series, api="deltaiqa-lite score FOLDER")
    out["series_vs_inference"] = api["ratio"] if api else None
    out["cli_series_vs_inference"] = cli["ratio"] if cli else None
    out["cli_steady_vs_inference"] = cli.get("steady_ratio") if cli else None
    out["series_bound"] = api.get("bound_ratio") if api else None
    out["series_share_bound"] = api.get("share_bound_ratio") if api else None
    compressed = _find(results.get("series", {}).get("runs", []), syntax="jpeg-lossless", api="Scorer.score_series")
    out["series_jpeg_lossless_vs_inference"] = compressed["ratio"] if compressed else None
    out["series_jpeg_lossless_bound"] = compressed.get("bound_ratio") if compressed else None
    out["series_jpeg_lossless_share_bound"] = compressed.get("share_bound_ratio") if compressed else None
    ours = results.get("install", {}).get("cold_start", {})
    theirs = results.get("keras", {}).get("cold_start", {})
    out["cold_start_speedup"] = ratio(theirs.get("first_output_s"), ours.get("first_output_s"))
    out["peak_rss_fraction"] = ratio(ours.get("peak_rss_mb"), theirs.get("peak_rss_mb"))
    out["env_size_fraction"] = ratio(results.get("install", {}).get("venv", {}).get("size_mb"),
                                     results.get("keras", {}).get("environment", {}).get("size_mb"))
    # Efficiency: the model's best GMAC/s in any measured configuration against the best GEMM
    # GMAC/s at any thread count (the machine's ceiling); and the same at all cores only.
    best = results.get("ceiling", {}).get("best", {})
    for precision in ("int8", "fp32"):
        model_best = max((r["gmac_per_s"] for r in cpu_runs if r.get("label") == precision), default=None)
        out[f"{precision}_ceiling_fraction"] = ratio(model_best, best.get(f"{precision}@any", {}).get("gmac_per_s"))
        model_all = max((r["gmac_per_s"] for r in cpu_runs
                         if r.get("label") == precision and r["threads"] == all_cores), default=None)
        out[f"{precision}_ceiling_fraction_all_cores"] = ratio(
            model_all, best.get(f"{precision}@{all_cores}", {}).get("gmac_per_s"))
    # The OpenVINO EP against its own GEMM ceiling and against the CPU EP and Keras.
    openvino = results.get("openvino", {})
    ov_runs = openvino.get("runs", [])
    ov_best = openvino.get("ceiling", {}).get("best", {})
    for precision in ("int8", "fp32"):
        model_best = max((r["gmac_per_s"] for r in ov_runs if r.get("label") == precision), default=None)
        out[f"openvino_{precision}_ceiling_fraction"] = ratio(
            model_best, ov_best.get(f"{precision}@any", {}).get("gmac_per_s"))
    ov_b1 = _find(ov_runs, label="int8", threads=all_cores, batch=1)
    ov_ms = ov_b1["per_slice"]["p50_ms"] if ov_b1 else None
    out["openvino_int8_vs_cpu_int8"] = ratio(int8_ms, ov_ms)
    out["openvino_int8_vs_tf_function"] = ratio(tf_b1["per_slice"]["p50_ms"] if tf_b1 else None, ov_ms)
    return out


def targets(ratio_values: dict) -> list[dict]:
    rows = []
    for key, comparison, threshold, wording in TARGETS:
        value = ratio_values.get(key)
        met = None if value is None else (value >= threshold if comparison == ">=" else value <= threshold)
        rows.append({"key": key, "what": wording, "target": f"{comparison} {threshold:g}", "value": value,
                     "met": met})
    return rows


# -- the run -----------------------------------------------------------------------

def run_suite(config: Config, notes: list[str] | None = None) -> dict:
    """Run every section not skipped; write results.json, results.md and latency.png into ``config.out``."""
    started = time.perf_counter()
    models, source = find_models(config.models_dir)
    # Extra models (e.g. another quantization of the same network) join the inference, OpenVINO and
    # profile sections under their label; the ratios use the shipped "int8"/"fp32" only.
    timed_models = {**models, **config.extra_models}
    if config.weights is None:
        # The Keras weights the ONNX models were exported from, where they sit beside them.
        folder = models["fp32"].parent
        found = sorted(folder.glob("*.weights.h5"))
        if (folder / WEIGHTS_FILE).is_file():
            config.weights = folder / WEIGHTS_FILE
        elif len(found) == 1:
            config.weights = found[0]
    results: dict = {
        "suite": "deltaiqa-lite benchmarks (issue 4)",
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "smoke" if config.smoke else "full",
        "config": {"threads": config.threads, "batches": config.batches, "budget": config.budget.__dict__,
                   "models": {k: str(v) for k, v in models.items()}, "models_source": source,
                   "extra_models": {k: str(v) for k, v in config.extra_models.items()},
                   "sha256": _fingerprints({**timed_models, "weights": config.weights}),
                   "weights": str(config.weights) if config.weights else None,
                   "gmac_per_slice": GMAC_PER_SLICE, "skip": sorted(config.skip)},
        "gpu": "not measured: this session had no GPU machine (the device tool reported none drawn); "
               "TensorRT and CUDA EP figures are missing",
    }
    with tempfile.TemporaryDirectory(prefix="deltaiqa-bench-") as temporary:
        work = Path(temporary)
        _section(results, "machine", config, machine_facts)
        _section(results, "agreement", config, lambda: run_agreement(models))
        _section(results, "inference", config, lambda: run_inference(timed_models, config))
        _section(results, "openvino", config, lambda: run_openvino(timed_models, config, work))
        _section(results, "profile", config, lambda: run_profile(timed_models, config))
        _section(results, "ceiling", config, lambda: run_ceiling(config))
        _section(results, "preprocess", config, lambda: run_preprocess(config, work))
        _section(results, "series", config, lambda: run_series(models, config, work))
        _section(results, "install", config, lambda: run_install(models, source, config, work))
        empty = results.get("install", {}).get("venv", {}).get("empty_venv_mb")
        _section(results, "keras", config, lambda: run_keras(models, config, work, empty))
    results["notes"] = list(notes or [])
    # The files must be the same at the end as at the start, or the sections measured different models.
    fingerprints_after = _fingerprints({**timed_models, "weights": config.weights})
    if fingerprints_after != results["config"]["sha256"]:
        changed = sorted(k for k in fingerprints_after if fingerprints_after[k] != results["config"]["sha256"].get(k))
        results["notes"].append(f"WARNING: model files changed during the run ({', '.join(changed)}); "
                                "the sections may have measured different files")
    results["ratios"] = ratios(results)
    results["targets"] = targets(results["ratios"])
    results["wall_s"] = round(time.perf_counter() - started, 1)
    write_results(results, config.out)
    return results


def write_results(results: dict, out: Path) -> None:
    from benchmarks.report import draw_chart, markdown

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (out / "results.md").write_text(markdown(results))
    draw_chart(results, out / "latency.png")
