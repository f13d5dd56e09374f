"""Static INT8 quantization: calibration reader contract and the accuracy gate.

Runs on the shipped FP32 model (models/deltaiqa-fp32.onnx) and a tiny simulated
dataset. The gate must pass a properly calibrated model and reject one
calibrated on zeros.
"""

from pathlib import Path

import numpy as np
import pytest

from convert import quantize
from convert.quantize import ArrayCalibrationReader, QuantizationGateError, SliceCalibrationReader

REPO = Path(__file__).resolve().parents[2]
FP32 = REPO / "models" / "deltaiqa-fp32.onnx"


def _acquisitions(seed: int, doses, views=1000):
    """Simulated slices (one phantom each) and their simulator labels."""
    from convert.simulate import PhantomScan
    from deltaiqa_lite.preprocess import prepare_hu

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
    val = _acquisitions(32, np.geomspace(1.0, 0.05, 6))
    test = _acquisitions(33, np.geomspace(1.0, 0.05, 8))
    return calibration, val, test


def test_calibration_reader_contract(tmp_path):
    from convert.data import LabelledSlice
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
                                   method="minmax-symmetric", compare=False, log=lambda *_: None)
    assert good.exists()
    assert card["precision"] == "int8"
    assert card["quantization"]["held_out_gate"]["passed"]

    garbage = tmp_path / "garbage.onnx"
    with pytest.raises(QuantizationGateError, match="fails the gate"):
        quantize.quantize_model(FP32, np.zeros_like(calibration), val, test, garbage,
                                method="minmax-symmetric", compare=False, log=lambda *_: None)
    assert not garbage.exists()


def test_choose_prefers_symmetric_when_close():
    ok = {"passed": True, "failures": [], "class_agreement": 1.0}
    results = {"minmax-symmetric": {**ok, "mean_abs_score_diff": 0.012},
               "minmax-asymmetric": {**ok, "mean_abs_score_diff": 0.010},
               "entropy-symmetric": {**ok, "mean_abs_score_diff": 0.03}}
    assert quantize.choose(results) == "minmax-symmetric"
    results["minmax-asymmetric"]["mean_abs_score_diff"] = 0.004
    assert quantize.choose(results) == "minmax-asymmetric"
    failing = {name: {**r, "passed": False, "failures": ["x"]} for name, r in results.items()}
    with pytest.raises(QuantizationGateError, match="no calibration passes"):
        quantize.choose(failing)
