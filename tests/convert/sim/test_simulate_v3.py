"""Simulator v3: the label is drawn independently of anatomy; the build refuses unbalanced data."""

import json
import math

import numpy as np
import pytest

from convert.__main__ import main
from convert.sim import simulate_v3
from deltaiqa_lite.physics.label_rule import continuous_score


@pytest.fixture(scope="module")
def head():
    """One head scan, shared: its projection, reconstructions and noise maps are cached."""
    return simulate_v3.DecorrelatedScan(seed=5, phantom_index=0)


def test_phantom_regions_take_turns_and_trunks_reach_450_mm():
    assert [simulate_v3.REGIONS[i % 5] for i in range(5)] == list(simulate_v3.REGIONS)
    assert simulate_v3.MAX_DW_MM == 450.0
    # The largest chest body scale brings a typical 300 mm (Dw) chest to 450 mm.
    assert 300.0 * simulate_v3.SIZE_SCALE["chest"][1] >= 450.0


@pytest.mark.parametrize("target", [0.0, 0.6, 1.8, 3.0, 4.0])
def test_every_target_label_is_met_exactly_whatever_the_kernel(head, target):
    assert head.phantom.region == "head"
    for kernel in simulate_v3.KERNELS:
        result = head.sample(target, kernel=kernel)
        assert result["label"] == pytest.approx(target)
        # The label is the rule on what was measured, and the dose follows the noise.
        degradation = math.hypot(result["noise_sd_hu"], result["streak_rms_hu"])
        assert round(continuous_score(degradation) * 5) / 5 == pytest.approx(target)
        sd_full, _ = head.full_dose_noise(kernel)
        assert result["dose_fraction"] == pytest.approx((sd_full / result["noise_sd_hu"]) ** 2, rel=1e-3)
        assert result["streak_rms_hu"] <= math.sqrt(1 - simulate_v3.MIN_NOISE_SHARE ** 2) * degradation + 1e-6


def test_noise_map_is_physical_and_kernels_differ(head):
    sd = {k: head.full_dose_noise(k)[0] for k in simulate_v3.KERNELS}
    assert sd["soft"] < sd["standard"] < sd["sharp"]       # a sharper kernel passes more noise
    _, sd_map = head.full_dose_noise("standard")
    assert np.sqrt(np.mean(sd_map[head.roi] ** 2)) == pytest.approx(1.0, rel=1e-3)
    assert sd_map[head.body_mask].max() > 1.1 * sd_map[head.body_mask].min()   # not stationary


def test_sharper_kernel_and_thinner_texture_move_noise_power_to_higher_frequencies():
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(512), np.fft.rfftfreq(512), indexing="ij"))
    high = (f > 0.3) & (f < 0.45)

    def share(kernel, scale):
        power = simulate_v3.nps_amplitude(kernel, 1.0, scale) ** 2
        return power[high].sum() / power.sum()

    assert share("soft", 1.0) < share("standard", 1.0) < share("sharp", 1.0)
    assert share("standard", 0.8) < share("standard", 1.2)
    noise = simulate_v3.shaped_noise(simulate_v3.nps_amplitude("standard", 1.0, 1.0), np.random.default_rng(0))
    assert noise.std() == pytest.approx(1.0, rel=1e-3) and abs(noise.mean()) < 1e-3


def test_padded_slices_are_flat_outside_the_reconstruction_circle_and_keep_their_label(head):
    outside = ~simulate_v3.reconstruction_circle()
    assert 0.2 < outside.mean() < 0.23          # the corners of the square: 1 - pi/4
    padded = head.sample(1.0, kernel="sharp", padded=True)
    open_ = head.sample(1.0, kernel="sharp", padded=False)
    assert padded["padded"] and not open_["padded"]
    assert np.all(padded["hu"][outside] == simulate_v3.PADDING_HU)
    assert np.std(open_["hu"][outside]) > 10.0  # FBP's noisy corners where a scanner reconstructs them
    inside = ~outside & head.roi
    assert np.std(padded["hu"][inside]) > 10.0
    # Padding changes what is written, not what was measured: the label is the same rule.
    assert padded["label"] == pytest.approx(1.0) == open_["label"]


def test_padding_is_drawn_per_slice_from_its_own_generator_and_shares_the_stated_rate():
    def draw(padding_share):
        scan = simulate_v3.DecorrelatedScan(seed=7, phantom_index=1)
        scan.padding_rng = np.random.default_rng(padding_share)   # the padding stream only
        return [scan.sample(kernel="standard") for _ in range(3)]

    a, b = draw(0), draw(12345)
    # Everything but the padding is the same whatever the padding stream draws.
    for x, y in zip(a, b):
        assert x["label"] == y["label"] and x["n_views"] == y["n_views"]
        inside = simulate_v3.reconstruction_circle()
        assert np.array_equal(x["hu"][inside], y["hu"][inside])
    rng = np.random.default_rng([0, simulate_v3.VERSION, 3, 1])
    share = np.mean(rng.random(4000) < simulate_v3.PADDED_SHARE)
    assert abs(share - simulate_v3.PADDED_SHARE) < 0.03


def _records(region, labels, dws):
    return [{"region": region, "label": float(x), "water_equivalent_diameter_mm": float(d)}
            for x, d in zip(labels, dws)]


def test_balance_gate_refuses_a_missing_class_and_labels_that_follow_size():
    rng = np.random.default_rng(0)
    levels = np.array(simulate_v3.LABEL_LEVELS)
    balanced = _records("abdomen", rng.choice(levels, 600), rng.uniform(200, 450, 600))
    assert simulate_v3.balance_problems(simulate_v3.label_balance(balanced)) == []
    quiet_heads = _records("head", rng.choice(levels[levels >= 1.6], 300), rng.uniform(150, 200, 300))
    dw = rng.uniform(200, 450, 600)
    bigger_is_worse = _records("pelvis", np.round((4 - 4 * (dw - 200) / 250) * 5) / 5, dw)
    problems = simulate_v3.balance_problems(simulate_v3.label_balance(balanced + quiet_heads + bigger_is_worse))
    assert any(p.startswith("head: class 0 holds 0.0 %") for p in problems)
    assert any(p.startswith("head: class 1 holds") for p in problems)
    spearman = [p for p in problems if p.startswith("pelvis: |Spearman(label, Dw)| = ")]
    assert len(spearman) == 1 and float(spearman[0].split("= ")[1].split()[0]) > 0.95
    assert not any(p.startswith("abdomen") for p in problems)


def test_build_refuses_an_unbalanced_data_set_and_records_the_histograms(tmp_path):
    slices = (_records("head", [3.0, 3.2, 3.4, 3.6, 4.0] * 20, np.linspace(150, 200, 100))
              + _records("chest", np.repeat(simulate_v3.LABEL_LEVELS, 10), np.tile(np.linspace(200, 400, 10), 21)))
    (tmp_path / "simulation.json").write_text(json.dumps({"summary": {}, "slices": slices}))
    with pytest.raises(simulate_v3.SimulationError, match="head: class 0 holds 0.0 %"):
        simulate_v3.require_balanced(tmp_path)
    balance = simulate_v3.label_balance(slices)
    assert balance["chest"]["label_histogram"]["2.4"] == 10
    assert sum(balance["head"]["label_histogram"].values()) == 100


@pytest.mark.slow
def test_simulate_command_writes_slices_then_refuses_a_too_small_set(tmp_path, capsys):
    out = tmp_path / "v3"
    assert main(["simulate", "--version", "3", "--out", str(out), "--count", "6", "--variants", "3",
                 "--workers", "1"]) == 1
    assert "label balance gate failed" in capsys.readouterr().err
    data = json.loads((out / "simulation.json").read_text())
    assert data["summary"]["version"] == 3 and len(data["slices"]) == 6
    assert set(data["summary"]["label_balance"]) == {"head", "neck"}
    assert data["summary"]["settings"]["padding"]["share"] == simulate_v3.PADDED_SHARE
    assert data["summary"]["padded"] == sum(r["padded"] for r in data["slices"])
    for record in data["slices"]:
        assert record["label"] == pytest.approx(record["target_label"])
        assert (out / "image" / record["file"]).exists()
    assert json.loads((out / "train.json").read_text())[data["slices"][0]["file"]] == data["slices"][0]["label"]
