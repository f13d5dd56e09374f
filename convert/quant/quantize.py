"""Static INT8 (QDQ, per-channel weights) with a calibration comparison and an accuracy gate.

Steps: ``quant_pre_process`` (shape inference and graph clean-up) ->
``quantize_static`` fed by a ``CalibrationDataReader`` over a sorted list of
training-split slices (never the test split) -> compare calibrations on the
validation split -> gate the chosen model against FP32 on the held-out test
split. A model that fails the gate is not written.

Calibrations compared: MinMax, Entropy (KL, 2048 bins) and Percentile
(99.999, 99.99 and 99.9; 2048 bins), each with symmetric (INT8) and
asymmetric (UINT8) activations. TensorRT accepts symmetric INT8 only, so a symmetric model is
preferred when it is about as good (see ``choose``).

Weights are 7-bit by default (``reduce_range``: int8 in -64..64). On x86 CPUs
without VNNI onnxruntime's u8s8 kernels add pairs of uint8 x int8 products in
int16 with saturation; with |w| <= 64 a pair is at most 255 * 64 * 2 = 32640,
so no CPU can saturate (see ``convert/quant/saturation.py``). The gate checks that
bound on the written model and also runs the held-out split through an exact
emulation of the saturating integer arithmetic.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from convert.card.card import attach_card, read_card
from convert.sim.data import LabelledSlice, evaluation_subset, load_image, read_folder, split_by_group
from convert.checks.evaluation import agreement, expected_score, quality_metrics
from convert.train.model import sha256_file

GATE = {"max_mean_abs_score_diff": 0.05, "min_class_agreement": 0.97, "max_sum_drop": 0.02}
METHODS = ("minmax", "entropy", "percentile99.999", "percentile99.99", "percentile99.9")
# A symmetric model (TensorRT), then one with every convolution in INT8 (faster),
# is kept unless another is clearly better: its worst-case |score difference|
# more than this factor smaller.
PREFERENCE = 1.5
# The held-out split is consulted for at most this many ranked variants, and
# every attempt is recorded in the card, so its use for selection is visible.
HELD_OUT_ATTEMPTS = 3
# Calibration slices used to measure channel ranges for cross-layer equalization.
EQUALIZE_SLICES = 64
# The equalized FP32 graph must give the FP32 scores to float rounding.
EQUALIZE_PARITY = 1e-4
# Weight formats: onnxruntime QuantType and reduce_range. "s7" (7-bit int8 weights)
# cannot saturate the int16 pair sums of the u8s8 kernels on CPUs without VNNI;
# "s8" (full-range int8) can; "u8" (uint8 weights) runs the slower u8u8 kernels.
WEIGHT_FORMATS = {
    "s7": ("QInt8", True, "per-channel symmetric 7-bit weights (int8 in -64..64, reduce_range)"),
    "s8": ("QInt8", False, "per-channel symmetric INT8 weights (-127..127)"),
    "u8": ("QUInt8", False, "per-channel asymmetric UINT8 weights"),
}
DEFAULT_WEIGHTS = "s7"


class QuantizationGateError(RuntimeError):
    """The INT8 model strays too far from FP32 on the held-out split."""


@dataclass(frozen=True)
class Variant:
    method: str                   # minmax | entropy | percentile
    symmetric: bool               # activations symmetric (TensorRT) or asymmetric
    float_first_conv: bool = False  # conv1 (and so the input image) kept in float

    @property
    def name(self) -> str:
        name = f"{self.method}-{'symmetric' if self.symmetric else 'asymmetric'}"
        return name + ("+conv1-float" if self.float_first_conv else "")

    @classmethod
    def parse(cls, text: str) -> "Variant":
        base, plus, suffix = text.partition("+")
        method, _, kind = base.partition("-")
        if (method not in METHODS or kind not in ("", "symmetric", "asymmetric")
                or (plus and suffix != "conv1-float")):
            raise ValueError(f"unknown calibration {text!r}; use "
                             f"{'|'.join(METHODS)}[-symmetric|-asymmetric][+conv1-float]")
        return cls(method, kind != "asymmetric", bool(plus))


def all_variants() -> list[Variant]:
    """The compared grid: every calibration, symmetric or not, conv1 quantized or in float.

    With the head in float, quantizing the [0, 1] input of conv1 (steps of
    5.5 HU, as large as the noise being measured) became the largest error
    left on the v2 network; conv1 is 3.5 % of the multiply-adds.
    """
    return [Variant(m, s, f) for m in METHODS for s in (True, False) for f in (False, True)]


def _calibration_method(variant: Variant):
    from onnxruntime.quantization import CalibrationMethod

    if variant.method.startswith("percentile"):
        return CalibrationMethod.Percentile
    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy}[variant.method]


def _activation_type(variant: Variant):
    """Symmetric activations as signed INT8 (TensorRT); asymmetric ones as UINT8,
    the U8S8 path onnxruntime's x86 kernels run fastest (same 256 levels)."""
    from onnxruntime.quantization import QuantType

    return QuantType.QInt8 if variant.symmetric else QuantType.QUInt8


class SliceCalibrationReader:
    """onnxruntime ``CalibrationDataReader``: one slice per call over a sorted file list."""

    def __init__(self, items: list[LabelledSlice], input_name: str = "image"):
        self.items = sorted(items, key=lambda i: (str(i.path), i.page))
        self.input_name = input_name
        self._cursor = 0

    def __len__(self) -> int:
        return len(self.items)

    def get_next(self) -> dict | None:
        if self._cursor >= len(self.items):
            return None
        plane = load_image(self.items[self._cursor])
        self._cursor += 1
        return {self.input_name: plane[None, :, :, None]}

    def rewind(self) -> None:
        self._cursor = 0


class ArrayCalibrationReader(SliceCalibrationReader):
    """The same contract over arrays already in memory (tests, synthetic calibration)."""

    def __init__(self, images: np.ndarray, input_name: str = "image"):
        self.images = images
        self.input_name = input_name
        self._cursor = 0

    def __len__(self) -> int:
        return len(self.images)

    def get_next(self) -> dict | None:
        if self._cursor >= len(self.images):
            return None
        image = self.images[self._cursor:self._cursor + 1].astype(np.float32)
        self._cursor += 1
        return {self.input_name: image}


def preprocess_for_quantization(model_path: Path, output: Path) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(model_path), str(output), skip_symbolic_shape=False)
    return output


def calibrate(prepared: Path, reader, variant: Variant, folder: Path) -> Path:
    """Activation ranges of ``prepared`` over the calibration slices, as an onnxruntime cache file.

    The calibrator is driven here rather than inside ``quantize_static``,
    because ``quantize_static`` cannot pass histogram sizes: with onnxruntime's
    Entropy defaults (128 bins, 128 quantized bins) the KL search has a single
    candidate, the full range, and Entropy silently equals MinMax. We use 2048
    bins for Entropy and Percentile.
    """
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    method = _calibration_method(variant)
    options: dict = {"symmetric": variant.symmetric}
    if variant.method == "entropy":
        options.update(num_bins=2048, num_quantized_bins=128)
    elif variant.method.startswith("percentile"):
        options.update(num_bins=2048, percentile=float(variant.method[len("percentile"):]))
    key = f"{variant.method}-{'symmetric' if variant.symmetric else 'asymmetric'}"
    cache = folder / f"ranges-{key}.json"
    if cache.exists():
        return cache
    calibrator = create_calibrator(prepared, [], augmented_model_path=str(folder / f"augmented-{key}.onnx"),
                                   calibrate_method=method, extra_options=options)
    reader.rewind()
    calibrator.collect_data(reader)
    save_tensors_data(calibrator.compute_data(), cache)
    return cache


def float_nodes(graph) -> list[str]:
    """Nodes kept in float in every variant: the classifier head and the softmax.

    The head is the Gemm/MatMul layers after global pooling (under 0.1 % of
    the multiply-adds). Quantized, its last output (the logits) had a uint8
    step of 0.18 on the v2 network, which moves probabilities by up to 9 % and
    flipped the argmax of near-tie slices: class agreement with FP32 0.93-0.95
    with the head quantized, 0.99 with it in float (docs/int8.md).
    """
    return [n.name for n in graph.node if n.op_type in ("Softmax", "Gemm", "MatMul")]


def calibration_images(reader, count: int = EQUALIZE_SLICES) -> np.ndarray:
    """The first ``count`` slices of a calibration reader, as one float32 batch."""
    reader.rewind()
    images = []
    while len(images) < count:
        feed = reader.get_next()
        if feed is None:
            break
        images.append(next(iter(feed.values())))
    reader.rewind()
    return np.concatenate(images).astype(np.float32)


def quantize_variant(prepared: Path, output: Path, reader, variant: Variant,
                     weights: str = DEFAULT_WEIGHTS) -> Path:
    """QDQ model of ``prepared`` with per-channel weights in format ``weights`` (see WEIGHT_FORMATS)."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    if weights not in WEIGHT_FORMATS:
        raise ValueError(f"unknown weight format {weights!r}; use {'|'.join(WEIGHT_FORMATS)}")
    weight_type, reduce_range, _ = WEIGHT_FORMATS[weights]

    graph = onnx.load(str(prepared)).graph
    exclude = float_nodes(graph)
    if variant.float_first_conv:
        # INT8 steps of the [0, 1] input are 5.5 HU (asymmetric) or 11 HU
        # (symmetric): as large as the noise the network measures. conv1 is
        # 3.5 % of the multiply-adds, so keeping it in float is cheap.
        exclude.append(next(n.name for n in graph.node if n.op_type == "Conv"))
    ranges = calibrate(prepared, reader, variant, output.parent)
    quantize_static(
        str(prepared), str(output), None,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=_activation_type(variant),
        weight_type=getattr(QuantType, weight_type),
        reduce_range=reduce_range,
        calibrate_method=_calibration_method(variant),
        nodes_to_exclude=exclude,
        calibration_cache_path=str(ranges),
        extra_options={"ActivationSymmetric": variant.symmetric, "WeightSymmetric": weight_type == "QInt8"},
    )
    return output


def cpu_session(model_path: Path):
    """One CPU onnxruntime session of ``model_path``, made once and reused by the checks."""
    import onnxruntime as ort

    return ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])


def predict(session, images: np.ndarray, batch: int = 8) -> np.ndarray:
    """Probabilities of ``images`` through ``session`` (see :func:`cpu_session`)."""
    return np.concatenate([session.run(["probabilities"], {"image": images[i:i + batch]})[0]
                           for i in range(0, len(images), batch)])


def latency_ms(session, image: np.ndarray, repeats: int = 15) -> float:
    """Median CPU latency at batch 1 (indicative; benchmarks/ measures it properly)."""
    feed = {"image": image[None].astype(np.float32)}
    for _ in range(3):
        session.run(["probabilities"], feed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(["probabilities"], feed)
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 2)


def gate_check(fp32_probs: np.ndarray, int8_probs: np.ndarray, labels: np.ndarray) -> dict:
    """Agreement and metric drop of INT8 vs FP32 on labelled slices; ``passed`` against GATE."""
    result = agreement(fp32_probs, int8_probs)
    fp32_metrics = quality_metrics(expected_score(fp32_probs), labels)
    int8_metrics = quality_metrics(expected_score(int8_probs), labels)
    result["fp32"] = fp32_metrics
    result["int8"] = int8_metrics
    result["sum_drop"] = round(fp32_metrics["sum"] - int8_metrics["sum"], 4)
    failures = []
    if result["mean_abs_score_diff"] > GATE["max_mean_abs_score_diff"]:
        failures.append(f"mean |score_int8 - score_fp32| {result['mean_abs_score_diff']:.4f} > "
                        f"{GATE['max_mean_abs_score_diff']}")
    if result["class_agreement"] < GATE["min_class_agreement"]:
        failures.append(f"class agreement {result['class_agreement']:.3f} < "
                        f"{GATE['min_class_agreement']}")
    if result["sum_drop"] > GATE["max_sum_drop"]:
        failures.append(f"PLCC+SROCC+KROCC drop {result['sum_drop']:.4f} > {GATE['max_sum_drop']}")
    result["passed"] = not failures
    result["failures"] = failures
    return result


def saturation_gate(model_path: Path, fp32_probs: np.ndarray, images: np.ndarray,
                    labels: np.ndarray) -> dict:
    """Saturation safety of a quantised model: the proof by construction and the emulated gate.

    Returns the card's ``saturation_safe`` (every quantised weight satisfies
    ``max |w| * 255 * 2 <= 32767``), the scheme and reason, the per-layer bounds,
    and :func:`gate_check` of the held-out split run through the exact emulation
    of the saturating u8s8 arithmetic of x86 CPUs without VNNI (None where the
    model is not u8s8, which the emulation does not cover).
    """
    from convert.quant.saturation import emulate, saturation_report

    report = saturation_report(model_path)
    if not report:
        raise QuantizationGateError(f"{model_path.name}: no quantised Conv/Gemm found to check")
    safe = all(layer.safe for layer in report)
    worst = max(report, key=lambda layer: layer.worst_pair_sum)
    try:
        emulated = emulate(model_path, images, saturate=True)
    except NotImplementedError:
        emulated = None
    return {
        "saturation_safe": safe,
        "scheme": f"{worst.activation_type} activations x {worst.weight_type} weights, "
                  f"max |w| {max(layer.max_abs_weight for layer in report)}",
        "reason": ("every quantised weight satisfies max |w| * 255 * 2 <= 32767, so the int16 pair "
                   "sums of the u8s8 kernels on x86 CPUs without VNNI cannot saturate"
                   if safe else "int16 pair sums can saturate on x86 CPUs without VNNI: " + worst.reason),
        "layers": [{"node": layer.node, "max_abs_weight": layer.max_abs_weight,
                    "worst_pair_sum": layer.worst_pair_sum, "safe": layer.safe} for layer in report],
        "held_out_gate_without_vnni": (None if emulated is None
                                       else gate_check(fp32_probs, emulated, labels)),
    }


def near_ties(probabilities: np.ndarray, gap: float = 0.05) -> dict:
    """How many slices have their two most probable classes within ``gap``: argmax flips there."""
    top = np.sort(np.asarray(probabilities), axis=1)
    return {"gap": gap, "count": int(np.sum(top[:, -1] - top[:, -2] < gap)), "of": int(len(top))}


def rank(results: dict[str, dict]) -> list[str]:
    """Variants passing the gate on the validation split, best first.

    Best = smallest worst-case (max) |score difference| on the validation
    split, then smallest mean: a QA user meets single slices, so the worst
    slice matters. Among the variants whose worst case is within
    ``PREFERENCE`` times the best one, symmetric activations (TensorRT) go
    first, then those with conv1 quantized (a float conv1 made INT8 40 % slower
    on a 2-core AVX-512 VNNI CPU, benchmarks/results/results.md).
    """
    passing = {name: r for name, r in results.items() if r["passed"]}
    if not passing:
        raise QuantizationGateError("no calibration passes the gate on the validation split: "
                                    + "; ".join(f"{n}: {', '.join(r['failures'])}"
                                                for n, r in results.items()))

    def key(name):
        r = passing[name]
        return (r["max_abs_score_diff"], r["mean_abs_score_diff"], -r["class_agreement"])

    ordered = sorted(passing, key=key)
    best = passing[ordered[0]]["max_abs_score_diff"]
    near = [n for n in ordered if passing[n]["max_abs_score_diff"] <= PREFERENCE * best + 1e-4]
    preferred = sorted(near, key=lambda n: ("-symmetric" not in n, "+conv1-float" in n, ordered.index(n)))
    return preferred + [n for n in ordered if n not in near]


def choose(results: dict[str, dict]) -> str:
    """The first of :func:`rank`."""
    return rank(results)[0]


def _splits(calibration: Path, test_data: Path | None, seed: int):
    items = read_folder(calibration)
    train, val, test = split_by_group(items, seed=seed)
    if test_data is not None:
        test = read_folder(test_data)
    return train, val, test


def _arrays(items: list[LabelledSlice]) -> tuple[np.ndarray, np.ndarray]:
    images = np.stack([load_image(i) for i in items])[..., None]
    return images, np.array([i.score for i in items])


def quantize_model(model: Path, calibration_items: list[LabelledSlice] | np.ndarray,
                   val: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                   output: Path, *, method: str = "auto", compare: bool = True,
                   weights: str = DEFAULT_WEIGHTS, equalize_ranges: bool = True,
                   log=print) -> dict:
    """Quantize ``model`` and write ``output`` only if the gate passes on ``test``.

    With ``equalize_ranges`` the graph is first range-equalized across
    convolution pairs (:mod:`convert.quant.equalize`; same FP32 function, checked).

    The held-out gate is judged twice: with onnxruntime on this CPU, and with the
    exact emulation of the saturating u8s8 arithmetic of x86 CPUs without VNNI
    (:func:`convert.quant.saturation.emulate`); both must pass.
    """
    import onnx

    model = Path(model)
    variants = all_variants()
    if method != "auto":
        fixed = Variant.parse(method)
        variants = variants if compare else [fixed]
    reader = (ArrayCalibrationReader(calibration_items) if isinstance(calibration_items, np.ndarray)
              else SliceCalibrationReader(calibration_items))
    count = len(reader)
    val_images, val_labels = val
    test_images, test_labels = test
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepared = preprocess_for_quantization(model, tmp / "prepared.onnx")
        fp32 = cpu_session(model)
        fp32_val = predict(fp32, val_images)
        equalization = None
        if equalize_ranges:
            from convert.quant.equalize import ALPHA, equalize

            pairs = equalize(prepared, tmp / "equalized.onnx", calibration_images(reader))
            prepared = tmp / "equalized.onnx"
            parity = float(np.abs(expected_score(predict(cpu_session(prepared), val_images))
                                  - expected_score(fp32_val)).max())
            if parity > EQUALIZE_PARITY:
                raise QuantizationGateError(f"{model.name}: the equalized graph is not the FP32 model "
                                            f"(max |score difference| {parity:.2e} > {EQUALIZE_PARITY})")
            equalization = {"pairs": [asdict(p) for p in pairs],
                            "fp32_parity_max_abs_score_diff": float(f"{parity:.3g}"),
                            "method": "cross-layer range equalization (convert/quant/equalize.py): "
                                      f"scales s = (r_max / r_c)^{ALPHA:g} from 99.99th-percentile channel "
                                      f"ranges over {EQUALIZE_SLICES} calibration slices"}
            log(f"quantize: equalized {len(pairs)} convolution pairs "
                f"(FP32 parity, max |score difference| {parity:.1e})")
        fp32_latency = latency_ms(fp32, val_images[0])
        comparison: dict[str, dict] = {}
        sessions: dict[str, object] = {}
        for variant in variants:
            start = time.perf_counter()
            path = quantize_variant(prepared, tmp / f"{variant.name}.onnx", reader, variant, weights)
            sessions[variant.name] = session = cpu_session(path)
            result = gate_check(fp32_val, predict(session, val_images), val_labels)
            result["calibration_seconds"] = round(time.perf_counter() - start, 1)
            result["cpu_latency_ms_batch1"] = latency_ms(session, val_images[0])
            comparison[variant.name] = result
            log(f"quantize: {variant.name}: mean |dscore| {result['mean_abs_score_diff']:.4f}, "
                f"class agreement {result['class_agreement']:.3f}, sum drop {result['sum_drop']:+.4f}, "
                f"{result['cpu_latency_ms_batch1']} ms/slice (FP32 {fp32_latency} ms)")
        candidates = (rank(comparison)[:HELD_OUT_ATTEMPTS] if method == "auto"
                      else [Variant.parse(method).name])
        fp32_test = predict(fp32, test_images)
        attempts = []
        for chosen in candidates:
            chosen_path = tmp / f"{chosen}.onnx"
            session = sessions.get(chosen) or cpu_session(chosen_path)
            gate = gate_check(fp32_test, predict(session, test_images), test_labels)
            saturation = saturation_gate(chosen_path, fp32_test, test_images, test_labels)
            attempts.append({"variant": chosen, **{k: gate[k] for k in (
                "mean_abs_score_diff", "max_abs_score_diff", "class_agreement", "sum_drop",
                "passed", "failures")}})
            without_vnni = saturation["held_out_gate_without_vnni"]
            if without_vnni is not None:
                attempts[-1]["without_vnni"] = {k: without_vnni[k] for k in (
                    "mean_abs_score_diff", "max_abs_score_diff", "class_agreement", "passed")}
                if not without_vnni["passed"]:
                    attempts[-1]["passed"] = False
                    attempts[-1]["failures"] = attempts[-1]["failures"] + [
                        "without VNNI (emulated int16 saturation): " + f for f in without_vnni["failures"]]
            log(f"quantize: {chosen} on the held-out split: {json.dumps(attempts[-1])}")
            if attempts[-1]["passed"]:
                break
        else:
            raise QuantizationGateError(
                f"{output.name}: {', '.join(candidates)} fail the gate on the held-out split: "
                + "; ".join(f"{a['variant']}: {', '.join(a['failures'])}" for a in attempts))
        quantized = onnx.load(str(chosen_path))
        card = read_card(onnx.load(str(model)))
        card["precision"] = "int8"
        card["quantization"] = {
            "format": f"QDQ, static, {WEIGHT_FORMATS[weights][2]}, "
                      + ("INT8 symmetric" if "-symmetric" in chosen else "UINT8 asymmetric") + " activations"
                      + (", conv1 kept in float" if "+conv1-float" in chosen else ""),
            "weights": weights,
            "saturation_safe": saturation["saturation_safe"],
            "saturation": {k: v for k, v in saturation.items() if k != "saturation_safe"},
            "tool": "onnxruntime.quantization.quantize_static after quant_pre_process",
            "calibration": chosen,
            "calibration_slices": count,
            "calibration_source": "training split, sorted file list (never the test split)",
            "softmax": "kept in float",
            "float_layers": "classifier head (Gemm layers after global pooling) and softmax"
                            + (", conv1" if "+conv1-float" in chosen else ""),
            "equalization": equalization,
            "tensorrt_compatible": "-symmetric" in chosen,
            "selection": "variants passing the gate on the validation split, ranked by worst-case "
                         "then mean |score difference| (symmetric activations, then conv1 in INT8, first when "
                         f"their worst case is within {PREFERENCE}x of the best); the first that "
                         f"passes the held-out gate is shipped, at most {HELD_OUT_ATTEMPTS} tried "
                         "(every attempt is listed in held_out_attempts)",
            "comparison_on_validation": comparison,
            "fp32_cpu_latency_ms_batch1": fp32_latency,
            "gate": GATE,
            "held_out_gate": gate,
            "held_out_attempts": attempts,
            "held_out_near_ties": near_ties(fp32_test),
            "fp32_model_sha256": sha256_file(model),
        }
        attach_card(quantized, card)
        output.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(quantized, str(output))
    log(f"quantize: wrote {output}")
    return card


def calibration_subset(train: list, count: int, n_val: int, n_test: int, log=print) -> list:
    """The first ``count`` training-split slices in sorted file order (never validation or test)."""
    items = sorted(train, key=lambda item: (str(item.path), item.page))[:count]
    if len(items) < 100:
        log(f"quantize: warning: only {len(items)} calibration slices (100+ advised)")
    log(f"quantize: {len(items)} calibration slices (training split), {n_val} validation, "
        f"{n_test} held-out test")
    return items


def quantize_command(model: str | Path, calibration: str | Path, output: str | Path, *,
                     test_data: str | Path | None = None, calibration_count: int = 128,
                     method: str = "auto", compare: bool = False, weights: str = DEFAULT_WEIGHTS,
                     equalize_ranges: bool = True, max_eval: int | None = None, log=print) -> int:
    """``python -m convert quantize``: exit 0 when written, 1 when the gate rejects the model.

    ``max_eval`` caps the validation and held-out test slices the gates score
    (a fixed random subset of each split, :func:`convert.sim.data.evaluation_subset`).
    """
    import onnx

    model, output = Path(model), Path(output)
    seed = (read_card(onnx.load(str(model))).get("training", {}) or {}).get("seed") or 0
    train, val, test = _splits(Path(calibration), Path(test_data) if test_data else None, seed)
    val, test = evaluation_subset(val, max_eval, seed), evaluation_subset(test, max_eval, seed)
    calibration_items = calibration_subset(train, calibration_count, len(val), len(test), log)
    try:
        quantize_model(model, calibration_items, _arrays(val), _arrays(test), output,
                       method=method, compare=compare or method == "auto", weights=weights,
                       equalize_ranges=equalize_ranges, log=log)
    except QuantizationGateError as exc:
        log(f"quantize: rejected: {exc}")
        return 1
    return 0
