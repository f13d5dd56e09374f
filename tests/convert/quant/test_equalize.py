"""Cross-layer range equalization: same FP32 function, narrower channel-range spread, only safe chains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from convert.quant.equalize import MAX_SCALE, channel_ranges, equalizable_pairs, equalize


def _graph(path: Path, *, between: str = "MaxPool", branch: bool = False, seed: int = 0) -> Path:
    """x [N,1,16,16] -> conv A (4 ch, one 100x louder) -> Relu -> ``between`` -> conv B -> Relu
    -> GlobalAveragePool -> y. ``branch`` gives A's ReLU output a second consumer."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w_a = rng.normal(0, 0.3, (4, 1, 3, 3)).astype(np.float32)
    w_a[0] *= 100.0
    inits = [numpy_helper.from_array(w_a, "wa"),
             numpy_helper.from_array(rng.uniform(0.2, 0.4, 4).astype(np.float32), "ba"),  # no dead channel
             numpy_helper.from_array(rng.normal(0, 0.3, (3, 4, 3, 3)).astype(np.float32), "wb"),
             numpy_helper.from_array(rng.normal(0, 0.1, 3).astype(np.float32), "bb")]
    nodes = [helper.make_node("Conv", ["x", "wa", "ba"], ["a"], name="convA"),
             helper.make_node("Relu", ["a"], ["a_relu"], name="reluA")]
    if between == "MaxPool":
        nodes.append(helper.make_node("MaxPool", ["a_relu"], ["mid"], kernel_shape=[2, 2], strides=[2, 2]))
    else:
        nodes.append(helper.make_node(between, ["a_relu"], ["mid"]))
    nodes += [helper.make_node("Conv", ["mid", "wb", "bb"], ["b"], name="convB"),
              helper.make_node("Relu", ["b"], ["b_relu"]),
              helper.make_node("GlobalAveragePool", ["b_relu"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if branch:
        nodes.append(helper.make_node("Identity", ["a_relu"], ["side"]))
        outputs.append(helper.make_tensor_value_info("side", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "eq", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                          [None, 1, 16, 16])],
                              outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]


@pytest.fixture()
def images():
    return np.random.default_rng(3).random((12, 1, 16, 16)).astype(np.float32)


def test_equalization_keeps_the_function_and_narrows_the_ranges(tmp_path, images):
    import onnx

    source = _graph(tmp_path / "a.onnx")
    pairs = equalize(source, tmp_path / "eq.onnx", images)
    assert [(p.first, p.second, p.activation) for p in pairs] == [("convA", "convB", "a_relu")]
    pair = pairs[0]
    assert pair.range_spread_before > 20          # the loud channel
    assert pair.range_spread_after < pair.range_spread_before / 3
    assert 1.0 < pair.max_scale <= MAX_SCALE
    fresh = np.random.default_rng(4).random((6, 1, 16, 16)).astype(np.float32)   # not the calibration
    np.testing.assert_allclose(_run(tmp_path / "eq.onnx", fresh), _run(source, fresh), rtol=1e-4, atol=1e-5)
    before = channel_ranges(onnx.load(str(source)), ["a_relu"], images)[0]
    after = channel_ranges(onnx.load(str(tmp_path / "eq.onnx")), ["a_relu"], images)[0]
    assert after.max() / after.min() == pytest.approx(pair.range_spread_after, rel=0.02)
    assert before.max() / before.min() > after.max() / after.min()


def test_only_homogeneous_single_consumer_chains_are_rescaled(tmp_path, images):
    import onnx

    # Sigmoid does not commute with a channel scale; a second consumer would see the scaled channels.
    for name, kwargs in (("sigmoid", {"between": "Sigmoid"}), ("branch", {"branch": True})):
        path = _graph(tmp_path / f"{name}.onnx", **kwargs)
        assert equalizable_pairs(onnx.load(str(path)).graph) == []
        assert equalize(path, tmp_path / f"{name}-eq.onnx", images) == []
        np.testing.assert_array_equal(_run(tmp_path / f"{name}-eq.onnx", images), _run(path, images))
