"""A small ONNX graph with the Delta-IQA model contract, built with onnx.helper.

Same input, outputs and head as the real network (DESIGN.md section 1) so
Grad-CAM, evaluate and compare run on it unchanged:

    image [N,512,512,1] -> NCHW -> Conv 256x17x17 stride 17 (-> 30x30) -> ReLU = conv5
    -> MaxPool 3x3/2 (-> 14x14) -> GlobalAveragePool -> dense 1024 ReLU -> dense 512 ReLU
    -> dense 5 softmax = probabilities

Only the trunk is shrunk (one strided conv instead of five); pool3, gap and
the dense head are exactly the original's, which is the part Grad-CAM
differentiates analytically. Shared by test_explain, test_evaluate and
test_compare.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CLASS_LABELS = ["bad", "poor", "fair", "good", "excellent"]


def card(precision: str = "fp32", version: str = "test") -> dict:
    return {
        "name": "deltaiqa-tiny", "architecture": "Delta-IQA (test trunk)", "architecture_version": "1",
        "version": version, "precision": precision,
        "preprocessing": {"window_centre_hu": -300.0, "window_width_hu": 1400.0, "input_size": 512,
                          "crop": "centre-square", "resize": "bilinear-half-pixel",
                          "layout": "NHWC float32 in [0, 1]"},
        "class_labels": CLASS_LABELS, "outputs": {"probabilities": "[N,5]", "conv5": "[N,30,30,256]"},
        "training": {}, "metrics": {}, "quantization": None, "source_weights_sha256": "0" * 64,
        "tools": {}, "intended_use": "tests only",
    }


def build(path: str | Path, *, seed: int = 0, precision: str = "fp32", with_conv5: bool = True,
          zero_biases: bool = False) -> Path:
    """Write the tiny model to ``path`` and return it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def he(shape, fan_in):
        return (rng.normal(size=shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    # A mean-zero trunk kernel would make conv5 nearly flat on smooth images;
    # a positive offset per filter (some negative) gives varied ReLU patterns.
    trunk = he((256, 1, 17, 17), 17 * 17) + rng.normal(0.0, 0.01, size=(256, 1, 1, 1)).astype(np.float32)
    weights = {
        "trunk_w": trunk,
        "trunk_b": rng.normal(0.0, 0.2, size=256).astype(np.float32),
        "dense1_kernel": he((256, 1024), 256),
        "dense1_bias": rng.normal(0.0, 0.05, size=1024).astype(np.float32),
        "dense2_kernel": he((1024, 512), 1024),
        "dense2_bias": rng.normal(0.0, 0.05, size=512).astype(np.float32),
        "dense3_kernel": (rng.uniform(-1, 1, size=(512, 5)) * np.sqrt(6.0 / 517)).astype(np.float32),
        "dense3_bias": rng.normal(0.0, 0.05, size=5).astype(np.float32),
    }
    nodes = [
        helper.make_node("Transpose", ["image"], ["image_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["image_nchw", "trunk_w", "trunk_b"], ["trunk"],
                         kernel_shape=[17, 17], strides=[17, 17]),
        helper.make_node("Relu", ["trunk"], ["conv5_nchw"]),
        helper.make_node("Transpose", ["conv5_nchw"], ["conv5"], perm=[0, 2, 3, 1]),
        helper.make_node("MaxPool", ["conv5_nchw"], ["pool3"], kernel_shape=[3, 3], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["pool3"], ["gap4"]),
        helper.make_node("Flatten", ["gap4"], ["gap"]),
    ]
    previous = "gap"
    for layer in (1, 2, 3):
        matmul = f"dense{layer}_mm"
        nodes.append(helper.make_node("MatMul", [previous, f"dense{layer}_kernel"], [matmul]))
        if zero_biases:
            del weights[f"dense{layer}_bias"]  # exporters fold zero biases away
            pre = matmul
        else:
            pre = f"dense{layer}_pre"
            nodes.append(helper.make_node("Add", [matmul, f"dense{layer}_bias"], [pre]))
        if layer < 3:
            nodes.append(helper.make_node("Relu", [pre], [f"dense{layer}"]))
            previous = f"dense{layer}"
        else:
            nodes.append(helper.make_node("Softmax", [pre], ["probabilities"], axis=-1))
    outputs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 5])]
    if with_conv5:
        outputs.append(helper.make_tensor_value_info("conv5", TensorProto.FLOAT, ["N", 30, 30, 256]))
    graph = helper.make_graph(
        nodes, "deltaiqa_tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 512, 512, 1])],
        outputs, [numpy_helper.from_array(value, name) for name, value in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"model_card": json.dumps(card(precision))})
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, path)
    return path


def phantom(seed: int, noise_hu: float, size: tuple[int, int] = (512, 512)) -> np.ndarray:
    """An abdomen-like HU slice: air, an elliptic water body, a few organs, Gaussian noise."""
    rng = np.random.default_rng(seed)
    rows, cols = size
    y, x = np.mgrid[:rows, :cols].astype(np.float32)
    cy, cx = rows / 2, cols / 2
    hu = np.full(size, -1000.0, dtype=np.float32)
    body = ((y - cy) / (0.36 * rows)) ** 2 + ((x - cx) / (0.45 * cols)) ** 2 < 1
    hu[body] = 40.0
    for _ in range(4):
        oy, ox = rng.uniform(-0.2, 0.2) * rows, rng.uniform(-0.25, 0.25) * cols
        radius = rng.uniform(0.04, 0.1) * min(rows, cols)
        organ = (y - cy - oy) ** 2 + (x - cx - ox) ** 2 < radius ** 2
        hu[organ & body] = rng.choice([-100.0, 60.0, 300.0, 900.0])
    hu[body] += rng.normal(0.0, noise_hu, size=int(body.sum())).astype(np.float32)
    return hu
