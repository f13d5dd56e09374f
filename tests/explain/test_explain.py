"""Grad-CAM without TensorFlow: weights reader, analytic gradient, Explainer, overlay, CLI.

Parity with TensorFlow's GradientTape on the real architecture is the build
test tests/convert/test_gradcam_parity.py; here the analytic gradient is held
to finite differences and the pipeline runs on a tiny contract-true ONNX graph.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import helper, numpy_helper  # noqa: E402

import tiny_delta_model  # noqa: E402
from deltaiqa_lite.explain import draw  # noqa: E402
from deltaiqa_lite.cli import main  # noqa: E402
from deltaiqa_lite.errors import ModelError  # noqa: E402
from deltaiqa_lite.explain import (DenseHead, Explainer, conv5_gradient, gradcam,  # noqa: E402
                                   head_forward, heatmap_on_slice, write_explanation)
from deltaiqa_lite.model.onnx_weights import read_float_initializers  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return tiny_delta_model.build(tmp_path_factory.mktemp("models") / "tiny-fp32.onnx", seed=3)


@pytest.fixture(scope="module")
def head(tiny_model):
    return DenseHead.from_onnx(tiny_model)


@pytest.fixture(scope="module")
def explainer(tiny_model):
    return Explainer(str(tiny_model), provider="cpu", batch_size=2)


def _random_conv5(seed, n=2, zero_fraction=0.0):
    rng = np.random.default_rng(seed)
    conv5 = rng.gamma(2.0, 0.5, size=(n, 30, 30, 256))
    conv5[rng.random(conv5.shape) < zero_fraction] = 0.0
    return conv5


# -- weights ---------------------------------------------------------------

def test_initializer_reader_equals_onnx(tiny_model):
    expected = {t.name: numpy_helper.to_array(t) for t in onnx.load(tiny_model).graph.initializer}
    found = read_float_initializers(tiny_model)
    assert set(found) == set(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(found[name], value)


def test_initializer_reader_refuses_non_onnx(tmp_path):
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"\xff" * 40)
    with pytest.raises(ModelError, match="bogus.onnx: not a readable ONNX model"):
        read_float_initializers(bogus)


def test_dense_head_found_by_shape(tiny_model, head):
    weights = read_float_initializers(tiny_model)
    np.testing.assert_array_equal(head.kernel1, weights["dense1_kernel"])
    np.testing.assert_array_equal(head.bias3, weights["dense3_bias"])


def test_missing_biases_are_zero(tmp_path):
    path = tiny_delta_model.build(tmp_path / "nobias.onnx", zero_biases=True)
    head = DenseHead.from_onnx(path)
    assert not head.bias1.any() and not head.bias2.any() and not head.bias3.any()


def test_model_without_dense_kernels_is_refused(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [3])],
        [numpy_helper.from_array(np.zeros((3, 3), np.float32), "w")])
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), path)
    with pytest.raises(ModelError, match=r"no float32 initializer of shape \(256, 1024\)"):
        DenseHead.from_onnx(path)


# -- analytic gradient -----------------------------------------------------

def test_head_forward_equals_onnxruntime(tiny_model, head):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tiny_model), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    batch = rng.random((3, 512, 512, 1), dtype=np.float32)
    probabilities, conv5 = session.run(["probabilities", "conv5"], {"image": batch})
    np.testing.assert_allclose(head_forward(conv5, head).probabilities, probabilities, atol=1e-6)


def test_gradient_equals_finite_differences(head):
    conv5 = _random_conv5(1, n=1)  # continuous values: no ties, no zeros
    gradient, forward, classes = conv5_gradient(conv5, head)
    c = int(classes[0])
    assert c == int(forward.probabilities[0].argmax())
    rng = np.random.default_rng(5)
    # Positions that are some window's max (non-zero gradient) and random others.
    winners = np.argwhere(gradient[0] != 0)
    picks = list(winners[rng.choice(len(winners), 12, replace=False)])
    picks += [tuple(rng.integers(0, [30, 30, 256])) for _ in range(8)]
    step = 1e-5
    for y, x, k in picks:
        up, down = conv5.copy(), conv5.copy()
        up[0, y, x, k] += step
        down[0, y, x, k] -= step
        numeric = (head_forward(up, head).probabilities[0, c]
                   - head_forward(down, head).probabilities[0, c]) / (2 * step)
        assert gradient[0, y, x, k] == pytest.approx(numeric, rel=1e-5, abs=1e-11), (y, x, k)


def test_max_pool_ties_go_to_the_first_position_row_major(head):
    conv5 = np.zeros((1, 30, 30, 256))
    gradient, _, _ = conv5_gradient(conv5, head)
    # All windows tie at 0: each routes to its top-left corner, the even (row, col) positions.
    nonzero_rows, nonzero_cols = np.nonzero(np.abs(gradient[0]).sum(axis=2))
    assert set(nonzero_rows.tolist()) == set(range(0, 27, 2))
    assert set(nonzero_cols.tolist()) == set(range(0, 27, 2))
    # A tie between (0, 1) and (1, 0) in the first window: (0, 1) comes first row-major.
    conv5[0, 0, 1, 7] = conv5[0, 1, 0, 7] = 2.0
    gradient, _, _ = conv5_gradient(conv5, head)
    assert gradient[0, 0, 1, 7] != 0.0
    assert gradient[0, 1, 0, 7] == 0.0
    assert gradient[0, 0, 0, 7] == 0.0


def test_channel_weights_are_gap_gradient_over_900(head):
    # Every window routes its gradient to one position, so the spatial mean per
    # channel is d p_c / d gap / 900 whatever the ties: check on ReLU-like data.
    conv5 = _random_conv5(2, zero_fraction=0.6)
    gradient, forward, classes = conv5_gradient(conv5, head)
    step = 1e-6
    for k in (0, 100, 255):
        up, down = conv5.copy(), conv5.copy()
        # Shifting a whole channel by a constant shifts its pooled values and gap by the same.
        up[..., k] += step
        down[..., k] -= step
        numeric = (head_forward(up, head).probabilities[np.arange(2), classes]
                   - head_forward(down, head).probabilities[np.arange(2), classes]) / (2 * step)
        np.testing.assert_allclose(gradient[..., k].mean(axis=(1, 2)), numeric / 900, rtol=1e-4)


def test_gradcam_map_properties(head):
    conv5 = _random_conv5(4, n=3, zero_fraction=0.5)
    cams, forward, classes = gradcam(conv5, head)
    assert cams.shape == (3, 30, 30) and cams.dtype == np.float32
    gradient, _, _ = conv5_gradient(conv5, head)
    expected = np.maximum(np.einsum("nhwc,nc->nhw", conv5, gradient.mean(axis=(1, 2))), 0)
    for i in range(3):
        if expected[i].max() > 0:
            np.testing.assert_allclose(cams[i], expected[i] / expected[i].max(), rtol=1e-5, atol=1e-7)
            assert cams[i].max() == pytest.approx(1.0)
    # Explaining another class changes the map.
    other = (classes + 1) % 5
    assert not np.allclose(gradcam(conv5, head, other)[0], cams)


def test_all_negative_evidence_gives_empty_map(head):
    cams, _, _ = gradcam(np.zeros((1, 30, 30, 256)), head)
    assert not cams.any() and np.isfinite(cams).all()


def test_heatmap_on_non_square_slice():
    cam = np.linspace(0, 1, 900, dtype=np.float32).reshape(30, 30)
    square = heatmap_on_slice(cam, (300, 300))
    assert square.shape == (300, 300) and np.isfinite(square).all()
    wide = heatmap_on_slice(cam, (300, 420))
    assert wide.shape == (300, 420)
    assert np.isnan(wide[:, :60]).all() and np.isnan(wide[:, 360:]).all()
    np.testing.assert_array_equal(wide[:, 60:360], square)


# -- drawing ---------------------------------------------------------------

def test_jet_table_matches_matplotlib_endpoints():
    assert draw.JET.shape == (256, 3)
    assert draw.JET[0].tolist() == [0, 0, 128]
    assert draw.JET[-1].tolist() == [128, 0, 0]
    assert draw.JET[128].tolist()[1] == 255  # green at the centre


def test_overlay_blends_and_leaves_nan_grey():
    grey = np.full((4, 4), 0.5)
    heat = np.ones((4, 4))
    heat[0, 0] = np.nan
    rgb = draw.overlay(grey, heat, alpha=0.4)
    assert rgb[0, 0].tolist() == [128, 128, 128]
    assert rgb[1, 1].tolist() == [round(0.6 * 127.5 + 0.4 * 128), round(0.6 * 127.5), round(0.6 * 127.5)]
    with pytest.raises(ValueError, match="same 2-D shape"):
        draw.overlay(grey, heat[:2])


# -- Explainer on files ----------------------------------------------------

@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("inputs")
    np.save(folder / "wide.npy", tiny_delta_model.phantom(0, 25.0, size=(400, 520)))
    np.save(folder / "square.npy", tiny_delta_model.phantom(1, 60.0))
    pages = [Image.fromarray(np.clip((tiny_delta_model.phantom(s, 15.0 * s) + 1000) / 1400, 0, 1)
                             .astype(np.float32), mode="F") for s in (2, 3)]
    pages[0].save(folder / "stack.tif", save_all=True, append_images=pages[1:])
    (folder / "broken.npy").write_bytes(b"not numpy")
    return folder


def test_explainer_on_files(explainer, inputs, tmp_path):
    from deltaiqa_lite.score import Scorer

    paths = [inputs / "wide.npy", inputs / "broken.npy", inputs / "stack.tif", inputs / "square.npy"]
    explanations = explainer.explain_paths(paths)
    assert [(e.path.split("/")[-1], e.frame, e.status) for e in explanations] == [
        ("wide.npy", None, "ok"), ("broken.npy", None, "error"), ("stack.tif", 0, "ok"),
        ("stack.tif", 1, "ok"), ("square.npy", None, "ok")]
    assert "broken.npy: not a readable .npy array" in explanations[1].error
    scored = Scorer(str(explainer.model_path), provider="cpu").score_paths(paths)
    for explanation, result in zip(explanations, scored):
        if explanation.status == "ok":
            assert explanation.score == pytest.approx(result.score, abs=1e-5)
            assert explanation.likert == result.likert == explanation.explained_class
    wide = explanations[0]
    assert wide.heatmap.shape == (400, 520) == wide.display.shape
    assert np.isnan(wide.heatmap[:, :60]).all() and np.isfinite(wide.heatmap[:, 60:460]).all()
    written = write_explanation(wide, tmp_path, save_map=True)
    assert [p.name for p in written] == ["wide.npy.gradcam.png", "wide.npy.gradcam.npy"]
    from PIL import Image
    with Image.open(written[0]) as png:
        assert png.size == (520, 400) and png.mode == "RGB"
    np.testing.assert_array_equal(np.load(written[1]), wide.heatmap)
    assert write_explanation(explanations[3], tmp_path)[0].name == "stack.tif_f0001.gradcam.png"


def test_explain_array_equals_file(explainer, inputs):
    hu = np.load(inputs / "square.npy")
    from_array = explainer.explain_array(hu)
    from_file = explainer.explain_paths([inputs / "square.npy"])[0]
    np.testing.assert_array_equal(from_array.cam, from_file.cam)
    assert from_array.cam.max() == pytest.approx(1.0)


def test_explainer_refuses_int8(tmp_path):
    with pytest.raises(ModelError, match="Grad-CAM runs on the FP32 model"):
        Explainer("int8")
    path = tiny_delta_model.build(tmp_path / "tiny-int8.onnx", precision="int8")
    with pytest.raises(ModelError, match="precision 'int8'"):
        Explainer(str(path), provider="cpu")


def test_explainer_refuses_model_without_conv5(tmp_path):
    path = tiny_delta_model.build(tmp_path / "noconv5.onnx", with_conv5=False)
    with pytest.raises(ModelError, match="no 'conv5' output"):
        Explainer(str(path), provider="cpu")


def test_head_that_does_not_reproduce_the_model_is_caught(tmp_path):
    # Same weights, but the graph scales the logits before softmax: the head
    # found by shape is no longer the model's, and Grad-CAM must not pretend.
    path = tiny_delta_model.build(tmp_path / "tempered.onnx")
    model = onnx.load(path)
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    softmax.input[0], original = "tempered", softmax.input[0]
    model.graph.initializer.append(numpy_helper.from_array(np.array(3.0, np.float32), "temperature"))
    model.graph.node.insert(list(model.graph.node).index(softmax),
                            helper.make_node("Mul", [original, "temperature"], ["tempered"]))
    onnx.save(model, path)
    explainer = Explainer(str(path), provider="cpu")
    with pytest.raises(ModelError, match="dense weights found by shape give probabilities"):
        explainer.explain_array(tiny_delta_model.phantom(0, 20.0))


# -- CLI -------------------------------------------------------------------

def test_cli_explain_writes_pngs_and_reports_failures(tiny_model, inputs, tmp_path, capsys):
    out = tmp_path / "maps"
    status = main(["explain", str(inputs / "square.npy"), str(inputs / "broken.npy"),
                   "--model", str(tiny_model), "--provider", "cpu", "--output", str(out),
                   "--save-map", "--format", "json"])
    captured = capsys.readouterr()
    assert status == 1
    assert "broken.npy: not a readable .npy array" in captured.err
    report = json.loads(captured.out)
    assert [s["status"] for s in report["slices"]] == ["ok", "error"]
    assert sorted(p.name for p in out.iterdir()) == ["square.npy.gradcam.npy",
                                                     "square.npy.gradcam.png"]
    from PIL import Image
    with Image.open(out / "square.npy.gradcam.png") as png:
        assert png.size == (512, 512)


def test_cli_explain_all_ok_and_usage_errors(tiny_model, inputs, tmp_path, capsys):
    assert main(["explain", str(inputs / "stack.tif"), "--model", str(tiny_model),
                 "--provider", "cpu", "-o", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "stack.tif[0]" in table and "stack.tif[1]" in table
    assert main(["explain", str(inputs / "stack.tif"), "--model", "int8", "-o", str(tmp_path)]) == 2
    assert "Grad-CAM runs on the FP32 model" in capsys.readouterr().err
    assert main(["explain", str(inputs / "stack.tif")]) == 2  # --output is required


# -- end to end: shipped FP32 model on the shipped examples -----------------

def test_explain_examples_with_shipped_model(shipped_models, tmp_path):
    from pathlib import Path

    from PIL import Image

    from deltaiqa_lite.score import Scorer

    examples = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.dcm"))
    if not examples:
        pytest.skip("no examples/*.dcm")
    fp32 = shipped_models / "deltaiqa-fp32.onnx"
    # The head found by shape is checked against the model's own probabilities
    # inside explain_paths: this proves the convert/ export keeps the dense
    # weights findable (biases included) and conv5 exposed.
    explanations = Explainer(str(fp32), provider="cpu").explain_paths(examples)
    scores = Scorer(str(fp32), provider="cpu").score_paths(examples)
    assert [e.status for e in explanations] == ["ok"] * len(examples)
    for explanation, result in zip(explanations, scores):
        assert explanation.score == pytest.approx(result.score, abs=1e-5)
        assert explanation.heatmap.shape == explanation.display.shape == (512, 512)
        png = write_explanation(explanation, tmp_path)[0]
        with Image.open(png) as image:
            assert image.size == (512, 512)


def test_scorer_explain_uses_fp32_even_for_int8_scorer(shipped_models):
    from pathlib import Path

    from deltaiqa_lite.score import Scorer

    example = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.dcm"))[0]
    int8 = Scorer(str(shipped_models / "deltaiqa-int8.onnx"), provider="cpu")
    (explanation,) = int8.explain(example)
    fp32_score = Scorer(str(shipped_models / "deltaiqa-fp32.onnx"), provider="cpu").score_file(example)
    assert explanation.status == "ok"
    assert explanation.score == pytest.approx(fp32_score.score, abs=1e-5)
    assert int8._explainer.scorer.precision == "fp32"


def test_scorer_explain_on_fp32_reuses_its_session(shipped_models):
    from pathlib import Path

    from deltaiqa_lite.score import Scorer

    example = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.dcm"))[0]
    fp32 = Scorer(str(shipped_models / "deltaiqa-fp32.onnx"), provider="cpu")
    (explanation,) = fp32.explain(example)
    assert fp32._explainer.scorer is fp32
    assert explanation.score == pytest.approx(fp32.score_file(example).score, abs=1e-6)
