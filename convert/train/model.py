"""The Delta-IQA network exactly as the original defines it, and loaders for its weights.

DESIGN.md section 1: an AlexNet-like Keras ``Sequential`` on 512x512x1 inputs,
ReLU everywhere, ``he_normal`` initialisation except the softmax layer
(``glorot_uniform``), 4,514,501 parameters.

Weights arrive in three forms, all loaded into this one definition so that
export always sees the same layer names:

- ``*.weights.h5`` written by Keras 3 ``save_weights`` (the original's
  ``ModelCheckpoint(save_weights_only=True)`` and our own checkpoints). Keras 3
  keys these by layer class and order (``layers/conv2d``, ``layers/conv2d_1``,
  ..., ``layers/dense_2``), not by the names below, so we read them the same way;
- a full ``.keras`` model file, opened with Keras safe mode on.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

INPUT_SHAPE = (512, 512, 1)
NUM_CLASSES = 5
PARAMETER_COUNT = 4_514_501
ARCHITECTURE = "Delta-IQA"
ARCHITECTURE_VERSION = "1"

# (name, kind, settings) in order; the single source of the architecture.
LAYERS = (
    ("conv1", "conv", dict(filters=96, kernel_size=11, strides=4, padding="valid")),
    ("pool1", "pool", dict(pool_size=3, strides=2, padding="valid")),
    ("conv2", "conv", dict(filters=256, kernel_size=5, strides=1, padding="same")),
    ("pool2", "pool", dict(pool_size=3, strides=2, padding="valid")),
    ("conv3", "conv", dict(filters=384, kernel_size=3, strides=1, padding="same")),
    ("conv4", "conv", dict(filters=384, kernel_size=3, strides=1, padding="same")),
    ("conv5", "conv", dict(filters=256, kernel_size=3, strides=1, padding="same")),
    ("pool3", "pool", dict(pool_size=3, strides=2, padding="valid")),
    ("gap", "gap", {}),
    ("dense1", "dense", dict(units=1024)),
    ("dropout1", "dropout", dict(rate=0.5)),
    ("dense2", "dense", dict(units=512)),
    ("dropout2", "dropout", dict(rate=0.3)),
    ("dense3", "softmax", dict(units=NUM_CLASSES)),
)


def build_delta_iqa(seed: int | None = None):
    """Return the Keras 3 Delta-IQA model (uncompiled), layer names as the original."""
    import keras
    from keras import layers

    if seed is not None:
        keras.utils.set_random_seed(seed)
    stack = [layers.InputLayer(shape=INPUT_SHAPE, name="input_layer_custom")]
    for name, kind, settings in LAYERS:
        if kind == "conv":
            stack.append(layers.Conv2D(activation="relu", kernel_initializer="he_normal",
                                       name=name, **settings))
        elif kind == "pool":
            stack.append(layers.MaxPooling2D(name=name, **settings))
        elif kind == "gap":
            stack.append(layers.GlobalAveragePooling2D(name=name))
        elif kind == "dense":
            stack.append(layers.Dense(activation="relu", kernel_initializer="he_normal",
                                      name=name, **settings))
        elif kind == "dropout":
            stack.append(layers.Dropout(name=name, **settings))
        elif kind == "softmax":
            stack.append(layers.Dense(activation="softmax", kernel_initializer="glorot_uniform",
                                      name=name, **settings))
    return keras.Sequential(stack, name="delta_iqa")


def weighted_layers(model) -> list:
    return [layer for layer in model.layers if layer.weights]


def _h5_group_names(model) -> list[str]:
    """Keras 3 ``.weights.h5`` group of each weighted layer: class name in snake case + order."""
    counts: dict[str, int] = {}
    names = []
    for layer in weighted_layers(model):
        base = {"Conv2D": "conv2d", "Dense": "dense"}[type(layer).__name__]
        k = counts.get(base, 0)
        counts[base] = k + 1
        names.append(base if k == 0 else f"{base}_{k}")
    return names


class WeightsError(ValueError):
    """A weights file that does not hold Delta-IQA weights."""


def load_weights_h5(model, path: str | Path) -> None:
    """Load a Keras 3 ``.weights.h5`` into ``model``, checking every shape.

    Reads the file's groups itself (``layers/<class>[_k]/vars/<i>``) so that a
    mismatch is reported with the group and the shapes instead of Keras's
    generic error.
    """
    import h5py

    path = Path(path)
    with h5py.File(path, "r") as h5:
        if "layers" not in h5:
            raise WeightsError(f"{path.name}: no 'layers' group; not a Keras 3 .weights.h5 file "
                               f"(top-level keys: {sorted(h5.keys())})")
        stored = h5["layers"]
        for layer, group in zip(weighted_layers(model), _h5_group_names(model)):
            if group not in stored or "vars" not in stored[group]:
                raise WeightsError(f"{path.name}: group 'layers/{group}' missing "
                                   f"(needed for {layer.name}); found {sorted(stored.keys())}")
            vars_group = stored[group]["vars"]
            values = [np.asarray(vars_group[str(i)]) for i in range(len(vars_group))]
            expected = [tuple(w.shape) for w in layer.weights]
            got = [v.shape for v in values]
            if expected != got:
                raise WeightsError(f"{path.name}: 'layers/{group}' holds shapes {got}, "
                                   f"{layer.name} needs {expected}")
            layer.set_weights(values)
        extra = set(stored.keys()) - set(_h5_group_names(model))
        extra = {name for name in extra if "vars" in stored[name] and len(stored[name]["vars"])}
        if extra:
            raise WeightsError(f"{path.name}: weighted groups {sorted(extra)} are not part of Delta-IQA")


def load_model(path: str | Path, seed: int = 0):
    """Build Delta-IQA and fill it from ``.weights.h5`` or ``.keras`` (safe mode on)."""
    import keras

    path = Path(path)
    model = build_delta_iqa(seed=seed)
    if path.name.endswith(".keras"):
        source = keras.saving.load_model(path, compile=False, safe_mode=True,
                                         custom_objects=_sequential_subclasses(path))
        source_layers = weighted_layers(source)
        target_layers = weighted_layers(model)
        if len(source_layers) != len(target_layers):
            raise WeightsError(f"{path.name}: {len(source_layers)} weighted layers, "
                               f"Delta-IQA has {len(target_layers)}")
        for src, dst in zip(source_layers, target_layers):
            values = src.get_weights()
            if [v.shape for v in values] != [tuple(w.shape) for w in dst.weights]:
                raise WeightsError(f"{path.name}: layer {src.name} shapes "
                                   f"{[v.shape for v in values]} do not fit {dst.name}")
            dst.set_weights(values)
    elif path.name.endswith(".h5"):
        load_weights_h5(model, path)
    else:
        raise WeightsError(f"{path.name}: expected a .weights.h5 or .keras file")
    return model


def save_network_weights(checkpoint: str | Path, path: str | Path) -> Path:
    """Write the network weights of ``checkpoint`` to ``path``, without optimizer state.

    Keras 3 ``save_weights`` on a compiled, trained model also writes the
    optimizer's variables (AdamW's two moments: about three times the size).
    Loading the checkpoint into a fresh, uncompiled Delta-IQA and saving that
    keeps the 4,514,501 parameters only.
    """
    path = Path(path)
    load_model(checkpoint).save_weights(path)
    return path


def _sequential_subclasses(path: Path) -> dict:
    """Map a custom ``Sequential`` subclass named in a ``.keras`` file to ``keras.Sequential``.

    The original training code subclasses ``Sequential``; its ``.keras`` files
    name that class, which is not importable here. Only the architecture and
    weights matter, so the name is mapped to the plain class. Safe mode stays
    on: nothing in the file is executed.
    """
    import zipfile

    import keras

    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path.name}: not a Keras 3 .keras archive ({exc})") from None
    name = config.get("registered_name") or config.get("class_name")
    if config.get("class_name") not in ("Sequential",) and name and \
            config.get("config", {}).get("layers") is not None:
        return {name: keras.Sequential, config.get("class_name"): keras.Sequential}
    return {}


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def keras_forward(model):
    """A ``tf.function`` returning the probabilities and the conv5 activations."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 512, 512, 1], tf.float32, name="image")])
    def forward(image):
        x = image
        conv5 = None
        for layer in model.layers:
            x = layer(x, training=False)
            if layer.name == "conv5":
                conv5 = x
        return {"probabilities": x, "conv5": conv5}

    return forward
