"""Shared fixtures for the runtime tests: tiny ONNX models, CT datasets built in code.

Unit tests use a tiny ONNX graph with the model contract (input ``image``
[N,512,512,1], output ``probabilities`` [N,5], a model card) made with
``onnx.helper``; end-to-end tests use the shipped models (see ``shipped_models``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# Where end-to-end tests find the shipped models: models/ of the repository, or
# $DELTAIQA_LITE_TEST_MODELS (a folder with deltaiqa-int8.onnx and deltaiqa-fp32.onnx)
# while the real models are not in models/ yet.
TEST_MODELS_ENV = "DELTAIQA_LITE_TEST_MODELS"

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


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny.onnx")


@pytest.fixture(scope="session")
def shipped_models(tmp_path_factory) -> Path:
    """Folder holding deltaiqa-int8.onnx and deltaiqa-fp32.onnx, or skip with the reason."""
    override = os.environ.get(TEST_MODELS_ENV)
    folder = Path(override) if override else REPO / "models"
    names = ("deltaiqa-int8.onnx", "deltaiqa-fp32.onnx")
    if not all((folder / n).is_file() for n in names):
        pytest.skip(f"shipped models not in {folder} (set {TEST_MODELS_ENV} to a folder with {', '.join(names)})")
    if override:
        # Copy so nothing is ever written next to the originals.
        target = tmp_path_factory.mktemp("shipped")
        for name in names:
            shutil.copy2(folder / name, target / name)
        return target
    return folder
