"""Physics beside the network: noise level, Dw, SSDE, flags, on phantoms built here."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from dicom_builders import ct_dataset, save
from deltaiqa_lite import physics
from deltaiqa_lite.physics.label_rule import continuous_score
from deltaiqa_lite.read import read_slices
from deltaiqa_lite.score import Scorer, SliceResult, summarise_series

SIZE = 512


def grid(spacing: float, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """x, y in mm from the image centre (y down the rows, i.e. towards posterior)."""
    centre = (size - 1) / 2.0
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    return (x - centre) * spacing, (y - centre) * spacing


def water_cylinder(diameter_mm: float, spacing: float, *, hu: float = 0.0, table: bool = False,
                   size: int = SIZE, x0_mm: float = 0.0) -> np.ndarray:
    """Air, a uniform cylinder (centre ``x0_mm`` right of the image centre), optionally a couch below it."""
    x, y = grid(spacing, size)
    plane = np.full((size, size), -1000.0, dtype=np.float32)
    plane[np.hypot(x - x0_mm, y) <= diameter_mm / 2.0] = hu
    if table:
        top = diameter_mm / 2.0 + 8.0 + 0.0005 * x ** 2          # 8 mm air gap, curved top
        half_width = min(0.7 * diameter_mm, 0.48 * size * spacing)
        plane[(y >= top) & (y <= top + 12.0) & (np.abs(x) <= half_width)] = 250.0
        plane[(y >= top + 3.0) & (y <= top + 9.0) & (np.abs(x) <= half_width - 3.0)] = -900.0  # foam core
    return plane


def white_noise(shape: tuple[int, int], sd: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, sd, shape).astype(np.float32)


def ramp_noise(shape: tuple[int, int], sd: float, seed: int) -> np.ndarray:
    """CT-like noise: white noise shaped by |f| times a Hann window (FBP's ramp filter), scaled to SD."""
    white = np.random.default_rng(seed).normal(0.0, 1.0, shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    radius = np.hypot(fx, fy)
    window = np.where(radius < 0.5, 0.5 * (1 + np.cos(2 * np.pi * radius)), 0.0)
    shaped = np.real(np.fft.ifft2(np.fft.fft2(white) * radius * window))
    return (shaped / shaped.std() * sd).astype(np.float32)


# ------------------------------------------------------------- water-equivalent diameter

@pytest.mark.parametrize("diameter, spacing", [(160, 0.35), (200, 0.5), (300, 0.7), (350, 0.78),
                                               (450, 0.95)])
@pytest.mark.parametrize("table", [False, True])
def test_water_cylinder_dw_within_2_percent(diameter, spacing, table):
    plane = water_cylinder(diameter, spacing, table=table) + white_noise((SIZE, SIZE), 15.0, seed=diameter)
    size = physics.water_equivalent_diameter(plane, (spacing, spacing))
    assert size.dw_mm == pytest.approx(diameter, rel=0.02)
    assert not size.truncated and size.note is None


def test_table_touching_nothing_is_excluded_but_a_merged_table_would_count():
    """The table is a separate region and does not count; were it the body, Dw would be far off."""
    spacing = 0.7
    with_table = physics.water_equivalent_diameter(water_cylinder(300, spacing, table=True), (spacing, spacing))
    plain = physics.water_equivalent_diameter(water_cylinder(300, spacing), (spacing, spacing))
    assert with_table.dw_mm == pytest.approx(plain.dw_mm, rel=1e-6)


def test_ellipse_dw_is_diameter_of_equal_area_circle():
    spacing = 0.75
    x, y = grid(spacing)
    a, b = 170.0, 115.0
    angle = 0.4
    u = x * math.cos(angle) + y * math.sin(angle)
    v = -x * math.sin(angle) + y * math.cos(angle)
    plane = np.where((u / a) ** 2 + (v / b) ** 2 <= 1.0, 0.0, -1000.0).astype(np.float32)
    plane += ramp_noise(plane.shape, 20.0, seed=3)
    size = physics.water_equivalent_diameter(plane, (spacing, spacing))
    assert size.dw_mm == pytest.approx(2.0 * math.sqrt(a * b), rel=0.02)


def test_anisotropic_pixels_use_both_spacings():
    rows_mm, cols_mm = 0.9, 0.6
    centre = (SIZE - 1) / 2.0
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    radius = np.hypot((x - centre) * cols_mm, (y - centre) * rows_mm)
    plane = np.where(radius <= 140.0, 0.0, -1000.0).astype(np.float32)
    size = physics.water_equivalent_diameter(plane, (rows_mm, cols_mm))
    assert size.dw_mm == pytest.approx(280.0, rel=0.02)


def test_dw_weights_by_attenuation_and_fills_enclosed_air():
    """A fat cylinder with an air-filled 'lung' inside: the lung counts, with its HU (TG-220)."""
    spacing = 0.7
    x, y = grid(spacing)
    plane = np.full((SIZE, SIZE), -1000.0, dtype=np.float32)
    body = np.hypot(x, y) <= 150.0
    lung = np.hypot(x - 40.0, y) <= 60.0
    plane[body] = -100.0
    plane[lung] = -1000.0                 # enclosed air: a hole in the thresholded body
    plane[np.hypot(x - 40.0, y) <= 8.0] = 50.0   # a vessel inside the hole: not a separate body
    pixel = spacing * spacing
    expected_water_area = float(((plane[body] / 1000.0 + 1.0) * pixel).sum())
    size = physics.water_equivalent_diameter(plane, (spacing, spacing))
    # Measured on 2 x 2 block means: edges cost about 0.1 %, a lost lung would cost 10 %.
    assert size.dw_mm == pytest.approx(2.0 * math.sqrt(expected_water_area / math.pi), rel=0.003)
    assert size.area_mm2 == pytest.approx(body.sum() * pixel, rel=0.005)


def _flood_fill_labels(mask: np.ndarray, diagonal: bool) -> np.ndarray:
    """Reference labelling: breadth-first flood fill, one pixel at a time."""
    labels = np.full(mask.shape, -1, dtype=int)
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if diagonal:
        steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    current = 0
    for start in zip(*np.nonzero(mask)):
        if labels[start] >= 0:
            continue
        labels[start] = current
        queue = deque([start])
        while queue:
            r, c = queue.popleft()
            for dr, dc in steps:
                rr, cc = r + dr, c + dc
                if 0 <= rr < mask.shape[0] and 0 <= cc < mask.shape[1] and mask[rr, cc] and labels[rr, cc] < 0:
                    labels[rr, cc] = current
                    queue.append((rr, cc))
        current += 1
    return labels


@pytest.mark.parametrize("diagonal", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_run_labelling_matches_flood_fill(seed, diagonal):
    rng = np.random.default_rng(seed)
    mask = rng.random((40, 53)) < (0.35 + 0.05 * seed)
    row, start, end = physics.size._runs(mask)
    labels = physics.size._label_runs(row, start, end, mask.shape[1], diagonal=diagonal)
    pixels = np.full(mask.shape, -1, dtype=int)
    for r, s, e, label in zip(row, start, end, labels):
        pixels[r, s:e] = label
    reference = _flood_fill_labels(mask, diagonal)
    assert (pixels >= 0).sum() == mask.sum()
    # Same partition: a one-to-one map between the two labellings.
    pairs = {(a, b) for a, b in zip(pixels[mask], reference[mask])}
    assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})


def test_gaps_are_the_complement():
    rng = np.random.default_rng(7)
    mask = rng.random((30, 41)) < 0.5
    mask[3] = False
    mask[4] = True
    row, start, end = physics.size._runs(mask)
    g_row, g_start, g_end = physics.size._gaps(row, start, end, *mask.shape)
    rebuilt = np.zeros(mask.shape, dtype=bool)
    for r, s, e in zip(g_row, g_start, g_end):
        assert not rebuilt[r, s:e].any()
        rebuilt[r, s:e] = True
    np.testing.assert_array_equal(rebuilt, ~mask)


def test_truncated_body_is_flagged_and_dw_is_a_lower_bound():
    spacing = 0.7
    plane = water_cylinder(300, spacing, x0_mm=60.0)   # cut off on the right of a 358 mm field
    size = physics.water_equivalent_diameter(plane, (spacing, spacing))
    assert size.truncated and size.dw_mm is not None and 0.9 * 300 < size.dw_mm < 300
    assert "lower bound" in size.note
    assert 0 < size.truncated_fraction <= physics.MAX_TRUNCATED_FRACTION


def test_body_touching_the_reconstruction_circle_is_truncated():
    spacing = 0.7
    x, y = grid(spacing)
    plane = water_cylinder(330, spacing)
    plane[np.hypot(x, y) > 160.0] = -3024.0   # outside the reconstruction circle, no padding element
    size = physics.water_equivalent_diameter(plane, (spacing, spacing))
    assert size.truncated


# ------------------------------------------------------------- noise level

@pytest.mark.parametrize("sd", [5.0, 12.0, 25.0, 50.0, 80.0])
@pytest.mark.parametrize("kind", ["white", "ramp"])
@pytest.mark.parametrize("spacing", [0.5, 0.78])
def test_noise_of_known_sd_within_10_percent(sd, kind, spacing):
    plane = water_cylinder(320, spacing, hu=50.0, table=True)
    noise = (white_noise if kind == "white" else ramp_noise)((SIZE, SIZE), sd, seed=int(sd))
    level = physics.global_noise_level(plane + noise, (spacing, spacing))
    assert level.noise_hu == pytest.approx(sd, rel=0.10)
    assert level.note is None


def test_noise_ignores_fat_bone_air_and_edges():
    """A body with fat, bone and air: the soft-tissue mode is the tissue's noise."""
    spacing = 0.7
    x, y = grid(spacing)
    plane = water_cylinder(330, spacing, hu=-100.0)               # fat
    plane[np.hypot(x, y) <= 130.0] = 45.0                          # muscle/organs
    plane[np.hypot(x, y - 60.0) <= 20.0] = 700.0                   # bone
    plane[np.hypot(x + 60.0, y + 30.0) <= 25.0] = -1000.0          # bowel gas
    sd = 18.0
    level = physics.global_noise_level(plane + ramp_noise(plane.shape, sd, seed=11), (spacing, spacing))
    assert level.noise_hu == pytest.approx(sd, rel=0.10)


def test_noise_window_follows_pixel_spacing():
    assert physics.global_noise_level(water_cylinder(200, 0.4), (0.4, 0.4)).box_px == (16, 16)
    assert physics.global_noise_level(water_cylinder(300, 0.75), (0.75, 0.75)).box_px == (8, 8)
    assert physics.global_noise_level(water_cylinder(400, 1.0), (1.0, 0.5)).box_px == (6, 12)


# ------------------------------------------------------------- SSDE

# AAPM Report 204 (2011), conversion factor f against effective diameter, Tables for the
# 32 cm (body) and 16 cm (head) CTDI phantoms, values as printed (two decimals).
REPORT_204_32CM = {8: 2.76, 10: 2.57, 14: 2.22, 20: 1.78, 24: 1.53, 28: 1.32, 32: 1.14, 36: 0.99, 40: 0.85}
REPORT_204_16CM = {6: 1.49, 8: 1.38, 10: 1.27, 14: 1.09, 16: 1.01, 20: 0.86, 24: 0.74, 30: 0.59}


@pytest.mark.parametrize("dw_cm, factor", sorted(REPORT_204_32CM.items()))
def test_ssde_factor_32cm_matches_report_204(dw_cm, factor):
    assert physics.ssde_conversion_factor(10.0 * dw_cm) == pytest.approx(factor, rel=0.01)


@pytest.mark.parametrize("dw_cm, factor", sorted(REPORT_204_16CM.items()))
def test_ssde_factor_16cm_matches_report_204(dw_cm, factor):
    assert physics.ssde_conversion_factor(10.0 * dw_cm, phantom_16cm=True) == pytest.approx(factor, rel=0.01)


def test_16cm_rule_phantom_code_first_then_body_part():
    assert physics.uses_16cm_phantom("113690", None)
    assert physics.uses_16cm_phantom(None, "HEAD")
    assert physics.uses_16cm_phantom(None, "head ")
    assert not physics.uses_16cm_phantom("113691", "HEAD")   # the phantom element wins
    assert not physics.uses_16cm_phantom(None, "ABDOMEN")
    assert not physics.uses_16cm_phantom(None, None)


def test_measure_slice_ssde_is_ctdivol_times_factor():
    spacing = 0.7
    plane = water_cylinder(300, spacing, hu=40.0) + white_noise((SIZE, SIZE), 12.0, seed=1)
    found = physics.measure_slice(plane, (spacing, spacing), ctdivol_mgy=10.0).finish(score=3.0)
    dw = found.water_equivalent_diameter_mm
    assert dw == pytest.approx(300 * math.sqrt(1.04), rel=0.02)
    assert found.ssde_mgy == pytest.approx(10.0 * 3.704369 * math.exp(-0.03671937 * dw / 10.0), rel=1e-9)
    head = physics.measure_slice(plane, (spacing, spacing), ctdivol_mgy=10.0, body_part="HEAD").finish(3.0)
    assert head.ssde_mgy == pytest.approx(10.0 * 1.874799 * math.exp(-0.03871313 * dw / 10.0), rel=1e-9)
    assert found.noise_score == pytest.approx(continuous_score(found.noise_hu))
    assert found.physics_note is None and found.flags == []


# ------------------------------------------------------------- flags

def test_flags_disagree_truncated_outside_training():
    spacing = 0.7
    plane = water_cylinder(300, spacing, hu=40.0) + white_noise((SIZE, SIZE), 40.0, seed=2)
    measured = physics.measure_slice(plane, (spacing, spacing))
    noise_score = measured.result.noise_score
    assert physics.FLAG_SCORE_NOISE_DISAGREE in measured.finish(noise_score + 1.2).flags
    assert physics.FLAG_SCORE_NOISE_DISAGREE in measured.finish(noise_score - 1.2).flags
    assert measured.finish(noise_score + 0.9).flags == []
    assert measured.finish(None).flags == []
    # Head body part: outside training, whatever the size.
    head = physics.measure_slice(plane, (spacing, spacing), body_part="HEAD").finish(noise_score)
    assert head.flags == [physics.FLAG_OUTSIDE_TRAINING]
    # A child-sized body (Dw 150 mm) in a 200 mm field: outside training.
    small = water_cylinder(150, 0.39) + white_noise((SIZE, SIZE), 20.0, seed=4)
    assert physics.FLAG_OUTSIDE_TRAINING in physics.measure_slice(small, (0.39, 0.39)).finish(2.0).flags
    # Truncated body.
    cut = water_cylinder(300, spacing, x0_mm=60.0) + white_noise((SIZE, SIZE), 20.0, seed=5)
    assert physics.FLAG_BODY_TRUNCATED in physics.measure_slice(cut, (spacing, spacing)).finish(2.0).flags


# ------------------------------------------------------------- bad input: None with a reason

def test_no_pixel_spacing():
    found = physics.measure_slice(water_cylinder(300, 0.7), None, ctdivol_mgy=8.0).finish(2.0)
    assert found.noise_hu is None and found.water_equivalent_diameter_mm is None and found.ssde_mgy is None
    assert found.ctdivol_mgy == 8.0
    assert "(0028,0030) Pixel Spacing is missing" in found.physics_note


def test_no_soft_tissue():
    plane = water_cylinder(300, 0.7, hu=-100.0) + white_noise((SIZE, SIZE), 10.0, seed=6)   # all fat
    found = physics.measure_slice(plane, (0.7, 0.7)).finish(2.0)
    assert found.noise_hu is None and found.noise_score is None
    assert "soft tissue" in found.physics_note and "mm^2" in found.physics_note
    assert found.water_equivalent_diameter_mm == pytest.approx(300 * math.sqrt(0.9), rel=0.02)


def test_all_air():
    plane = np.full((SIZE, SIZE), -1000.0, dtype=np.float32) + white_noise((SIZE, SIZE), 10.0, seed=7)
    found = physics.measure_slice(plane, (0.7, 0.7), ctdivol_mgy=5.0).finish(1.0)
    assert found.noise_hu is None and found.water_equivalent_diameter_mm is None and found.ssde_mgy is None
    assert "no body" in found.physics_note


def test_body_filling_the_field():
    plane = np.full((SIZE, SIZE), 40.0, dtype=np.float32) + white_noise((SIZE, SIZE), 15.0, seed=8)
    found = physics.measure_slice(plane, (0.7, 0.7), ctdivol_mgy=5.0).finish(3.0)
    assert found.water_equivalent_diameter_mm is None and found.ssde_mgy is None
    assert "fills the field of view" in found.physics_note
    assert found.noise_hu == pytest.approx(15.0, rel=0.1)
    assert physics.FLAG_BODY_TRUNCATED in found.flags


@pytest.mark.parametrize("plane, spacing, reason", [
    (np.full((SIZE, SIZE), np.nan, dtype=np.float32), (0.7, 0.7), "NaN"),
    (np.zeros((4, 4), dtype=np.float32), (0.7, 0.7), "smaller than"),
    (np.zeros((SIZE, SIZE), dtype=np.float32), (0.0, 0.7), "Pixel Spacing"),
    (np.zeros((2, SIZE, SIZE), dtype=np.float32), (0.7, 0.7), "no 2-D HU plane"),
    (None, (0.7, 0.7), "no 2-D HU plane"),
])
def test_odd_inputs_never_raise(plane, spacing, reason):
    found = physics.measure_slice(plane, spacing, ctdivol_mgy=float("nan")).finish(2.0)
    assert found.noise_hu is None and found.ssde_mgy is None and found.ctdivol_mgy is None
    assert reason in found.physics_note and "CTDIvol" in found.physics_note


def test_bad_physics_input_still_scored(tiny_model):
    scorer = Scorer(tiny_model, provider="cpu")
    air = scorer.score_array(np.full((SIZE, SIZE), -1000.0, dtype=np.float32), pixel_spacing_mm=(0.7, 0.7))
    assert air.ok and air.score is not None
    assert air.water_equivalent_diameter_mm is None and "no body" in air.physics_note
    unknown = scorer.score_array(water_cylinder(300, 0.7))
    assert unknown.ok and unknown.noise_hu is None and "Pixel Spacing is missing" in unknown.physics_note


# ------------------------------------------------------------- DICOM and scorer

def _dicom_slice(tmp_path, name, *, ctdivol=None, phantom_code=None, body_part=None, enhanced_ctdi=False):
    spacing = 0.7
    plane = water_cylinder(300, spacing, hu=40.0) + white_noise((SIZE, SIZE), 20.0, seed=9)
    ds = ct_dataset(np.round(plane), ipp=(-179.0, -179.0, 0.0))
    ds.PixelSpacing = [spacing, spacing]
    if ctdivol is not None:
        ds.CTDIvol = ctdivol
    if phantom_code is not None:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator = phantom_code, "DCM"
        item.CodeMeaning = "IEC Head Dosimetry Phantom" if phantom_code == "113690" else "IEC Body Dosimetry Phantom"
        ds.CTDIPhantomTypeCodeSequence = DicomSequence([item])
    if body_part is not None:
        ds.BodyPartExamined = body_part
    return save(ds, tmp_path / name)


def test_reader_carries_dose_and_body_part(tmp_path):
    path = _dicom_slice(tmp_path, "a.dcm", ctdivol=12.5, phantom_code="113690", body_part="ABDOMEN")
    (item,) = read_slices(path)
    assert item.ctdivol_mgy == 12.5 and item.ctdi_phantom == "113690" and item.body_part == "ABDOMEN"
    assert item.pixel_spacing_mm == (0.7, 0.7)


def test_scorer_fills_physics_and_series_summary(tmp_path, tiny_model):
    paths = [_dicom_slice(tmp_path, "body.dcm", ctdivol=10.0, body_part="ABDOMEN"),
             _dicom_slice(tmp_path, "head.dcm", ctdivol=10.0, phantom_code="113690")]
    results = Scorer(tiny_model, provider="cpu").score_paths(paths)
    body, head = results
    assert body.noise_hu == pytest.approx(20.0, rel=0.1)
    assert body.water_equivalent_diameter_mm == pytest.approx(300 * math.sqrt(1.04), rel=0.02)
    assert body.ctdivol_mgy == 10.0
    assert body.ssde_mgy == pytest.approx(10.0 * physics.ssde_conversion_factor(
        body.water_equivalent_diameter_mm), rel=1e-9)
    assert head.ssde_mgy == pytest.approx(10.0 * physics.ssde_conversion_factor(
        head.water_equivalent_diameter_mm, phantom_16cm=True), rel=1e-9)
    assert physics.FLAG_OUTSIDE_TRAINING in head.flags
    expected_disagree = abs(body.score - body.noise_score) > 1.0
    assert (physics.FLAG_SCORE_NOISE_DISAGREE in body.flags) == expected_disagree
    assert Scorer(tiny_model, provider="cpu", physics=False).score_paths(paths[:1])[0].noise_hu is None


def test_series_summary_of_physics():
    slices = [SliceResult(path=str(k), score=2.0, noise_hu=noise, water_equivalent_diameter_mm=dw,
                          ssde_mgy=ssde, flags=flags)
              for k, (noise, dw, ssde, flags) in enumerate([
                  (10.0, 250.0, 8.0, []), (12.0, None, 9.0, ["body-truncated"]), (30.0, 270.0, None, []),
                  (14.0, 280.0, 10.0, ["outside-training", "score-noise-disagree"]), (None, None, None, [])])]
    summary = summarise_series("1.2.3", slices)
    assert summary.noise_hu_median == pytest.approx(13.0)
    assert summary.water_equivalent_diameter_mm_middle == 270.0   # middle slice (index 2)
    assert summary.ssde_mgy_mean == pytest.approx(9.0)
    assert summary.n_flagged == 2
    slices[2].water_equivalent_diameter_mm = None
    # The nearest slice with a value (index 3, one away; index 0 is two away).
    assert summarise_series("1.2.3", slices).water_equivalent_diameter_mm_middle == 280.0


def test_enhanced_ct_dose_per_frame_from_ct_exposure_sequence(tmp_path):
    from dicom_builders import enhanced_ct_dataset

    frames = [np.zeros((96, 96), dtype=np.float32), np.zeros((96, 96), dtype=np.float32)]
    ds = enhanced_ct_dataset(frames, shared_rescale=(1.0, -1024.0))
    for index, value in enumerate((7.5, 9.25)):
        exposure = Dataset()
        exposure.CTDIvol = value
        phantom = Dataset()
        phantom.CodeValue, phantom.CodingSchemeDesignator = "113691", "DCM"
        phantom.CodeMeaning = "IEC Body Dosimetry Phantom"
        exposure.CTDIPhantomTypeCodeSequence = DicomSequence([phantom])
        ds.PerFrameFunctionalGroupsSequence[index].CTExposureSequence = DicomSequence([exposure])
    ds.BodyPartExamined = "HEAD"
    items = list(read_slices(save(ds, tmp_path / "enhanced.dcm")))
    assert [item.ctdivol_mgy for item in items] == [7.5, 9.25]
    assert [item.ctdi_phantom for item in items] == ["113691", "113691"]
    # The phantom element wins over the head body part: 32 cm.
    assert not physics.uses_16cm_phantom(items[0].ctdi_phantom, items[0].body_part)
