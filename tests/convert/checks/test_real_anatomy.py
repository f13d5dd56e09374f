"""The real-anatomy check: real CT from pydicom's test data, noise inserted at known levels."""

from pathlib import Path

import numpy as np
import pytest

from convert.checks import real_anatomy
from deltaiqa_lite.physics.label_rule import continuous_score

MODELS = Path(__file__).resolve().parents[3] / "models"


def test_inserted_noise_has_the_requested_sd_and_an_fbp_spectrum():
    noise = real_anatomy.ct_noise((256, 256), 20.0, np.random.default_rng(0))
    assert noise.std() == pytest.approx(20.0, rel=1e-4)
    power = np.abs(np.fft.fft2(noise)) ** 2
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(256), np.fft.fftfreq(256), indexing="ij"))
    low, mid = power[(f > 0.02) & (f < 0.06)].mean(), power[(f > 0.15) & (f < 0.25)].mean()
    assert mid > 2 * low            # rises with frequency like FBP noise, unlike white noise
    assert not real_anatomy.ct_noise((8, 8), 0.0, np.random.default_rng(0)).any()


def test_global_noise_level_recovers_known_noise_on_a_flat_phantom():
    hu = np.full((256, 256), -1000.0)
    hu[32:224, 32:224] = 45.0                                  # soft tissue plateau
    for sd in (5.0, 15.0, 30.0):
        noisy = hu + real_anatomy.ct_noise(hu.shape, sd, np.random.default_rng(int(sd)))
        assert real_anatomy.global_noise_level(noisy) == pytest.approx(sd, rel=0.05)
    assert 0.85 < real_anatomy.gnl_bias() < 1.0           # small windows read correlated noise low


def test_real_slices_are_real_ct_never_training_data():
    slices = real_anatomy.load_real_slices()
    assert len(slices) == len(real_anatomy.SLICES)
    for name, _frame, _part, in_scope, hu, reconstructed in slices:
        assert hu.ndim == 2 and min(hu.shape) >= 128, name
        assert reconstructed.shape == hu.shape and reconstructed.mean() > 0.5, name
        assert hu.min() < -700, name                          # air around the patient
        if in_scope:
            assert hu.max() > 1000, name                      # reconstructed slices with bone
    assert sum(s[3] for s in slices) == 4
    # 693_UNCR pads the corners outside its field of view (Pixel Padding Value): no noise goes there.
    padded = {s[0]: float((~s[5]).mean()) for s in slices}
    assert padded["693_UNCR.dcm"] > 0.1


@pytest.mark.slow
def test_check_on_shipped_model_ranks_noise_and_reports_the_rule_gap():
    result = real_anatomy.run_check({"fp32": MODELS / "deltaiqa-fp32.onnx"}, log=lambda *_: None)
    summary = result["summary"]["fp32"]
    assert summary["slices"] == 4 and summary["scored"] == 4 * len(real_anatomy.INSERTED_SD_HU)
    # The network orders inserted noise correctly on every real slice...
    assert all(rho <= -0.9 for rho in summary["spearman_rho_score_vs_noise_per_slice"])
    # ...and the reported gap is the gap between its scores and the rule.
    rows = [r for r in result["slices"] if r["in_scope"]]
    gaps = [abs(r["scores"]["fp32"] - continuous_score(r["measured_noise_hu"])) for r in rows]
    assert summary["mean_abs_diff"] == pytest.approx(np.mean(gaps), abs=2e-3)
    assert summary["max_abs_diff"] == pytest.approx(max(gaps), abs=2e-3)
    assert result["never_in_training"] is True


def test_three_textures_differ_in_grain_and_keep_the_requested_sd():
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(256), np.fft.fftfreq(256), indexing="ij"))
    shares = {}
    for texture in real_anatomy.TEXTURES:
        noise = real_anatomy.textured_noise((256, 256), 25.0, texture, np.random.default_rng(1))
        assert noise.std() == pytest.approx(25.0, rel=1e-4)
        power = np.abs(np.fft.fft2(noise)) ** 2
        shares[texture] = power[f > 0.3].sum() / power.sum()
    assert shares["smooth"] < shares["standard"] < shares["sharp"]
    with pytest.raises(ValueError, match="unknown texture 'bone'"):
        real_anatomy.textured_noise((8, 8), 1.0, "bone", np.random.default_rng(0))


def test_probe_slope_is_the_least_squares_slope():
    rule = np.array([4.0, 3.4, 2.3, 1.2, 0.1])
    assert real_anatomy.probe_slope(rule, 0.5 * rule + 1.0) == pytest.approx(0.5)
    assert real_anatomy.probe_slope(rule, np.full(5, 3.0)) == pytest.approx(0.0)
    assert np.isnan(real_anatomy.probe_slope(np.ones(3), np.arange(3.0)))


def _constant_model(path: Path, logits) -> Path:
    """A real ONNX model that ignores its input: one fixed score for every slice."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1, 2, 3], keepdims=1),
             helper.make_node("Flatten", ["mean"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "zeros"], ["zero"]),
             helper.make_node("Add", ["zero", "logits"], ["scaled"]),
             helper.make_node("Softmax", ["scaled"], ["probabilities"], axis=1)]
    graph = helper.make_graph(
        nodes, "constant",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 512, 512, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 5])],
        [helper.make_tensor("zeros", TensorProto.FLOAT, [1, 5], [0.0] * 5),
         helper.make_tensor("logits", TensorProto.FLOAT, [1, 5], list(logits))])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.slow
def test_v2_gates_fail_a_model_that_reads_anatomy_not_noise(tmp_path):
    flat = _constant_model(tmp_path / "flat.onnx", [0.0, 0.0, 0.0, 4.0, 0.0])   # always about 3
    result = real_anatomy.run_check_v2({"flat": flat}, textures=("standard",), log=lambda *_: None)
    assert result["regions_without_slices"] == ["chest", "pelvis"]
    assert set(result["regions"]) == {"head", "neck", "abdomen"}
    assert result["gates"]["passed"] is False
    assert all(not p["passed"] and abs(p["slope"]) < 0.05 for p in result["probe"]["flat"])
    assert all(not r["flat"]["passed"] for r in result["regions"].values())
    assert any("probe" in line for line in result["gates"]["failures"])


@pytest.mark.slow
def test_v2_check_on_shipped_models_per_region_and_probe():
    result = real_anatomy.run_check_v2({"fp32": MODELS / "deltaiqa-fp32.onnx"}, log=lambda *_: None)
    levels, textures = len(real_anatomy.INSERTED_SD_HU), len(real_anatomy.TEXTURES)
    assert result["regions"]["head"]["fp32"]["scored"] == 2 * levels * textures
    assert len(result["probe"]["fp32"]) == 4 * textures
    for region, entry in result["regions"].items():
        rows = [r for r in result["slices"] if r["region"] == region]
        gaps = [abs(r["scores"]["fp32"] - r["rule_score"]) for r in rows]
        assert entry["fp32"]["mean_abs_diff"] == pytest.approx(np.mean(gaps), abs=2e-3)
        assert entry["fp32"]["passed"] == (entry["fp32"]["mean_abs_diff"] <= 0.25
                                           and entry["fp32"]["max_abs_diff"] <= 0.6)
    assert result["gates"]["passed"] == (not result["gates"]["failures"])
