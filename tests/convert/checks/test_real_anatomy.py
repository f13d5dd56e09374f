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
    for name, _frame, _part, in_scope, hu in slices:
        assert hu.ndim == 2 and min(hu.shape) >= 128, name
        assert hu.min() < -700, name                          # air around the patient
        if in_scope:
            assert hu.max() > 1000, name                      # reconstructed slices with bone
    assert sum(s[3] for s in slices) == 4


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
