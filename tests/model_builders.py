"""A tiny ONNX graph with the model contract, made with ``onnx.helper`` for unit tests.

Input ``image`` [N,512,512,1], output ``probabilities`` [N,5], a model card in
``metadata_props``. (A module of its own, not conftest.py: several conftest
modules share the name ``conftest``, so tests must not import from it.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CARD = {
    "name": "tiny-test",
    "architecture": "mean-intensity logistic (test graph)",
    "architecture_version": "0",
    "version": "0.0.0-test",
    "precision": "fp32",
    "preprocessing": {"window_centre_hu": -300.0, "window_width_hu": 1400.0, "input_size": 512,
                      "crop": "centre-square", "resize": "bilinear-half-pixel", "layout": "NHWC"},
    "class_labels": ["bad", "poor", "fair", "good", "excellent"],
    "outputs": {"probabilities": "softmax over Likert classes 0..4"},
    "intended_use": "unit tests only",
}


def make_tiny_model(path: Path, card: dict | None = CARD, input_size: int = 512,
                    input_name: str = "image") -> Path:
    """Write a tiny ONNX model: probabilities = softmax(w * mean(image) + b).

    Brighter (denser) inputs score higher, so tests can check that a real
    signal goes through reading, preprocessing and inference.
    """
    import onnx
    from onnx import TensorProto, helper

    weights = np.array([[-16.0, -8.0, 0.0, 8.0, 16.0]], dtype=np.float32)
    bias = np.array([8.0, 4.0, 0.0, -4.0, -8.0], dtype=np.float32)
    nodes = [
        helper.make_node("ReduceMean", [input_name], ["mean4"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Flatten", ["mean4"], ["mean"], axis=1),
        helper.make_node("MatMul", ["mean", "w"], ["logits0"]),
        helper.make_node("Add", ["logits0", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", input_size, input_size, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 5])],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, [1, 5], weights.ravel()),
                     helper.make_tensor("b", TensorProto.FLOAT, [5], bias)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if card is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = "model_card", json.dumps(card)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def tiny_probabilities(mean_unit: float) -> np.ndarray:
    """What the tiny model outputs for an input whose mean is ``mean_unit``."""
    logits = np.array([-16.0, -8.0, 0.0, 8.0, 16.0]) * mean_unit + np.array([8.0, 4.0, 0.0, -4.0, -8.0])
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


def make_qdq_model(path: Path, weight_limit: int = 127, seed: int = 0, float_ends: bool = False) -> Path:
    """Write a small u8s8 QDQ model shaped like Delta-IQA's integer part.

    ``x`` float [1, 1, 24, 24] in [0, 1] -> Q(uint8) -> conv 5x5 stride 2 (one input
    channel: onnxruntime's im2col GEMM path) -> conv 3x3 with 16 input channels (the
    ``MlasConvSym`` path) -> global average pool -> Gemm 16 -> 8 -> ``logits``, every
    op between DequantizeLinear and QuantizeLinear as ``quantize_static`` writes it.
    Weights are per-channel int8 of magnitude weight_limit / 2..weight_limit whose
    neighbours along the reduction axis (MLAS's pairs) share a random sign: with 127
    most pairs can exceed 32767 on uint8 inputs, while sums stay in range.
    With ``float_ends`` the first conv and the Gemm are left in float (float
    weights and bias, no QuantizeLinear around them), as ``quantize_static``
    writes the layers our INT8 models keep in float (conv1 and the head).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def pairs(outputs, depth):
        """[outputs, depth] weights in reduction order, same sign within each (k, k+1) pair."""
        magnitude = rng.integers(weight_limit // 2, weight_limit + 1, size=(outputs, depth))
        sign = np.repeat(rng.choice([-1, 1], size=(outputs, (depth + 1) // 2)), 2, axis=1)[:, :depth]
        return (magnitude * sign).astype(np.int8)

    def conv_weights(outputs, channels, kernel):
        # Reduction order is (kernel row, kernel column, channel), channel fastest.
        flat = pairs(outputs, kernel * kernel * channels).reshape(outputs, kernel, kernel, channels)
        return np.ascontiguousarray(flat.transpose(0, 3, 1, 2))

    inits, nodes = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def quantize(source, name, scale, zero_point=0):
        const(f"{name}_s", np.float32(scale))
        const(f"{name}_z", np.uint8(zero_point))
        nodes.append(helper.make_node("QuantizeLinear", [source, f"{name}_s", f"{name}_z"], [f"{name}_q"]))
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [name]))
        return name, scale

    def integer_op(op, x, x_scale, w, y_name, y_scale, y_zero_point=0, **attributes):
        channels = w.shape[0] if op == "Conv" else w.shape[1]
        w_scale = rng.uniform(0.002, 0.004, channels).astype(np.float32)
        const(f"{y_name}_w", w)
        const(f"{y_name}_ws", w_scale)
        const(f"{y_name}_wz", np.zeros(channels, np.int8))
        nodes.append(helper.make_node("DequantizeLinear", [f"{y_name}_w", f"{y_name}_ws", f"{y_name}_wz"],
                                      [f"{y_name}_wf"], axis=0 if op == "Conv" else 1))
        bias = rng.integers(-2000, 2000, channels).astype(np.int32)
        const(f"{y_name}_b", bias)
        const(f"{y_name}_bs", (x_scale * w_scale).astype(np.float32))
        const(f"{y_name}_bz", np.zeros(channels, np.int32))
        nodes.append(helper.make_node("DequantizeLinear", [f"{y_name}_b", f"{y_name}_bs", f"{y_name}_bz"],
                                      [f"{y_name}_bf"], axis=0))
        # No Relu: a uint8 output with zero point 0 clamps at 0 (quantize_static drops it the same way).
        nodes.append(helper.make_node(op, [x, f"{y_name}_wf", f"{y_name}_bf"], [f"{y_name}_f"], **attributes))
        return quantize(f"{y_name}_f", y_name, y_scale, y_zero_point)

    def float_op(op, x, w, y_name, **attributes):
        channels = w.shape[0] if op == "Conv" else w.shape[1]
        w_scale = rng.uniform(0.002, 0.004, channels).astype(np.float32)
        scale_shape = (-1, 1, 1, 1) if op == "Conv" else (1, -1)
        const(f"{y_name}_w", (w * w_scale.reshape(scale_shape)).astype(np.float32))
        const(f"{y_name}_b", rng.uniform(-0.1, 0.1, channels).astype(np.float32))
        nodes.append(helper.make_node(op, [x, f"{y_name}_w", f"{y_name}_b"], [y_name], **attributes))
        return y_name

    if float_ends:
        float_op("Conv", "x", conv_weights(16, 1, 5), "c1_f", strides=[2, 2])
        nodes.append(helper.make_node("Relu", ["c1_f"], ["c1_r"]))
        x, scale = quantize("c1_r", "c1", 0.02)
    else:
        x, scale = quantize("x", "xq", 1 / 255)
        x, scale = integer_op("Conv", x, scale, conv_weights(16, 1, 5), "c1", 0.02, strides=[2, 2])
    x, scale = integer_op("Conv", x, scale, conv_weights(16, 16, 3), "c2", 0.05, pads=[1, 1, 1, 1])
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"]))
    x, scale = quantize("gap", "gq", 0.05)
    const("flat_shape", np.array([1, 16], np.int64))
    nodes.append(helper.make_node("Reshape", [x, "flat_shape"], ["flat"]))
    x, scale = quantize("flat", "fq", 0.05)
    if float_ends:
        float_op("Gemm", x, np.ascontiguousarray(pairs(8, 16).T), "logits")
    else:
        x, scale = integer_op("Gemm", x, scale, np.ascontiguousarray(pairs(8, 16).T), "logits", 0.05, 128)
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 24, 24])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 8])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def file_from_git(commit: str, path: str, dest: Path) -> Path:
    """``path`` as of ``commit`` written to ``dest``; skips the test without git or that commit."""
    import shutil
    import subprocess

    import pytest

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    done = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"commit {commit} is not in this checkout's history")
    dest.write_bytes(done.stdout)
    return dest
