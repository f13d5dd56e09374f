"""Simulator v2: textured anatomy, kernels, truncation, labels against the noise-free image."""

import json

import numpy as np
import pytest

from convert.sim import anatomy, simulate_v2
from convert.__main__ import main
from convert.sim.data import read_folder


@pytest.fixture(scope="module")
def abdomen():
    """One abdominal scan, shared: its sinogram and clean reconstructions are cached."""
    return simulate_v2.TexturedScan(seed=11, phantom_index=0, region="abdomen", truncate=False)


def test_same_seed_same_slice_other_seed_other_slice():
    a = simulate_v2.simulate_slice(seed=3, dose_fraction=0.3, n_views=90, region="neck")
    b = simulate_v2.simulate_slice(seed=3, dose_fraction=0.3, n_views=90, region="neck")
    c = simulate_v2.simulate_slice(seed=4, dose_fraction=0.3, n_views=90, region="neck")
    np.testing.assert_array_equal(a["hu"], b["hu"])
    assert a["label"] == b["label"]
    assert np.abs(a["hu"] - c["hu"]).mean() > 1.0


@pytest.mark.parametrize("region", anatomy.REGIONS)
def test_every_region_builds_a_plausible_patient(region):
    rng = np.random.default_rng([5, anatomy.REGIONS.index(region)])
    phantom = anatomy.make_textured_phantom(rng, region, size=256)
    low, high = {"head": (140, 230), "neck": (100, 200), "chest": (150, 420),
                 "abdomen": (180, 470), "pelvis": (180, 480)}[region]
    assert low <= phantom.water_equivalent_diameter_mm <= high
    # The body never touches the grid's edge (it is projected whole) and has texture.
    assert not (phantom.body[0].any() or phantom.body[-1].any()
                or phantom.body[:, 0].any() or phantom.body[:, -1].any())
    soft = phantom.body & (phantom.hu > -150) & (phantom.hu < 250)
    assert phantom.hu[soft].std() > 5.0
    assert phantom.hu.min() >= -1000 and phantom.hu.max() <= 3000


def test_unknown_region_and_kernel_are_refused():
    with pytest.raises(ValueError, match="unknown region 'knee'"):
        anatomy.make_textured_phantom(np.random.default_rng(0), "knee")
    with pytest.raises(ValueError, match="unknown kernel 'bone'"):
        simulate_v2.kernel_window("bone", np.zeros(3))


def test_reconstruction_keeps_hu_and_texture_is_anatomy_not_noise(abdomen):
    clean = abdomen.clean(simulate_v2.FULL_VIEWS, "standard")
    # The noise-free reconstruction reproduces the phantom's HU in soft tissue...
    centre = (simulate_v2.IMAGE_SIZE - 1) / 2.0
    coords = (np.arange(simulate_v2.IMAGE_SIZE) - centre) * abdomen.geometry.pixel_mm
    p = abdomen.phantom
    index = np.clip(np.round(coords / p.pixel_mm + (p.hu.shape[0] - 1) / 2).astype(int), 0, p.hu.shape[0] - 1)
    truth = p.hu[np.ix_(index, index)]
    assert np.median(np.abs(clean - truth)[abdomen.roi]) < 5.0          # pixel by pixel, same orientation
    assert abs(np.mean((clean - truth)[abdomen.roi])) < 3.0                # no HU offset
    assert np.median(clean[:12, :12]) == pytest.approx(-1000.0, abs=15.0)
    # ...with its texture, which at a huge dose is not measured as noise.
    assert clean[abdomen.roi].std() > 10.0
    result = abdomen.acquire(1e4, simulate_v2.FULL_VIEWS, "standard")
    assert result["noise_sd_hu"] < 1.0
    assert result["label"] == 4.0


def test_projection_of_a_uniform_object_has_no_moire():
    # Pixel and bin sizes differ (0.69 vs 0.85 mm): a point splat would leave a periodic
    # ripple in the sinogram of a uniform disc, and a grid pattern in the image.
    size, pixel, spacing = 256, 0.69, 0.85
    centre = (size - 1) / 2
    y, x = np.mgrid[:size, :size]
    disc = np.where((x - centre) ** 2 + (y - centre) ** 2 <= 100 ** 2, 1000.0, -1000.0).astype(np.float32)
    phantom = anatomy.TexturedPhantom(hu=disc, body=disc > 0, extent_mm=size * pixel, region="abdomen",
                                      phase="none", width_mm=200 * pixel, height_mm=200 * pixel)
    geometry = simulate_v2.Geometry(fov_mm=size * pixel, spacing_mm=spacing,
                                    n_det=int(size * pixel * 1.5 / spacing))
    sino = simulate_v2.forward_project(phantom, geometry, 8)
    t = (np.arange(geometry.n_det) - (geometry.n_det - 1) / 2) * spacing
    radius = 100 * pixel
    exact = 2 * simulate_v2.MU_WATER_PER_MM * 2 * np.sqrt(np.clip(radius ** 2 - t ** 2, 0, None))
    inner = np.abs(t) < 0.8 * radius
    assert np.abs(sino[:, inner] - exact[inner]).max() < 0.01 * exact[inner].max()


def test_lower_dose_more_noise_lower_label(abdomen):
    results = [abdomen.acquire(dose, simulate_v2.FULL_VIEWS, "standard") for dose in (1.0, 0.25, 0.06)]
    noise = [r["noise_sd_hu"] for r in results]
    labels = [r["label"] for r in results]
    assert noise[0] < noise[1] < noise[2]
    assert noise[1] / noise[0] == pytest.approx(2.0, rel=0.25)    # variance about 1/dose
    assert labels[0] > labels[1] > labels[2]


def test_electronic_noise_matters_only_at_very_low_counts():
    line_integrals = np.full((200, 200), 6.0)          # exp(-6): 0.25 % transmitted

    def sd(n0, electronic):
        return np.std(simulate_v2.noisy_sinogram(line_integrals, n0, np.random.default_rng(1), electronic))
    assert sd(1e6, 6.0) == pytest.approx(sd(1e6, 0.0), rel=0.02)     # 2500 counts: photon noise rules
    assert sd(2e4, 6.0) > 1.3 * sd(2e4, 0.0)                         # 50 counts: the floor shows


def _high_frequency_fraction(noise: np.ndarray) -> float:
    power = np.abs(np.fft.fft2(noise)) ** 2
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(noise.shape[0]), np.fft.fftfreq(noise.shape[1]), indexing="ij"))
    return float(power[f > 0.25].sum() / power.sum())


def test_kernels_change_noise_level_and_texture(abdomen):
    crop = (slice(160, 352), slice(160, 352))
    sd, high = {}, {}
    for kernel in simulate_v2.KERNELS:
        result = abdomen.acquire(0.3, simulate_v2.FULL_VIEWS, kernel)
        noise = (result["hu"] - abdomen.clean(simulate_v2.FULL_VIEWS, kernel))[crop]
        sd[kernel], high[kernel] = result["noise_sd_hu"], _high_frequency_fraction(noise)
    assert sd["soft"] < sd["standard"] < sd["sharp"]
    assert high["soft"] < high["standard"] < high["sharp"]      # finer grain with sharper kernels


def test_fewer_views_more_streaks(abdomen):
    streaks = [abdomen.acquire(1.0, views, "standard")["streak_rms_hu"] for views in (720, 180, 90)]
    assert streaks[0] == 0.0
    assert 0.0 < streaks[1] < streaks[2]


def test_truncated_field_cuts_the_body():
    truncated = simulate_v2.TexturedScan(seed=2, phantom_index=1, region="abdomen", truncate=True)
    whole = simulate_v2.TexturedScan(seed=2, phantom_index=1, region="abdomen", truncate=False)
    assert truncated.truncated and not whole.truncated
    assert truncated.geometry.fov_mm < truncated.phantom.width_mm < whole.geometry.fov_mm


def test_dataset_in_ldctiqac_layout_with_version_and_speed(tmp_path):
    assert main(["simulate", "--version", "2", "--out", str(tmp_path), "--count", "3", "--seed", "1"]) == 0
    items = read_folder(tmp_path)
    assert [i.path.name for i in items] == ["0000.tif", "0001.tif", "0002.tif"]
    meta = json.loads((tmp_path / "simulation.json").read_text())
    summary = meta["summary"]
    assert summary["version"] == 2 and summary["settings"]["version"] == 2
    assert summary["slices_per_minute"] > 0          # recorded, not asserted against a target
    record = meta["slices"][0]
    assert record["region"] in anatomy.REGIONS and record["kernel"] in simulate_v2.KERNELS
    assert 100 < record["water_equivalent_diameter_mm"] < 480
    import tifffile
    image = tifffile.imread(tmp_path / "image" / "0000.tif")
    assert image.dtype == np.float32 and image.shape == (512, 512)
    assert 0.0 <= image.min() and image.max() <= 1.0
