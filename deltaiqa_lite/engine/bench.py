"""Latency and throughput measurements with the runtime alone (no TensorFlow, no extra packages).

Used by ``deltaiqa-lite bench`` (users measuring their own machine) and by the
``benchmarks/`` suite, which adds the Keras baseline, install sizes and the
GEMM ceilings around these functions.

Method: every timed call is preceded by warm-up calls (onnxruntime allocates
its arenas and packs weights on the first runs); then calls are repeated until
both a minimum count and a minimum time are reached, with a hard cap on calls
and time so that slow configurations (FP32, batch 16, one thread) stay
bounded. Percentiles are NumPy's linear interpolation over the per-call
times; per-slice figures divide a call by its batch size. Throughput is the
sustained rate, slices timed / total time timed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "GMAC_PER_SLICE",
    "SERIES_SYNTAXES",
    "Budget",
    "CliRun",
    "InferenceRun",
    "PreprocessRun",
    "SeriesRun",
    "StageCosts",
    "Timing",
    "bench_cli",
    "bench_inference",
    "bench_preprocessing",
    "bench_series",
    "bench_stages",
    "series_bound",
    "cpu_count",
    "make_session",
    "time_calls",
    "write_series",
]

# Multiply-accumulates of one Delta-IQA forward pass at 512x512 (DESIGN.md section 1).
GMAC_PER_SLICE = 5.33
INPUT_NAME, OUTPUT_NAME = "image", "probabilities"


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Budget:
    """How long to measure one configuration.

    Calls continue until at least ``min_calls`` calls and ``min_seconds``
    have passed, and stop at ``max_calls`` or ``max_seconds`` (whichever comes
    first, but never before ``min_calls``).
    """

    warmup: int = 3
    min_calls: int = 20
    min_seconds: float = 4.0
    max_calls: int = 300
    max_seconds: float = 30.0

    @classmethod
    def smoke(cls) -> Budget:
        """A few calls: proves the code path works, the figures mean little."""
        return cls(warmup=1, min_calls=3, min_seconds=0.0, max_calls=3, max_seconds=5.0)


@dataclass
class Timing:
    """Per-call wall times of one repeated operation, in milliseconds."""

    calls: int
    items_per_call: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    total_s: float

    @classmethod
    def from_seconds(cls, seconds: Sequence[float], items_per_call: int = 1) -> Timing:
        values = np.asarray(seconds, dtype=np.float64) * 1e3
        if values.size == 0:
            raise ValueError("no timed calls")
        p50, p95, p99 = np.percentile(values, [50, 95, 99])
        return cls(calls=int(values.size), items_per_call=int(items_per_call), p50_ms=float(p50),
                   p95_ms=float(p95), p99_ms=float(p99), mean_ms=float(values.mean()),
                   min_ms=float(values.min()), total_s=float(values.sum() / 1e3))

    @property
    def throughput(self) -> float:
        """Items per second, sustained over all timed calls."""
        return self.calls * self.items_per_call / self.total_s if self.total_s > 0 else float("nan")

    def per_item(self) -> dict[str, float]:
        """p50/p95/p99/mean of one item (a call's time divided by its batch size)."""
        n = self.items_per_call
        return {"p50_ms": self.p50_ms / n, "p95_ms": self.p95_ms / n, "p99_ms": self.p99_ms / n,
                "mean_ms": self.mean_ms / n}


def time_calls(call: Callable[[], object], budget: Budget = Budget(), items_per_call: int = 1) -> Timing:
    """Warm up, then time ``call()`` repeatedly within ``budget``.

    Parameters
    ----------
    call : callable
        The operation; its return value is ignored.
    budget : Budget
    items_per_call : int
        Slices (or files) one call handles, for per-item figures and throughput.

    Returns
    -------
    Timing
    """
    for _ in range(budget.warmup):
        call()
    seconds: list[float] = []
    started = time.perf_counter()
    while True:
        before = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - before)
        elapsed = time.perf_counter() - started
        if len(seconds) < budget.min_calls:
            continue
        if len(seconds) >= budget.max_calls or elapsed >= budget.max_seconds or elapsed >= budget.min_seconds:
            break
    return Timing.from_seconds(seconds, items_per_call)


# -- inference ---------------------------------------------------------------

@dataclass
class InferenceRun:
    """Latency and throughput of one model x provider x threads x batch configuration."""

    model: str
    model_path: str
    precision: str
    provider: str            # short name asked for
    providers: list[str]     # session.get_providers(): what ran
    threads: int
    batch: int
    timing: Timing
    per_slice: dict[str, float] = field(default_factory=dict)
    slices_per_s: float = float("nan")
    gmac_per_s: float = float("nan")

    def to_dict(self) -> dict:
        return asdict(self)


def make_session(model_path: str | os.PathLike, provider: str = "cpu", threads: int | None = None):
    """An onnxruntime session for measurement; fails if the provider is not the one running.

    The CPU session is created exactly as :class:`deltaiqa_lite.Scorer` creates
    it (:func:`deltaiqa_lite.model.session.create_session`). The OpenVINO EP takes
    its thread count from its own ``num_of_threads`` option, so it is passed
    there as well, otherwise a "1 thread" run would use every core.

    Returns
    -------
    onnxruntime.InferenceSession
    """
    from deltaiqa_lite.errors import ProviderError
    from deltaiqa_lite.model.session import available_providers, create_session

    if provider != "openvino":
        session, _ = create_session(model_path, provider=provider, threads=threads, strict_provider=True)
        return session
    import onnxruntime

    if "OpenVINOExecutionProvider" not in available_providers():
        raise ProviderError("provider 'openvino' (OpenVINOExecutionProvider) is not in this onnxruntime build")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.inter_op_num_threads = 1
    ov_options = {"device_type": "CPU"}
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        ov_options["num_of_threads"] = str(int(threads))
    session = onnxruntime.InferenceSession(str(model_path), sess_options=options,
                                           providers=[("OpenVINOExecutionProvider", ov_options),
                                                      "CPUExecutionProvider"])
    if session.get_providers()[0] != "OpenVINOExecutionProvider":
        raise ProviderError(f"provider 'openvino' was requested but the session runs on {session.get_providers()[0]}")
    return session


def bench_inference(model_path: str | os.PathLike, *, provider: str = "cpu", threads: int | None = None,
                    batch: int = 1, budget: Budget = Budget(), input_size: int = 512,
                    session=None, seed: int = 0) -> InferenceRun:
    """Time ``session.run`` on a fixed random batch in [0, 1].

    Latency of this network does not depend on the pixel values (dense
    convolutions, no early exit), so a seeded random batch stands for real
    slices. ``threads=None`` means every CPU of this process.
    """
    from deltaiqa_lite.model.card import read_card

    threads = cpu_count() if threads is None else int(threads)
    session = session or make_session(model_path, provider, threads)
    card = read_card(Path(model_path))
    images = np.random.default_rng(seed).random((batch, input_size, input_size, 1), dtype=np.float32)
    feeds = {INPUT_NAME: images}
    timing = time_calls(lambda: session.run([OUTPUT_NAME], feeds), budget, items_per_call=batch)
    return InferenceRun(model=str(card.get("name", Path(model_path).stem)), model_path=str(model_path),
                        precision=str(card.get("precision", "unknown")), provider=provider,
                        providers=list(session.get_providers()), threads=threads, batch=batch, timing=timing,
                        per_slice=timing.per_item(), slices_per_s=timing.throughput,
                        gmac_per_s=timing.throughput * GMAC_PER_SLICE)


# -- preprocessing -----------------------------------------------------------

@dataclass
class PreprocessRun:
    """Per-file time of reading one DICOM and preparing its network input (one thread)."""

    syntax: str
    transfer_syntax_uid: str
    files: int
    mean_file_kb: float
    timing: Timing
    read_ms: float           # p50 of read + decode + HU alone
    prepare_ms: float        # p50 of window + crop + resize alone

    def to_dict(self) -> dict:
        return asdict(self)


def bench_preprocessing(paths: Sequence[str | os.PathLike], syntax: str, preprocessing=None,
                        passes: int = 3) -> PreprocessRun:
    """Time read (pydicom decode, HU) and prepare (window, crop, resize) of each file, ``passes`` times.

    Files come from the page cache after the first pass; the figure is CPU
    cost, not disk speed.
    """
    import pydicom

    from deltaiqa_lite.model.preprocess import Preprocessing
    from deltaiqa_lite.read import read_slices
    from deltaiqa_lite.score import prepare_slice

    preprocessing = preprocessing or Preprocessing()
    paths = [str(p) for p in paths]
    if not paths:
        raise ValueError(f"{syntax}: no files to time")
    uid = str(pydicom.dcmread(paths[0], stop_before_pixels=True).file_meta.TransferSyntaxUID)
    for path in paths[:2]:  # import decoders and plugins outside the timing
        for item in read_slices(path):
            prepare_slice(item, preprocessing)
    total, read_s, prepare_s = [], [], []
    for _ in range(passes):
        for path in paths:
            start = time.perf_counter()
            items = list(read_slices(path))
            middle = time.perf_counter()
            for item in items:
                prepare_slice(item, preprocessing)
            end = time.perf_counter()
            total.append(end - start)
            read_s.append(middle - start)
            prepare_s.append(end - middle)
    size = float(np.mean([os.path.getsize(p) for p in paths])) / 1024
    return PreprocessRun(syntax=syntax, transfer_syntax_uid=uid, files=len(paths), mean_file_kb=size,
                         timing=Timing.from_seconds(total), read_ms=float(np.median(read_s) * 1e3),
                         prepare_ms=float(np.median(prepare_s) * 1e3))


# -- end to end --------------------------------------------------------------

@dataclass
class StageCosts:
    """CPU time per slice of the work around inference, each stage alone on one thread.

    ``read_ms`` is header parsing, the selection policy checks and the HU
    conversion (``read_slices`` less the pixel decode), ``decode_ms`` the pixel
    decode alone (``pydicom.pixels.pixel_array`` of a dataset already read),
    ``preprocess_ms`` window + crop + resize, ``physics_ms`` the physics
    measures, ``output_ms`` building the result records (``Scorer._results``
    with the physics flags). Medians over files, in CPU milliseconds of the
    calling thread (``time.thread_time``): waiting for a busy core does not
    count, so the figures hold on a contended machine as well.
    """

    files: int
    slices: int
    read_ms: float
    decode_ms: float
    preprocess_ms: float
    physics_ms: float
    output_ms: float

    @property
    def total_ms(self) -> float:
        return self.read_ms + self.decode_ms + self.preprocess_ms + self.physics_ms + self.output_ms

    def to_dict(self) -> dict:
        return {**asdict(self), "total_ms": self.total_ms}


def bench_stages(scorer, paths: Sequence[str | os.PathLike], passes: int = 2) -> StageCosts:
    """Time each stage outside inference on ``paths`` (one thread, files in the page cache).

    Uses the scorer's preprocessing, selection policy and training domain, so
    the stages are the ones :meth:`Scorer.score_series` runs. Physics is timed
    even when the scorer has it switched off (then it is 0 in the pipeline:
    pass ``physics=False`` scorers to see the figure without it).
    """
    import pydicom

    from deltaiqa_lite.model.preprocess import prepare_slice
    from deltaiqa_lite.read import read_slices
    from deltaiqa_lite.score import measure

    paths = [str(p) for p in paths]
    if not paths:
        raise ValueError("no files to time")
    probabilities = np.full((1, 5), 0.2, dtype=np.float32)
    stages: dict[str, list[float]] = {k: [] for k in ("read", "decode", "preprocess", "physics", "output")}
    slices = 0
    for index in range(passes + 1):   # pass 0 warms decoders, imports and the page cache
        for path in paths:
            clock = time.thread_time
            dataset = pydicom.dcmread(path)
            start = clock()
            pydicom.pixels.pixel_array(dataset)
            decode = clock() - start
            start = clock()
            items = list(read_slices(path, image_window=scorer.image_window, accept=scorer.accept))
            read = clock() - start
            start = clock()
            for item in items:
                prepare_slice(item, scorer.preprocessing)
            preprocess = clock() - start
            start = clock()
            measured = [measure(item) for item in items] if scorer.physics else [None] * len(items)
            physics = clock() - start
            start = clock()
            for item, measurement in zip(items, measured):
                scorer._results([item], probabilities, [measurement])
            output = clock() - start
            if index == 0:
                continue
            count = max(1, len(items))
            slices += len(items)
            stages["decode"].append(decode / count)
            stages["read"].append(max(0.0, read - decode) / count)
            stages["preprocess"].append(preprocess / count)
            stages["physics"].append(physics / count)
            stages["output"].append(output / count)
    median = {k: float(np.median(v) * 1e3) for k, v in stages.items()}
    return StageCosts(files=len(paths), slices=slices // passes, read_ms=median["read"],
                      decode_ms=median["decode"], preprocess_ms=median["preprocess"],
                      physics_ms=median["physics"], output_ms=median["output"])


def series_bound(inference_wall_ms: float, inference_cpu_ms: float, outside_cpu_ms: float,
                 cpus: int) -> float:
    """Slices per second no pipeline can beat on ``cpus`` cores (see ``docs/benchmarks.md``).

    Every slice costs ``inference_cpu_ms`` of CPU in the session (spinning
    included) and ``outside_cpu_ms`` around it; ``cpus`` cores supply at most
    ``cpus`` CPU-seconds per second, and inference cannot run faster than its
    own wall time per slice. The bound is the smaller of the two rates.
    """
    cpu_rate = 1e3 * cpus / (inference_cpu_ms + outside_cpu_ms)
    return min(1e3 / inference_wall_ms, cpu_rate)


@dataclass
class SeriesRun:
    """Scoring a series from files on disk against pure inference with the same session settings.

    ``bound_slices_per_s`` is :func:`series_bound` from ``stages`` and the
    inference CPU time; ``bound_ratio`` the bound over pure inference (the best
    ``ratio`` any pipeline could show on these cores, idle) and ``of_bound`` the
    measured rate over the bound. ``share_bound_ratio`` is the same bound for
    a pipeline that gets only the CPU time pure inference got,
    ``inference_cpu / (inference_cpu + outside)``: on a shared machine, where
    the cores are not ours, this is the ratio to compare with.
    """

    slices: int
    batch: int
    threads: int
    reader_threads: int
    series_s: float            # wall time of Scorer.score_series (median over runs)
    series_slices_per_s: float
    inference_slices_per_s: float  # Scorer.predict on prepared batches, same batch size
    ratio: float               # series / inference
    runs: int
    cpus: int = 1
    spinning: bool | None = None
    inference_cpu_ms: float = float("nan")   # process CPU time per slice during pure inference
    stages: dict = field(default_factory=dict)
    bound_slices_per_s: float = float("nan")
    bound_ratio: float = float("nan")
    of_bound: float = float("nan")
    share_bound_ratio: float = float("nan")
    peak_rss_mb: float = float("nan")

    def to_dict(self) -> dict:
        return asdict(self)


def bench_series(scorer, folder: str | os.PathLike, *, runs: int = 3, budget: Budget = Budget(),
                 stages: bool = True) -> SeriesRun:
    """End-to-end ``Scorer.score_series(folder)`` throughput vs ``Scorer.predict`` throughput.

    Both use the same scorer (session, threads, batch size). The first
    series run is a warm-up (decoder imports, page cache). Series runs and
    inference measurements alternate, so that a machine whose load changes
    affects both alike. With ``stages`` the work outside inference is timed
    too (:func:`bench_stages`) and the throughput bound derived from it.
    """
    import resource

    from deltaiqa_lite.read import expand_paths

    files = expand_paths([folder])
    count = None
    scorer.score_series(folder)
    size = scorer.preprocessing.input_size
    planes = np.random.default_rng(0).random((scorer.batch_size, size, size, 1), dtype=np.float32)
    times, inference_rates, inference_cpu = [], [], []
    part = Budget(warmup=1, min_calls=max(3, budget.min_calls // max(1, runs)),
                  min_seconds=budget.min_seconds / max(1, runs), max_calls=budget.max_calls,
                  max_seconds=budget.max_seconds / max(1, runs))
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        series = scorer.score_series(folder)
        times.append(time.perf_counter() - start)
        count = sum(s.n_ok for s in series)
        failed = sum(s.n_failed for s in series)
        if failed:
            raise RuntimeError(f"{folder}: {failed} of {len(files)} slices failed while benchmarking")
        cpu_before = time.process_time()
        inference = time_calls(lambda: scorer.predict(planes), part, items_per_call=scorer.batch_size)
        cpu_spent = time.process_time() - cpu_before
        inference_rates.append(inference.throughput)
        # Warm-up calls are few and as costly as timed ones: spread the CPU over all calls made.
        inference_cpu.append(cpu_spent / ((inference.calls + part.warmup) * scorer.batch_size))
    series_s = float(np.median(times))
    series_rate = count / series_s
    inference_rate = float(np.median(inference_rates))
    cpus = cpu_count()
    threads = scorer.session.get_session_options().intra_op_num_threads or cpus
    run = SeriesRun(slices=int(count), batch=scorer.batch_size, threads=int(threads),
                    reader_threads=scorer.reader_threads, series_s=series_s, series_slices_per_s=series_rate,
                    inference_slices_per_s=inference_rate, ratio=series_rate / inference_rate,
                    runs=len(times), cpus=cpus, spinning=getattr(scorer, "spinning", None),
                    inference_cpu_ms=float(np.median(inference_cpu) * 1e3),
                    peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if stages:
        costs = bench_stages(scorer, files[:min(len(files), 40)])
        run.stages = costs.to_dict()
        run.bound_slices_per_s = series_bound(1e3 / inference_rate, run.inference_cpu_ms, costs.total_ms, cpus)
        run.bound_ratio = run.bound_slices_per_s / inference_rate
        run.of_bound = series_rate / run.bound_slices_per_s
        run.share_bound_ratio = run.inference_cpu_ms / (run.inference_cpu_ms + costs.total_ms)
    return run


_STARTUP_PROBE = """
import json, sys, time
started = time.perf_counter()
from deltaiqa_lite.score import Scorer
imported = time.perf_counter()
scorer = Scorer(sys.argv[1], provider=sys.argv[2])
loaded = time.perf_counter()
scorer.score_file(sys.argv[3])
first = time.perf_counter()
print(json.dumps({"import_s": imported - started, "model_load_s": loaded - imported, "first_call_s": first - loaded}))
"""


@dataclass
class CliRun:
    """``deltaiqa-lite score FOLDER`` as a user runs it, split into start-up and steady state.

    ``one_file_s`` is a fresh process scoring one file (interpreter start,
    imports, model load, first call, writing); ``folder_s`` the same on the
    whole folder. The steady rate is the extra slices over the extra time,
    ``(slices - 1) / (folder_s - one_file_s)``: what the CLI sustains once
    started. ``startup`` splits a fresh process's start-up in-process: import,
    model load (card, session) and the first scored file.
    """

    slices: int
    runs: int
    folder_s: float
    one_file_s: float
    startup: dict
    whole_slices_per_s: float
    steady_slices_per_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def bench_cli(folder: str | os.PathLike, *, model: str = "int8", provider: str = "cpu", runs: int = 2,
              python: str | None = None) -> CliRun:
    """Time fresh ``python -m deltaiqa_lite score`` processes on one file and on ``folder`` (medians).

    The processes inherit this environment (the same install); results go to
    the null device. Runs alternate between the one-file and the folder
    process, after one untimed run of each to warm the page cache.
    """
    import json
    import subprocess
    import sys

    from deltaiqa_lite.read import expand_paths

    python = python or sys.executable
    files = expand_paths([folder])
    base = [python, "-m", "deltaiqa_lite", "score", "--model", str(model), "--provider", provider,
            "--json", "-o", os.devnull, "--no-progress"]

    def timed(command: list[str]) -> tuple[float, str]:
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command[:6])} ... exited {done.returncode}: {done.stderr[-600:]}")
        return wall, done.stdout

    one, whole, probes = [], [], []
    for index in range(max(1, runs) + 1):
        one_s, _ = timed(base + [str(files[0])])
        whole_s, _ = timed(base + [str(folder)])
        _, probe = timed([python, "-c", _STARTUP_PROBE, str(model), provider, str(files[0])])
        if index:
            one.append(one_s)
            whole.append(whole_s)
            probes.append(json.loads(probe.strip().splitlines()[-1]))
    one_file_s, folder_s = float(np.median(one)), float(np.median(whole))
    startup = {key: float(np.median([p[key] for p in probes])) for key in probes[0]}
    extra = folder_s - one_file_s
    return CliRun(slices=len(files), runs=len(one), folder_s=folder_s, one_file_s=one_file_s, startup=startup,
                  whole_slices_per_s=len(files) / folder_s,
                  steady_slices_per_s=(len(files) - 1) / extra if extra > 0 else float("nan"))


# Transfer syntaxes the suite writes; "dcmtk" ones need DCMTK's command-line tools.
SERIES_SYNTAXES = {
    "explicit-le": "1.2.840.10008.1.2.1",     # uncompressed
    "rle": "1.2.840.10008.1.2.5",             # pydicom encodes it natively
    "jpeg-lossless": "1.2.840.10008.1.2.4.70",  # dcmcjpeg +e1 (the usual CT archive syntax)
    "jpeg2000-lossless": "1.2.840.10008.1.2.4.90",  # pydicom + pylibjpeg-openjpeg
}


def write_series(folder: str | os.PathLike, count: int, templates: Sequence[str | os.PathLike], *,
                 syntax: str = "explicit-le", seed: int = 0) -> list[Path]:
    """Write ``count`` single-frame CT files of one series, from template slices.

    Each file takes a template's pixels shifted by a few pixels (so files
    differ and compress like CT, not like copies), a new SOP Instance UID, one
    shared Series Instance UID and consecutive positions 1 mm apart.

    Parameters
    ----------
    folder : path
        Created if needed.
    count : int
    templates : paths
        Single-frame CT DICOM files (e.g. ``examples/*.dcm``).
    syntax : key of :data:`SERIES_SYNTAXES`
        ``jpeg-lossless`` needs DCMTK's ``dcmcjpeg``; ``jpeg2000-lossless`` needs
        ``pylibjpeg-openjpeg``.

    Returns
    -------
    list of Path
    """
    import shutil
    import subprocess

    import pydicom
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        JPEG2000Lossless,
        RLELossless,
        generate_uid,
    )

    from deltaiqa_lite.errors import DeltaIQAError

    if syntax not in SERIES_SYNTAXES:
        raise DeltaIQAError(f"unknown transfer syntax '{syntax}'; choose {', '.join(SERIES_SYNTAXES)}")
    if syntax == "jpeg-lossless" and not shutil.which("dcmcjpeg"):
        raise DeltaIQAError("jpeg-lossless series need DCMTK's dcmcjpeg on PATH")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sources = [pydicom.dcmread(str(p)) for p in templates]
    if not sources:
        raise DeltaIQAError("no template DICOM files to build a series from")
    rng = np.random.default_rng(seed)
    series_uid = generate_uid(entropy_srcs=[f"deltaiqa-bench-series-{seed}-{syntax}"])
    written = []
    for index in range(count):
        ds = sources[index % len(sources)].copy()
        stored = ds.pixel_array
        shift = rng.integers(-8, 9, size=2)
        ds.PixelData = np.roll(stored, tuple(int(s) for s in shift), axis=(0, 1)).astype(stored.dtype).tobytes()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        uid = generate_uid(entropy_srcs=[series_uid, str(index)])
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = index + 1
        position = list(getattr(ds, "ImagePositionPatient", [0.0, 0.0, 0.0]))
        ds.ImagePositionPatient = [float(position[0]), float(position[1]), float(index)]
        ds.SliceLocation = float(index)
        path = folder / f"{index:04d}.dcm"
        if syntax == "rle":
            ds.compress(RLELossless, encoding_plugin="pydicom")
        elif syntax == "jpeg2000-lossless":
            ds.compress(JPEG2000Lossless)
        ds.save_as(str(path), enforce_file_format=True)
        if syntax == "jpeg-lossless":
            plain = path.with_suffix(".plain")
            path.rename(plain)
            subprocess.run(["dcmcjpeg", "+e1", str(plain), str(path)], check=True, capture_output=True)
            plain.unlink()
        written.append(path)
    return written
