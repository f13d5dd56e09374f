"""Scoring: slices in, Likert results out.

:class:`Scorer` owns one onnxruntime session (made once, reused, safe to call
from several threads: ``InferenceSession.run`` is thread-safe and the scorer
keeps no other mutable state). ``score_paths`` overlaps reading and
preprocessing (a small thread pool: pydicom's decoders and NumPy release the
GIL for much of their work) with batched inference, so the slower stage sets
the pace rather than the sum of both.

Scoring rule (DESIGN.md section 3): ``score = sum_k k * p_k`` on 0..4,
``likert = argmax p``, ``label = class_labels[likert]``.
"""

from __future__ import annotations

import os
import statistics
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Collection, Iterable, Iterator, Sequence

import numpy as np

from deltaiqa_lite.errors import DeltaIQAError, InputError, ModelError, RefusedInput
from deltaiqa_lite.physics import PHYSICS_FIELDS, SliceMeasurement, TrainingDomain, measure_slice
from deltaiqa_lite.model.preprocess import Preprocessing, prepare_slice
from deltaiqa_lite.read import Slice, expand_paths, read_slices
from deltaiqa_lite.read.series import group_series

__all__ = ["Scorer", "SliceResult", "SeriesResult", "likert_from_probabilities",
           "summarise_series", "summarise_scores", "group_results", "prepare_slice", "read_file",
           "PipelineDefaults", "pipeline_defaults", "usable_cpus"]

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
CLASSES = np.arange(5, dtype=np.float64)


@dataclass
class SliceResult:
    """The score of one slice (or the reason there is none).

    ``status`` is ``"ok"`` or ``"error"``; on error ``score``, ``likert``,
    ``label`` and ``probabilities`` are None and ``error`` holds the
    one-line reason. ``frame`` is the frame/page index in multi-frame files.

    Selection policy (:mod:`deltaiqa_lite.read.policy`): ``refused_kind`` is the
    kind of image refused (``"localizer"``, ``"MIP"``, ``"perfusion map"`` ...;
    ``"not scoreable"`` for other refusals such as MR or RGB), None unless refused;
    ``policy_override`` the refused values scored on purpose (``accept``);
    ``policy_note`` what the header could not tell.
    Physics beside the network (:mod:`deltaiqa_lite.physics`, ``docs/physics.md``):
    ``noise_hu`` global noise level, ``water_equivalent_diameter_mm`` (TG-220),
    ``ctdivol_mgy`` from (0018,9345), ``ssde_mgy``, ``noise_score`` (the
    simulator's label rule on ``noise_hu``, continuous, not rounded), ``flags``
    (short codes) and ``physics_note`` (why a value is None); None where not
    computable.
    """

    path: str
    sop_instance_uid: str | None = None
    series_uid: str | None = None
    slice_location: float | None = None
    score: float | None = None
    likert: int | None = None
    label: str | None = None
    probabilities: tuple[float, float, float, float, float] | None = None
    status: str = "ok"
    error: str | None = None
    model: str | None = None
    precision: str | None = None
    provider: str | None = None
    frame: int | None = None
    instance_number: int | None = None
    policy_override: str | None = None
    policy_note: str | None = None
    refused_kind: str | None = None
    noise_hu: float | None = None
    water_equivalent_diameter_mm: float | None = None
    ctdivol_mgy: float | None = None
    ssde_mgy: float | None = None
    noise_score: float | None = None
    flags: list[str] = field(default_factory=list)
    physics_note: str | None = None

    @property
    def refused(self) -> bool:
        """On error: the input was refused (not CT, scout, MIP, too small...) rather than broken."""
        return self.refused_kind is not None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def name(self) -> str:
        return self.path if self.frame is None else f"{self.path}[{self.frame}]"

    def to_dict(self) -> dict:
        """Plain dict for writers (probabilities as a list)."""
        record = asdict(self)
        if record["probabilities"] is not None:
            record["probabilities"] = list(record["probabilities"])
        return record


@dataclass
class SeriesResult:
    """Per-series summary of the ``ok`` slices, and all slices in order.

    ``p10`` is the 10th percentile (linear interpolation, NumPy's default).
    ``n_below`` counts ok slices scoring below ``flag_below`` (None when no
    threshold was given). Physics: ``noise_hu_median`` over the slices,
    ``water_equivalent_diameter_mm_middle`` of the middle slice (TG-220
    practice; the nearest slice with a value when the middle one has none),
    ``ssde_mgy_mean`` and ``n_flagged`` (slices with at least one flag).
    """

    series_uid: str | None
    n_slices: int
    n_ok: int
    n_failed: int
    mean: float | None
    median: float | None
    minimum: float | None
    p10: float | None
    flag_below: float | None
    n_below: int | None
    noise_hu_median: float | None = None
    water_equivalent_diameter_mm_middle: float | None = None
    ssde_mgy_mean: float | None = None
    n_flagged: int = 0
    slices: list[SliceResult] = field(default_factory=list)

    def to_dict(self, with_slices: bool = False) -> dict:
        record = {k: v for k, v in asdict(self).items() if k != "slices"}
        if with_slices:
            record["slices"] = [s.to_dict() for s in self.slices]
        return record


def likert_from_probabilities(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expected score and argmax class of each row of ``[N, 5]`` probabilities."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    return probabilities @ CLASSES, probabilities.argmax(axis=1)


def summarise_scores(series_uid: str | None, scores: Sequence[float], n_slices: int,
                     flag_below: float | None = None) -> SeriesResult:
    """The summary of one series from its ok scores and its slice count (no slice list).

    The one implementation behind :func:`summarise_series` and the streaming
    writers of :mod:`deltaiqa_lite.engine`, which summarise from written rows.
    """
    if len(scores):
        values = np.asarray(scores, dtype=np.float64)
        mean, median = float(values.mean()), float(statistics.median(values.tolist()))
        minimum, p10 = float(values.min()), float(np.percentile(values, 10))
    else:
        mean = median = minimum = p10 = None
    n_below = None if flag_below is None else int(sum(score < flag_below for score in scores))
    return SeriesResult(series_uid=series_uid, n_slices=int(n_slices), n_ok=len(scores),
                        n_failed=int(n_slices) - len(scores), mean=mean, median=median, minimum=minimum,
                        p10=p10, flag_below=flag_below, n_below=n_below)


def summarise_series(series_uid: str | None, slices: Sequence[SliceResult],
                     flag_below: float | None = None) -> SeriesResult:
    """Count, mean, median, minimum, 10th percentile, slices below a threshold, and physics."""
    scores = [s.score for s in slices if s.ok and s.score is not None]
    summary = summarise_scores(series_uid, scores, len(slices), flag_below)
    noise = [s.noise_hu for s in slices if s.noise_hu is not None]
    ssde = [s.ssde_mgy for s in slices if s.ssde_mgy is not None]
    summary.noise_hu_median = float(statistics.median(noise)) if noise else None
    summary.water_equivalent_diameter_mm_middle = _middle_dw(slices)
    summary.ssde_mgy_mean = float(np.mean(ssde)) if ssde else None
    summary.n_flagged = sum(1 for s in slices if s.flags)
    summary.slices = list(slices)
    return summary


def _middle_dw(slices: Sequence[SliceResult]) -> float | None:
    """Dw of the middle slice (slices in anatomical order), else of the nearest slice that has one."""
    middle = (len(slices) - 1) / 2.0
    candidates = [(abs(index - middle), index) for index, s in enumerate(slices)
                  if s.water_equivalent_diameter_mm is not None]
    if not candidates:
        return None
    return slices[min(candidates)[1]].water_equivalent_diameter_mm


def group_results(results: Iterable[SliceResult], flag_below: float | None = None) -> list[SeriesResult]:
    """Group slice results into ordered series with summaries (inputs without a UID last)."""
    return [summarise_series(uid, members, flag_below) for uid, members in group_series(results)]


@dataclass(frozen=True)
class PipelineDefaults:
    """Scorer settings for one CPU count; None leaves the choice to onnxruntime."""

    threads: int | None
    spinning: bool | None
    batch_size: int
    reader_threads: int


# Chosen by measurement (benchmarks/defaults.py and the suite's what-ifs; tables and method in
# docs/benchmarks.md): CPUs this process may use -> settings. 2 CPUs: the quiet Zen 4 run
# scored a series fastest with spinning on, 2 readers, batch 8 (60.8 slices/s; spinning off
# 56.4, 1 reader 59.6, batch 16 56.0). 1 CPU: one intra-op thread has no pool to spin, and the
# contended runs could not tell readers or batch sizes apart, so they stay as they were.
MEASURED_DEFAULTS: dict[int, PipelineDefaults] = {
    1: PipelineDefaults(threads=1, spinning=None, batch_size=8, reader_threads=2),
    2: PipelineDefaults(threads=2, spinning=True, batch_size=8, reader_threads=2),
}
# Above the measured counts: onnxruntime's thread choice and spinning, as before.
UNMEASURED_DEFAULTS = PipelineDefaults(threads=None, spinning=None, batch_size=8, reader_threads=2)


def usable_cpus() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pipeline_defaults(cpus: int | None = None) -> PipelineDefaults:
    """The measured :class:`PipelineDefaults` for ``cpus`` (default: :func:`usable_cpus`)."""
    cpus = usable_cpus() if cpus is None else int(cpus)
    if cpus in MEASURED_DEFAULTS:
        return MEASURED_DEFAULTS[cpus]
    if cpus > max(MEASURED_DEFAULTS):
        return UNMEASURED_DEFAULTS
    return MEASURED_DEFAULTS[min(MEASURED_DEFAULTS)]


@dataclass
class _Prepared:
    """One read file: its slices' identities and planes, or its error."""

    path: str
    slices: list[Slice] = field(default_factory=list)
    planes: list[np.ndarray] = field(default_factory=list)
    physics: list[SliceMeasurement | None] = field(default_factory=list)
    error: InputError | None = None


def read_file(path: str, preprocessing: Preprocessing,
              image_window: tuple[float, float] | None = None,
              accept: Collection[str] = (), physics: bool = True) -> _Prepared:
    """Read and preprocess one file: its slices and network input planes, or its error.

    Never raises for input problems: the error is in ``_Prepared.error``. Module
    level (not a Scorer method) so that reading can run where no session is,
    e.g. in the Ray engine's read tasks.
    """
    prepared = _Prepared(path=path)
    try:
        for item in read_slices(path, image_window=image_window, accept=accept):
            prepared.planes.append(prepare_slice(item, preprocessing))
            # Physics here, in the reader threads (or Ray read tasks), so it overlaps inference.
            prepared.physics.append(measure(item) if physics else None)
            item.hu = item.unit = item.padding = None  # drop full-size planes early: batches add up
            prepared.slices.append(item)
        if not prepared.slices:
            raise InputError(path, "no slices in file")
    except InputError as error:
        prepared.error = error
    except Exception as error:  # a reader bug must not lose the rest of the batch
        prepared.error = InputError(path, f"unexpected {type(error).__name__}: {error}")
    if prepared.error is not None:
        prepared.slices, prepared.planes, prepared.physics = [], [], []
    return prepared


def measure(item: Slice) -> SliceMeasurement:
    """Physics of one slice at native resolution (before the network's score is known)."""
    return measure_slice(item.hu, item.pixel_spacing_mm, ctdivol_mgy=item.ctdivol_mgy,
                         ctdi_phantom=item.ctdi_phantom, body_part=item.body_part)


class Scorer:
    """Score CT slices with a Delta-IQA ONNX model.

    Parameters
    ----------
    model : {"int8", "fp32"} or path, default "int8"
        A shipped model or an ONNX file honouring the model contract.
    provider : {"auto", "cpu", "openvino", "tensorrt", "cuda"}, default "auto"
    threads : int, optional
        onnxruntime intra-op threads (default: by CPU count, see Notes).
    batch_size : int, optional
        Slices per inference call (default: by CPU count; 8 today).
    strict_provider : bool, default False
        Raise :class:`~deltaiqa_lite.errors.ProviderError` instead of warning
        when the session does not run on the requested provider.
    reader_threads : int, optional
        Threads reading and preprocessing files ahead of inference (default: by CPU count; 2 today).
    image_window : (centre, width), optional
        Window of plain images (PNG, JPEG, integer TIFF) so they can be scored.
    cache_dir : path, optional
        TensorRT engine cache folder.
    accept : sequence of str, optional
        Values or kinds that the selection policy refuses (MIP, RCBF, localizer ...)
        to score on purpose, for research; recorded in ``SliceResult.policy_override``.
    physics : bool, default True
        Measure noise level, water-equivalent diameter and SSDE of each slice
        (:mod:`deltaiqa_lite.physics`) in the reader threads, beside the score.
    spinning : bool, optional
        Whether onnxruntime's idle intra-op threads spin; None takes the default
        for this CPU count (:func:`pipeline_defaults`).

    Notes
    -----
    ``threads``, ``batch_size``, ``reader_threads`` and ``spinning`` left at
    None take :func:`pipeline_defaults` for the CPUs this process may use:
    the settings that scored a series fastest when measured
    (``docs/benchmarks.md``).

    Examples
    --------
    >>> scorer = Scorer("int8")                                # doctest: +SKIP
    >>> scorer.score_file("examples/dose-025.dcm").score       # doctest: +SKIP
    """

    def __init__(self, model: str | os.PathLike = "int8", *, provider: str = "auto",
                 threads: int | None = None, batch_size: int | None = None, strict_provider: bool = False,
                 reader_threads: int | None = None, image_window: tuple[float, float] | None = None,
                 cache_dir: str | os.PathLike | None = None, accept: Sequence[str] = (),
                 physics: bool = True, spinning: bool | None = None) -> None:
        from deltaiqa_lite.model.loaded import load_model
        from deltaiqa_lite.read.policy import normalise_accept

        defaults = pipeline_defaults()
        batch_size = defaults.batch_size if batch_size is None else batch_size
        threads = defaults.threads if threads is None else threads
        spinning = defaults.spinning if spinning is None else spinning
        reader_threads = defaults.reader_threads if reader_threads is None else reader_threads
        if batch_size < 1:
            raise DeltaIQAError(f"batch_size must be >= 1, got {batch_size}")
        self.reader_threads = max(1, int(reader_threads))
        self.spinning = spinning
        self.image_window = image_window
        self.accept: frozenset[str] = normalise_accept(accept)
        self.physics = bool(physics)
        loaded = load_model(model, provider=provider, threads=threads, batch_size=int(batch_size),
                            strict_provider=strict_provider, cache_dir=cache_dir, spinning=spinning)
        self.model_path: Path = loaded.model_path
        self.card: dict = loaded.card
        self.preprocessing: Preprocessing = loaded.preprocessing
        self.class_labels: list[str] = loaded.class_labels
        self.precision: str = loaded.precision
        self.model_name: str = loaded.model_name
        self.batch_size = int(batch_size)
        self.session, self.session_info = loaded.session, loaded.session_info
        # What outside-training checks against: the card's training.domain, else v1's.
        self.training_domain: TrainingDomain = TrainingDomain.from_card(self.card, source=str(self.model_path))
        self._check_contract()
        self.provider: str = self.session_info.providers[0]
        if self.provider == "CPUExecutionProvider":
            self._warn_int8_saturation()
        if self.session_info.resolved in ("tensorrt", "cuda", "openvino"):
            # First run builds engines / compiles kernels; do it here, not on the first file.
            self.predict(np.zeros((1, self.preprocessing.input_size, self.preprocessing.input_size, 1),
                                  dtype=np.float32))

    def _warn_int8_saturation(self) -> None:
        """One warning when an INT8 model not declared saturation-safe meets a CPU without VNNI."""
        from deltaiqa_lite.model import cpu

        message = cpu.saturation_warning(self.card, cpu.cpu_info(), model=self.model_path.name)
        if message:
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    @property
    def providers(self) -> list[str]:
        """Execution providers the session really uses (``session.get_providers()``)."""
        return list(self.session_info.providers)

    def _check_contract(self) -> None:
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        size = self.preprocessing.input_size
        if INPUT_NAME not in inputs or OUTPUT_NAME not in outputs:
            raise ModelError(f"{self.model_path}: expected input '{INPUT_NAME}' and output '{OUTPUT_NAME}', "
                             f"found inputs {sorted(inputs)} and outputs {sorted(outputs)}")
        shape = list(inputs[INPUT_NAME].shape)
        if len(shape) != 4 or shape[1:] != [size, size, 1]:
            raise ModelError(f"{self.model_path}: input '{INPUT_NAME}' has shape {shape}, "
                             f"expected [N, {size}, {size}, 1] (card input_size {size})")

    # -- inference ---------------------------------------------------------

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities ``[N, 5]`` of a prepared batch ``[N, size, size, 1]`` in [0, 1]."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        size = self.preprocessing.input_size
        if batch.ndim != 4 or batch.shape[1:] != (size, size, 1):
            raise DeltaIQAError(f"predict expects a batch of shape [N, {size}, {size}, 1], got {batch.shape}")
        if batch.shape[0] == 0:
            return np.zeros((0, 5), dtype=np.float32)
        chunks = [self.session.run([OUTPUT_NAME], {INPUT_NAME: batch[start:start + self.batch_size]})[0]
                  for start in range(0, batch.shape[0], self.batch_size)]
        return np.concatenate(chunks, axis=0)

    def _results(self, slices: Sequence[Slice], probabilities: np.ndarray,
                 physics: Sequence[SliceMeasurement | None] | None = None) -> list[SliceResult]:
        scores, classes = likert_from_probabilities(probabilities)
        results = [SliceResult(
            path=item.path, sop_instance_uid=item.sop_instance_uid, series_uid=item.series_uid,
            slice_location=item.slice_location, score=float(score), likert=int(likert),
            label=self.class_labels[int(likert)],
            probabilities=tuple(float(p) for p in row), status="ok", error=None,
            model=self.model_name, precision=self.precision, provider=self.provider,
            frame=item.frame, instance_number=item.instance_number,
            policy_override=item.policy_override, policy_note=item.policy_note)
            for item, score, likert, row in zip(slices, scores, classes, probabilities)]
        for result, measurement in zip(results, physics or ()):
            if measurement is not None:
                found = measurement.finish(result.score, domain=self.training_domain)
                for name in PHYSICS_FIELDS:
                    setattr(result, name, getattr(found, name))
        return results

    def _error_result(self, path: str, message: str,
                      error: InputError | None = None) -> SliceResult:
        return SliceResult(path=path, status="error", error=message, model=self.model_name,
                           precision=self.precision, provider=self.provider,
                           series_uid=getattr(error, "series_uid", None),
                           sop_instance_uid=getattr(error, "sop_instance_uid", None),
                           refused_kind=(getattr(error, "kind", None) or "not scoreable")
                           if isinstance(error, RefusedInput) else None)

    # -- public scoring API --------------------------------------------------

    def score_array(self, hu: np.ndarray, *, name: str = "array",
                    pixel_spacing_mm: tuple[float, float] | None = None,
                    ctdivol_mgy: float | None = None) -> SliceResult:
        """Score one 2-D slice given in HU (display orientation).

        ``pixel_spacing_mm`` (row, column) lets physics measure the slice;
        without it the physics fields are None with the reason in ``physics_note``.
        """
        hu = np.asarray(hu, dtype=np.float32)
        if hu.ndim != 2:
            raise InputError(name, f"expected a 2-D slice in HU, got shape {hu.shape}")
        item = Slice(path=name, hu=hu, pixel_spacing_mm=pixel_spacing_mm, ctdivol_mgy=ctdivol_mgy)
        plane = prepare_slice(item, self.preprocessing)
        return self._results([item], self.predict(plane[None, :, :, None]), [self._measure(item)])[0]

    def _measure(self, item: Slice) -> SliceMeasurement | None:
        return measure(item) if self.physics else None

    def score_slices(self, path: str | os.PathLike) -> list[SliceResult]:
        """Score every slice (frame, page) of one file; raises InputError for a bad file."""
        prepared = self._read(str(path))
        if prepared.error is not None:
            raise prepared.error
        planes = np.stack(prepared.planes)[..., None]
        return self._results(prepared.slices, self.predict(planes), prepared.physics)

    def score_file(self, path: str | os.PathLike) -> SliceResult:
        """Score a single-slice file (the first slice of a multi-frame file; see ``score_slices``).

        Raises
        ------
        InputError
            The file is unreadable or refused (the message says why).
        """
        return self.score_slices(path)[0]

    def _read(self, path: str) -> _Prepared:
        return read_file(path, self.preprocessing, self.image_window, accept=self.accept,
                         physics=self.physics)

    def iter_score_paths(self, paths: Sequence[str | os.PathLike] | str | os.PathLike,
                         progress: Callable[[int, int], None] | None = None) -> Iterator[SliceResult]:
        """Like :meth:`score_paths` but yields results, in input order, as batches finish."""
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        files = expand_paths(list(paths))
        lookahead = max(2 * self.batch_size, 2 * self.reader_threads)
        # One holder per output row, in input order; slices wait in `pending`
        # until a full batch has gone through the session.
        rows: deque[list[SliceResult | None]] = deque()
        pending: list[tuple[list[SliceResult | None], Slice, np.ndarray, SliceMeasurement | None]] = []

        def flush() -> None:
            if not pending:
                return
            probabilities = self.predict(np.stack([plane for _, _, plane, _ in pending])[..., None])
            for (holder, _, _, _), result in zip(pending, self._results(
                    [s for _, s, _, _ in pending], probabilities, [m for _, _, _, m in pending])):
                holder[0] = result
            pending.clear()

        with ThreadPoolExecutor(max_workers=self.reader_threads, thread_name_prefix="deltaiqa-read") as pool:
            futures: deque[Future[_Prepared]] = deque(
                pool.submit(self._read, path) for path in files[:lookahead])
            next_file = len(futures)
            for done in range(1, len(files) + 1):
                prepared = futures.popleft().result()
                if next_file < len(files):
                    futures.append(pool.submit(self._read, files[next_file]))
                    next_file += 1
                if prepared.error is not None:
                    rows.append([self._error_result(prepared.path, str(prepared.error),
                                                    prepared.error)])
                for item, plane, measurement in zip(prepared.slices, prepared.planes, prepared.physics):
                    holder: list[SliceResult | None] = [None]
                    rows.append(holder)
                    pending.append((holder, item, plane, measurement))
                    if len(pending) >= self.batch_size:
                        flush()
                if progress is not None:
                    progress(done, len(files))
                while rows and rows[0][0] is not None:
                    yield rows.popleft()[0]  # type: ignore[misc]
            flush()
            while rows:
                yield rows.popleft()[0]  # type: ignore[misc]

    def score_paths(self, paths: Sequence[str | os.PathLike] | str | os.PathLike,
                    progress: Callable[[int, int], None] | None = None) -> list[SliceResult]:
        """Score files and folders; every input appears in the output, in order.

        Folders are walked recursively. A file that cannot be scored gives one
        result with ``status="error"`` and its reason; this never raises for
        input problems.

        Parameters
        ----------
        paths : path or sequence of paths
        progress : callable(done, total), optional
            Called after each file is read.
        """
        return list(self.iter_score_paths(paths, progress=progress))

    def score_series(self, folder: str | os.PathLike | Sequence[str | os.PathLike], *,
                     flag_below: float | None = None,
                     progress: Callable[[int, int], None] | None = None) -> list[SeriesResult]:
        """Score a folder (or paths) and summarise per DICOM series, slices in anatomical order.

        Files that could not be read form a last group with ``series_uid=None``.
        """
        return group_results(self.score_paths(folder, progress=progress), flag_below=flag_below)

    # -- explanations ----------------------------------------------------------

    def explain(self, paths: Sequence[str | os.PathLike] | str | os.PathLike):
        """Grad-CAM on ``conv5`` for each slice of ``paths`` (list of ``Explanation``).

        Grad-CAM needs float dense weights, so it always runs on the FP32 model:
        this scorer's own model when it is FP32, else ``deltaiqa-fp32.onnx`` beside
        it, else the shipped FP32 model, on
        the same execution provider. The FP32 session is made on first use and
        kept. See :mod:`deltaiqa_lite.explain`.
        """
        from deltaiqa_lite.explain import Explainer  # a lower layer: imported on first use

        if getattr(self, "_explainer", None) is None:
            model: str | Path = self.model_path
            if self.precision != "fp32":
                sibling = self.model_path.with_name("deltaiqa-fp32.onnx")
                model = sibling if sibling.is_file() else "fp32"
            self._explainer = Explainer(model, provider=self.session_info.resolved,
                                        batch_size=self.batch_size, image_window=self.image_window,
                                        scorer=self if self.precision == "fp32" else None)
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        return self._explainer.explain_paths(paths)
