"""The runtime's noise level against the simulator's ground truth (needs numba: build stack)."""

import numpy as np

from convert.sim import simulate
from deltaiqa_lite import physics


def test_noise_level_tracks_ground_truth_noise_of_simulated_phantoms():
    """noise_hu against the SD of (noisy - noise-free reconstruction) in the liver: Pearson r >= 0.95."""
    measured, truth, widths, dws = [], [], [], []
    for index in range(3):
        scan = simulate.PhantomScan(seed=11, phantom_index=index)
        for dose in (1.0, 0.5, 0.25, 0.1, 0.05):
            acquired = scan.acquire(dose, simulate.FULL_VIEWS)
            spacing = (acquired["pixel_spacing_mm"], acquired["pixel_spacing_mm"])
            found = physics.measure_slice(acquired["hu"], spacing).finish(None)
            assert found.noise_hu is not None, found.physics_note
            measured.append(found.noise_hu)
            truth.append(acquired["noise_sd_hu"])
            dws.append(found.water_equivalent_diameter_mm)
        widths.append(scan.phantom.body_width_mm)
    r = float(np.corrcoef(measured, truth)[0, 1])
    assert r >= 0.95, (r, measured, truth)
    # Same scale, not only correlated: within 25 % on average (the global mode mixes organs).
    assert 0.75 < float(np.mean(np.asarray(measured) / np.asarray(truth))) < 1.25
    # Dw of one phantom does not depend on the dose, and lies below its lateral width.
    dws = np.asarray(dws, dtype=float).reshape(3, 5)
    assert np.all(np.ptp(dws, axis=1) < 0.01 * dws.mean(axis=1))
    assert np.all(dws.mean(axis=1) < np.asarray(widths))
