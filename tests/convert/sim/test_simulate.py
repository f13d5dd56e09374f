"""The CT simulator: reproducible, physically ordered, LDCTIQAC-shaped."""

import json

import numpy as np
import pytest

from convert.sim import simulate
from convert.sim.data import read_folder


def test_same_seed_same_slice_other_seed_other_slice():
    a = simulate.simulate_slice(seed=3, dose_fraction=0.3, n_views=360)
    b = simulate.simulate_slice(seed=3, dose_fraction=0.3, n_views=360)
    c = simulate.simulate_slice(seed=4, dose_fraction=0.3, n_views=360)
    np.testing.assert_array_equal(a["hu"], b["hu"])
    assert a["label"] == b["label"]
    assert np.abs(a["hu"] - c["hu"]).mean() > 1.0


def test_hu_calibration_water_like_tissue_and_air():
    scan = simulate.PhantomScan(seed=0, phantom_index=0)
    clean = scan.clean(simulate.FULL_VIEWS)
    liver_hu = scan.phantom.liver.delta_hu + next(
        e.delta_hu for e in scan.phantom.ellipses if e.name == "abdominal cavity") + next(
        e.delta_hu for e in scan.phantom.ellipses if e.name == "muscle wall") + next(
        e.delta_hu for e in scan.phantom.ellipses if e.name == "body") - 1000
    assert float(np.median(clean[scan.liver_roi])) == pytest.approx(liver_hu, abs=8.0)
    assert float(np.median(clean[:20, :20])) == pytest.approx(-1000.0, abs=10.0)


def test_lower_dose_more_noise_lower_label_same_phantom():
    scan = simulate.PhantomScan(seed=1, phantom_index=2)
    results = [scan.acquire(dose, 1000) for dose in (1.0, 0.25, 0.05)]
    noise = [r["noise_sd_hu"] for r in results]
    labels = [r["label"] for r in results]
    assert noise[0] < noise[1] < noise[2]
    # Variance about 1/dose: a quarter of the dose about doubles the SD.
    assert noise[1] / noise[0] == pytest.approx(2.0, rel=0.2)
    assert labels[0] > labels[1] > labels[2]


def test_fewer_views_more_streaks():
    scan = simulate.PhantomScan(seed=1, phantom_index=3)
    streaks = [scan.acquire(1.0, views)["streak_rms_hu"] for views in (1000, 360, 90)]
    assert streaks[0] == 0.0
    assert streaks[1] < streaks[2]


def test_label_rule_is_monotone_and_in_steps():
    grid = np.linspace(1, 300, 60)
    for streak in (0.0, 20.0, 40.0):
        labels = [simulate.likert_label(n, streak) for n in grid]
        assert all(a >= b for a, b in zip(labels, labels[1:]))
        assert labels[-1] == 0.0
        if streak == 0.0:
            assert labels[0] == 4.0
        else:
            assert labels[0] < 4.0    # streaks alone cost points
        assert all(abs(l * 5 - round(l * 5)) < 1e-9 for l in labels)


def test_dataset_in_ldctiqac_layout(tmp_path):
    summary = simulate.simulate_dataset(tmp_path, count=6, seed=2, workers=1, log=lambda *_: None)
    assert summary["count"] == 6
    items = read_folder(tmp_path)
    assert len(items) == 6
    labels = json.loads((tmp_path / "train.json").read_text())
    assert sorted(labels) == [f"{i:04d}.tif" for i in range(6)]
    meta = json.loads((tmp_path / "simulation.json").read_text())["slices"]
    assert {m["phantom"] for m in meta} == {0, 1}   # 4 variants per phantom
    import tifffile
    image = tifffile.imread(tmp_path / "image" / "0000.tif")
    assert image.dtype == np.float32 and image.shape == (512, 512)
    assert 0.0 <= image.min() and image.max() <= 1.0
