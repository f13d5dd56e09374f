"""Keras Delta-IQA -> ONNX FP32 with the model card, verified against Keras.

tf2onnx's ``from_keras`` fails on Keras 3 models, so the network is wrapped in
a ``tf.function`` with an input signature and converted with
``from_function`` (DESIGN.md section 5). The ONNX graph has the contract of
DESIGN.md section 3: input ``image`` [N, 512, 512, 1], output
``probabilities`` [N, 5], plus ``conv5`` for Grad-CAM.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from convert.card.card import MODEL_VERSION, attach_card, build_card, model_version
from convert.train.model import keras_forward, load_model, sha256_file

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAMES = ("probabilities", "conv5")
PARITY_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """Conversion produced a model that does not match Keras, or breaks the contract."""


def _rename_io(model_proto) -> None:
    """Give the graph's input and outputs the contract names, whatever tf2onnx called them."""
    graph = model_proto.graph
    renames = {}
    if len(graph.input) != 1:
        raise ExportError(f"expected one graph input, found {[i.name for i in graph.input]}")
    renames[graph.input[0].name] = INPUT_NAME
    for output in graph.output:
        dims = [d.dim_value for d in output.type.tensor_type.shape.dim]
        if dims[-1] == 5:
            renames[output.name] = "probabilities"
        elif dims[-1] == 256:
            renames[output.name] = "conv5"
        else:
            raise ExportError(f"unexpected graph output {output.name} with shape {dims}")
    for old, new in renames.items():
        if old == new:
            continue
        for node in graph.node:
            node.input[:] = [new if name == old else name for name in node.input]
            node.output[:] = [new if name == old else name for name in node.output]
        for value in list(graph.input) + list(graph.output):
            if value.name == old:
                value.name = new
    # The batch dimension must be dynamic: tf2onnx names it from the signature.
    for value in list(graph.input) + list(graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "N"
    # Order outputs as the contract lists them.
    ordered = sorted(graph.output, key=lambda o: OUTPUT_NAMES.index(o.name))
    copies = [type(o)() for o in ordered]
    for copy, original in zip(copies, ordered):
        copy.CopyFrom(original)
    del graph.output[:]
    graph.output.extend(copies)


def convert_to_onnx(model):
    """Convert a built Keras Delta-IQA to an ONNX ModelProto (no card yet)."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    forward = keras_forward(model)
    spec = [tf.TensorSpec([None, 512, 512, 1], tf.float32, name=INPUT_NAME)]
    model_proto, _ = tf2onnx.convert.from_function(forward, input_signature=spec, opset=OPSET)
    _rename_io(model_proto)
    onnx.checker.check_model(model_proto)
    return model_proto


def verification_images(count: int, folder: str | Path | None = None, seed: int = 7) -> np.ndarray:
    """Slices for parity checks: from an LDCTIQAC folder, or freshly simulated ones."""
    from deltaiqa_lite.model.preprocess import prepare_hu

    if folder is not None:
        from convert.sim.data import load_image, read_folder

        items = read_folder(folder)[:count]
        return np.stack([load_image(i) for i in items])[..., None]
    from convert.sim.simulate import PhantomScan

    rng = np.random.default_rng(seed)
    planes = []
    scans = [PhantomScan(seed, index) for index in range(max(1, count // 8))]
    for k in range(count):
        scan = scans[k % len(scans)]
        dose = float(np.exp(rng.uniform(np.log(0.05), 0.0)))
        planes.append(prepare_hu(scan.acquire(dose, int(rng.choice([1000, 360, 90])))["hu"]))
    return np.stack(planes)[..., None]


def verify_parity(model, onnx_path: str | Path, images: np.ndarray) -> dict:
    """Max |p_onnx - p_keras| and |conv5_onnx - conv5_keras| over ``images``; raise past tolerance."""
    import onnxruntime as ort

    forward = keras_forward(model)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst_p = 0.0
    worst_conv5 = 0.0
    for start in range(0, len(images), 8):
        batch = images[start:start + 8].astype(np.float32)
        reference = forward(batch)
        probs, conv5 = session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})
        worst_p = max(worst_p, float(np.abs(probs - reference["probabilities"].numpy()).max()))
        scale = float(np.abs(reference["conv5"].numpy()).max()) or 1.0
        worst_conv5 = max(worst_conv5,
                          float(np.abs(conv5 - reference["conv5"].numpy()).max()) / scale)
    result = {"slices": int(len(images)), "max_abs_prob_diff": worst_p,
              "max_rel_conv5_diff": worst_conv5, "tolerance": PARITY_TOLERANCE}
    if worst_p > PARITY_TOLERANCE:
        raise ExportError(f"{Path(onnx_path).name}: max |p_onnx - p_keras| = {worst_p:.2e} on "
                          f"{len(images)} slices exceeds {PARITY_TOLERANCE:.0e}")
    return result


def export_command(weights: str | Path, output: str | Path, *, verify_data=None,
                   verify_count: int = 32, card_extra: str | None = None, log=print) -> dict:
    """``python -m convert export``: load, convert, attach the card, verify, write."""
    import onnx

    weights = Path(weights)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    model = load_model(weights)
    log(f"export: loaded {weights.name} ({model.count_params():,} parameters)")
    model_proto = convert_to_onnx(model)
    extra = json.loads(Path(card_extra).read_text()) if card_extra else None
    metrics = {}
    version = MODEL_VERSION
    metrics_file = weights.parent / "metrics.json"
    if metrics_file.exists():
        report = json.loads(metrics_file.read_text())
        metrics = {"held_out_test": report.get("test"), "validation": report.get("validation")}
        version = model_version(report.get("data"))
    card = build_card(precision="fp32", source_weights=weights, source_sha256=sha256_file(weights),
                      metrics=metrics, extra=extra, version=version)
    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / output.name
        attach_card(model_proto, card)
        onnx.save(model_proto, candidate)
        images = verification_images(verify_count, verify_data)
        parity = verify_parity(model, candidate, images)
        card["verification"] = {"keras_parity": parity}
        attach_card(model_proto, card)
        onnx.save(model_proto, output)
    log(f"export: wrote {output} (opset {OPSET}); max |p_onnx - p_keras| = "
        f"{parity['max_abs_prob_diff']:.2e} on {parity['slices']} slices")
    return card
