"""The Delta-IQA definition, original-style weights, and Keras -> ONNX parity."""

import json

import numpy as np
import pytest

from convert.train.model import PARAMETER_COUNT, WeightsError, build_delta_iqa, load_model

EXPECTED_SHAPES = {
    "conv1": (126, 126, 96), "pool1": (62, 62, 96), "conv2": (62, 62, 256),
    "pool2": (30, 30, 256), "conv3": (30, 30, 384), "conv4": (30, 30, 384),
    "conv5": (30, 30, 256), "pool3": (14, 14, 256), "gap": (256,), "dense1": (1024,),
    "dropout1": (1024,), "dense2": (512,), "dropout2": (512,), "dense3": (5,),
}


def test_parameter_count_and_layer_shapes():
    model = build_delta_iqa(seed=0)
    assert model.count_params() == PARAMETER_COUNT == 4_514_501
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    assert shapes == EXPECTED_SHAPES
    assert model.layers[-1].activation.__name__ == "softmax"


def original_style_model():
    """Built the way the original training code does: a Sequential subclass, unnamed layers."""
    import keras
    from keras import layers

    class CustomSequential(keras.Sequential):
        pass

    model = CustomSequential()
    model.add(layers.InputLayer(shape=(512, 512, 1), name="input_layer_custom"))
    model.add(layers.Conv2D(96, (11, 11), strides=4, padding="valid", activation="relu",
                            kernel_initializer="he_normal"))
    model.add(layers.MaxPooling2D((3, 3), strides=2))
    model.add(layers.Conv2D(256, (5, 5), padding="same", activation="relu",
                            kernel_initializer="he_normal"))
    model.add(layers.MaxPooling2D((3, 3), strides=2))
    for filters in (384, 384, 256):
        model.add(layers.Conv2D(filters, (3, 3), padding="same", activation="relu",
                                kernel_initializer="he_normal"))
    model.add(layers.MaxPooling2D((3, 3), strides=2))
    model.add(layers.GlobalAveragePooling2D())
    model.add(layers.Dense(1024, activation="relu", kernel_initializer="he_normal"))
    model.add(layers.Dropout(0.5))
    model.add(layers.Dense(512, activation="relu", kernel_initializer="he_normal"))
    model.add(layers.Dropout(0.3))
    model.add(layers.Dense(5, activation="softmax", kernel_initializer="glorot_uniform"))
    # Non-zero biases, as after training, so the check covers every variable.
    rng = np.random.default_rng(3)
    for layer in model.layers:
        if layer.weights:
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0, 0.05, bias.shape).astype(np.float32)])
    return model


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(11)
    model = original_style_model()
    folder = tmp_path_factory.mktemp("original")
    weights = folder / "checkpoint.weights.h5"
    model.save_weights(weights)
    full = folder / "model.keras"
    model.save(full)
    images = np.random.default_rng(5).random((4, 512, 512, 1), dtype=np.float32)
    return model, weights, full, images


def test_original_weights_h5_load_equal(original):
    model, weights, _, images = original
    ours = load_model(weights)
    np.testing.assert_allclose(ours.predict(images, verbose=0), model.predict(images, verbose=0),
                               atol=1e-6)
    assert [layer.name for layer in ours.layers][6] == "conv5"


def test_full_keras_file_loads_in_safe_mode(original):
    model, _, full, images = original
    ours = load_model(full)
    np.testing.assert_allclose(ours.predict(images, verbose=0), model.predict(images, verbose=0),
                               atol=1e-6)


def test_wrong_weights_file_is_refused(tmp_path):
    import keras
    from keras import layers

    other = keras.Sequential([layers.InputLayer(shape=(8,)), layers.Dense(3)])
    path = tmp_path / "other.weights.h5"
    other.save_weights(path)
    with pytest.raises(WeightsError, match=r"other.weights.h5: group 'layers/conv2d' missing"):
        load_model(path)


def test_original_weights_convert_to_onnx_with_parity(original, tmp_path):
    import onnx
    import onnxruntime as ort

    from convert.quant.export import export_command

    model, weights, _, images = original
    output = tmp_path / "m.onnx"
    card = export_command(weights, output, verify_count=32, log=lambda *_: None)
    assert card["verification"]["keras_parity"]["slices"] == 32
    assert card["verification"]["keras_parity"]["max_abs_prob_diff"] <= 1e-4

    proto = onnx.load(str(output))
    assert proto.opset_import[0].version >= 13
    assert [i.name for i in proto.graph.input] == ["image"]
    assert [o.name for o in proto.graph.output] == ["probabilities", "conv5"]
    stored = json.loads({p.key: p.value for p in proto.metadata_props}["model_card"])
    assert stored["precision"] == "fp32"
    assert stored["preprocessing"]["window_centre_hu"] == -300.0
    assert len(stored["source_weights_sha256"]) == 64

    # Dynamic batch, and the original-style Keras model itself as the reference.
    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    for n in (1, 3):
        (probs,) = session.run(["probabilities"], {"image": images[:n]})
        np.testing.assert_allclose(probs, model.predict(images[:n], verbose=0), atol=1e-4)
