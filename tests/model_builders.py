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
