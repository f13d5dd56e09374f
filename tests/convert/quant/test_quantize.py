"""Static INT8 quantization: calibration reader contract and the accuracy gate.

Runs on the shipped FP32 model (models/deltaiqa-fp32.onnx) and a tiny simulated
dataset. The gate must pass a properly calibrated model and reject one
calibrated on zeros.
"""

from pathlib import Path

import numpy as np
import pytest

from convert.quant import quantize
from convert.quant.quantize import ArrayCalibrationReader, QuantizationGateError, SliceCalibrationReader
from deltaiqa_lite.model.cpu import cpu_info

REPO = Path(__file__).resolve().parents[3]
FP32 = REPO / "models" / "deltaiqa-fp32.onnx"


def _acquisitions(seed: int, doses, views=1000):
    """Simulated slices (one phantom each) and their simulator labels."""
    from convert.sim.simulate import PhantomScan
    from deltaiqa_lite.model.preprocess import prepare_hu

    planes, labels = [], []
    for index, dose in enumerate(doses):
        result = PhantomScan(seed, index).acquire(dose, views)
        planes.append(prepare_hu(result["hu"]))
        labels.append(result["label"])
    return np.stack(planes)[..., None], np.array(labels)


@pytest.fixture(scope="module")
def tiny_sets():
    """12 calibration slices; validation and test slices with well separated doses."""
    calibration, _ = _acquisitions(31, np.geomspace(1.0, 0.05, 12))
    return calibration, _decisive(*_acquisitions(32, np.geomspace(1.0, 0.05, 8))), \
        _decisive(*_acquisitions(33, np.geomspace(1.0, 0.05, 12)))


def _decisive(images, labels, gap=0.15, score_gap=0.05):
    """Slices whose FP32 top-two probabilities differ by more than ``gap``, and whose FP32
    scores lie more than ``score_gap`` from every kept slice of another label.

    On near-ties any rounding flips the argmax, or the order of two slices with
    different labels; the gate's class agreement or rank correlations (on a
    dozen slices one swapped pair moves PLCC+SROCC+KROCC by 0.07) are then about
    the tie, not the quantization this test is about.
    """
    from convert.checks.evaluation import expected_score

    probabilities = quantize.predict(quantize.cpu_session(FP32), images)
    top = np.sort(probabilities, axis=1)
    scores = expected_score(probabilities)
    kept: list[int] = []
    for i in np.flatnonzero(top[:, -1] - top[:, -2] > gap):
        if all(labels[j] == labels[i] or abs(scores[j] - scores[i]) > score_gap for j in kept):
            kept.append(int(i))
    assert len(kept) >= 5
    return images[kept], labels[kept]


def test_calibration_reader_contract(tmp_path):
    from convert.sim.data import LabelledSlice
    import tifffile

    paths = []
    for name in ("b.tif", "a.tif", "c.tif"):
        tifffile.imwrite(tmp_path / name, np.full((64, 64), 0.5, np.float32))
        paths.append(LabelledSlice(tmp_path / name, 0, 1.0, name))
    reader = SliceCalibrationReader(paths)
    assert [i.path.name for i in reader.items] == ["a.tif", "b.tif", "c.tif"]
    feeds = [reader.get_next() for _ in range(4)]
    assert feeds[3] is None
    assert feeds[0]["image"].shape == (1, 512, 512, 1) and feeds[0]["image"].dtype == np.float32
    reader.rewind()
    assert reader.get_next() is not None


@pytest.mark.skipif(not FP32.exists(), reason="needs the shipped models/deltaiqa-fp32.onnx")
def test_gate_passes_calibrated_and_rejects_zero_calibration(tiny_sets, tmp_path):
    calibration, val, test = tiny_sets
    good = tmp_path / "good.onnx"
    card = quantize.quantize_model(FP32, calibration, val, test, good,
                                   method="percentile99.999-asymmetric", compare=False,
                                   log=lambda *_: None)
    assert good.exists()
    assert card["precision"] == "int8"
    assert card["quantization"]["held_out_gate"]["passed"]
    # 7-bit weights by default: safe by construction, and the emulated gate without VNNI passes.
    q = card["quantization"]
    assert q["weights"] == "s7" and q["saturation_safe"] is True
    assert all(layer["max_abs_weight"] <= 64 for layer in q["saturation"]["layers"])
    assert q["saturation"]["held_out_gate_without_vnni"]["passed"]

    garbage = tmp_path / "garbage.onnx"
    with pytest.raises(QuantizationGateError, match="fail the gate on the held-out split: .*mean"):
        quantize.quantize_model(FP32, np.zeros_like(calibration), val, test, garbage,
                                method="percentile99.999-asymmetric", compare=False,
                                log=lambda *_: None)
    assert not garbage.exists()


def test_rank_prefers_symmetric_then_integer_conv1_when_close_and_worst_case_first():
    ok = {"passed": True, "failures": [], "class_agreement": 1.0, "mean_abs_score_diff": 0.01}
    results = {"minmax-symmetric": {**ok, "max_abs_score_diff": 0.12},
               "minmax-asymmetric": {**ok, "max_abs_score_diff": 0.10},
               "entropy-asymmetric": {**ok, "max_abs_score_diff": 0.11, "mean_abs_score_diff": 0.001},
               "entropy-symmetric": {**ok, "max_abs_score_diff": 0.30}}
    assert quantize.rank(results) == ["minmax-symmetric", "minmax-asymmetric", "entropy-asymmetric",
                                      "entropy-symmetric"]
    results["minmax-asymmetric"]["max_abs_score_diff"] = 0.04
    assert quantize.choose(results) == "minmax-asymmetric"
    # conv1 in INT8 (faster) goes before a float conv1 within 1.5x of its worst case, not beyond.
    floats = {"percentile99.9-asymmetric+conv1-float": {**ok, "max_abs_score_diff": 0.036},
              "minmax-asymmetric": {**ok, "max_abs_score_diff": 0.048},
              "percentile99.99-asymmetric": {**ok, "max_abs_score_diff": 0.067}}
    assert quantize.rank(floats) == ["minmax-asymmetric", "percentile99.9-asymmetric+conv1-float",
                                     "percentile99.99-asymmetric"]
    floats["minmax-asymmetric"]["max_abs_score_diff"] = 0.06
    assert quantize.choose(floats) == "percentile99.9-asymmetric+conv1-float"
    failing = {name: {**r, "passed": False, "failures": ["x"]} for name, r in results.items()}
    with pytest.raises(QuantizationGateError, match="no calibration passes"):
        quantize.choose(failing)


def test_variant_names_round_trip_and_grid():
    from convert.quant.quantize import Variant, all_variants

    names = [v.name for v in all_variants()]
    assert len(names) == len(set(names)) == 20
    assert sum(name.endswith("+conv1-float") for name in names) == 10
    for name in names:
        assert Variant.parse(name).name == name
    assert Variant.parse("entropy") == Variant("entropy", True, False)
    assert Variant.parse("percentile99.9-asymmetric+conv1-float") == Variant("percentile99.9", False, True)
    with pytest.raises(ValueError, match="unknown calibration 'kl-symmetric'"):
        Variant.parse("kl-symmetric")


@pytest.mark.skipif(not FP32.exists(), reason="needs the shipped models/deltaiqa-fp32.onnx")
def test_full_range_weights_are_flagged_and_judged_without_vnni(tiny_sets, tmp_path):
    """Full-range int8 weights fail the proof, and the gate's emulation without VNNI sees the drift."""
    calibration, val, _ = tiny_sets
    prepared = quantize.preprocess_for_quantization(FP32, tmp_path / "prepared.onnx")
    path = quantize.quantize_variant(prepared, tmp_path / "s8.onnx", ArrayCalibrationReader(calibration),
                                     quantize.Variant("percentile99.999", False), weights="s8")
    images, labels = val
    fp32 = quantize.predict(quantize.cpu_session(FP32), images)
    result = quantize.saturation_gate(path, fp32, images, labels)
    assert result["saturation_safe"] is False
    assert "can saturate" in result["reason"] and "127" in result["scheme"]
    native = quantize.gate_check(fp32, quantize.predict(quantize.cpu_session(path), images), labels)
    emulated = result["held_out_gate_without_vnni"]
    if cpu_info().int16_saturation is False:  # this CPU has VNNI: the emulation must differ from it
        assert emulated["mean_abs_score_diff"] > native["mean_abs_score_diff"] + 0.01
