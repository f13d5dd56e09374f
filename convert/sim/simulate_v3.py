"""Simulator v3: the label drawn independently of the anatomy, many samples per phantom.

Why (issue 21): in v2 the dose was drawn per phantom and heads ran at four
times the tube current of a body (``REGION_DOSE_FACTOR``), so nearly every
simulated head was quiet. A network trained on that data learnt a shortcut
from anatomy to label ("a head is excellent") and scored real noisy heads
far above the label rule. v3 removes every path from anatomy to label:

1. anatomy: the textured phantoms of v2 (``convert/sim/anatomy.py``), the five
   regions in turn (phantom ``i`` is region ``REGIONS[i % 5]``), each body
   scaled by a drawn factor so that the water-equivalent diameter reaches
   ``MAX_DW_MM`` (450 mm) for the trunk;
2. per phantom, once: the forward projection over ``FULL_VIEWS`` views and the
   noise-free filtered back-projection for every kernel and view count used
   (cached), and one physical Poisson realisation per kernel at full dose,
   which gives the full-dose noise SD of that kernel and the smooth map of
   how the noise varies over the image (higher behind bone and through the
   long axis of the body);
3. per sample: the **target label is drawn uniformly over 0..4** (the 21
   reader levels), independently of region, size, field of view and kernel;
   the label rule's inverse gives the degradation ``D``; the views are drawn
   among those whose physically simulated streaks leave at least
   ``MIN_NOISE_SHARE`` of ``D`` to noise; the noise SD follows as
   ``sqrt(D^2 - streak^2)`` and the dose as ``(SD_full / SD)^2``;
4. noise: white noise filtered with the kernel's own noise power spectrum
   (FBP: ``|f| W(f)^2``, ``W`` the kernel's apodisation window, frequency
   scaled from image to detector), modulated by the phantom's noise map and
   scaled to the exact SD in the soft-tissue ROI; a "thin" or "thick" slice
   texture scales the spectrum's frequency (finer or coarser grain);
5. label: the same rule (``deltaiqa_lite.physics.label_rule``) on the measured
   noise SD and streak RMS, so it equals the target;
6. padding: in a share ``PADDED_SHARE`` of the slices, everything outside the
   reconstruction circle (the circle inscribed in the square image, diameter
   the field of view) is written flat at ``PADDING_HU``, as most scanners
   write it (DICOM Pixel Padding Value); the other slices keep FBP's noisy
   corners, as scanners that reconstruct the whole square do. Without this
   the network learnt to judge a head partly by noise in the corners, and
   scored a real padded noisy head a class too high (issue 21). The choice is
   drawn from its own generator, so the rest of a data set is unchanged by it.

Step 4 costs a pair of 512x512 FFTs per sample instead of a projection and a
reconstruction, which is what makes 10,000+ slices affordable on two cores.

``priors=True`` keeps realistic protocol priors instead (doses drawn as v2
draws them, quiet heads): a documented option for studies, never the
default and refused for training by the balance check below.

Balance gate (:func:`label_balance`, :func:`require_balanced`): a data set is
refused when, within any region, a Likert class (the label rounded to the
nearest integer) holds under ``MIN_CLASS_SHARE`` of the slices, or
|Spearman(label, Dw)| exceeds ``MAX_DW_SPEARMAN``.

Every random choice comes from ``numpy.random.default_rng([seed, 3, phantom])``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from convert.sim import simulate_v2 as v2
from convert.sim.anatomy import REGIONS, TexturedPhantom, _MAX_EXTENT, make_textured_phantom
from convert.sim.simulate import run_phantom_jobs
from deltaiqa_lite.model.preprocess import AIR_HU, window_hu
from deltaiqa_lite.physics.label_rule import (LABEL_D_BEST_HU, LABEL_D_WORST_HU, STREAK_WEIGHT,
                                              likert_label)

VERSION = 3
IMAGE_SIZE = v2.IMAGE_SIZE
FULL_VIEWS = v2.FULL_VIEWS
VIEW_CHOICES = v2.VIEW_CHOICES
VIEW_WEIGHTS = v2.VIEW_WEIGHTS
KERNELS = v2.KERNELS
LABEL_LEVELS = tuple(round(0.2 * k, 1) for k in range(21))
# Beyond the rule's ends the label saturates; there D is drawn log-uniformly in these spans.
D_BEYOND_BEST_HU = (5.0, LABEL_D_BEST_HU)
D_BEYOND_WORST_HU = (LABEL_D_WORST_HU, 220.0)
MIN_NOISE_SHARE = 0.8          # noise SD >= 0.8 D: streaks never make the whole degradation
SLICE_TEXTURES = {"thin": (1.0, 1.2), "thick": (0.75, 0.95)}   # frequency scale of the NPS
# Body scale per region (drawn uniformly, then capped so that Dw <= MAX_DW_MM).
SIZE_SCALE = {"head": (0.9, 1.1), "neck": (0.9, 1.3), "chest": (0.9, 1.55),
              "abdomen": (0.85, 1.3), "pelvis": (0.85, 1.3)}
MAX_DW_MM = 450.0
FOV_MAX_MM = 500.0
SAMPLES_PER_PHANTOM = 28        # 12,800 slices: 458 phantoms, 91-92 per region
NOISE_MAP_SIGMA_MM = 12.0
MIN_CLASS_SHARE = 0.10
MAX_DW_SPEARMAN = 0.15
PADDED_SHARE = 0.6             # slices with flat padding outside the reconstruction circle
PADDING_HU = AIR_HU            # what the reader makes of a Pixel Padding Value: air, flat


class SimulationError(ValueError):
    """A simulated data set that the build must not train on (label balance)."""


@dataclass
class SliceRecordV3:
    file: str
    phantom: int
    variant: int
    region: str
    phase: str
    kernel: str
    slice_texture: str
    nps_scale: float
    dose_fraction: float
    n_views: int
    noise_sd_hu: float
    streak_rms_hu: float
    target_label: float
    label: float
    water_equivalent_diameter_mm: float
    body_width_mm: float
    fov_mm: float
    pixel_mm: float
    truncated: bool
    padded: bool = False


def reconstruction_circle(size: int = IMAGE_SIZE) -> np.ndarray:
    """True inside the circle inscribed in a ``size`` x ``size`` image (the scanner's field of view)."""
    centre = (size - 1) / 2.0
    r = np.arange(size) - centre
    return (r[:, None] ** 2 + r[None, :] ** 2) <= (size / 2.0) ** 2


def degradation_for_label(label: float, rng: np.random.Generator) -> float:
    """``D`` (HU) that the rule scores ``label``: its inverse, log-uniform beyond the two ends."""
    if label >= 4.0:
        return float(math.exp(rng.uniform(*np.log(D_BEYOND_BEST_HU))))
    if label <= 0.0:
        return float(math.exp(rng.uniform(*np.log(D_BEYOND_WORST_HU))))
    span = math.log(LABEL_D_WORST_HU / LABEL_D_BEST_HU)
    return LABEL_D_BEST_HU * math.exp((1.0 - label / 4.0) * span)


def nps_amplitude(kernel: str, detector_per_pixel: float, scale: float,
                  shape: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE)) -> np.ndarray:
    """Square root of the FBP noise power spectrum ``|f| W(f)^2`` on the image's rfft2 grid.

    ``f`` in cycles per image pixel; the kernel window ``W`` takes cycles per
    detector bin, ``f * detector_per_pixel / scale`` (``scale`` > 1: finer grain).
    """
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    window = v2.kernel_window(kernel, np.clip(f * detector_per_pixel / scale, 0.0, 0.5))
    window = np.where(f * detector_per_pixel / scale <= 0.5, window, 0.0)
    return (np.sqrt(f) * np.abs(window)).astype(np.float32)


def shaped_noise(amplitude: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean stationary noise with spectrum ``amplitude^2`` (unit SD)."""
    shape = (amplitude.shape[0], 2 * (amplitude.shape[1] - 1))
    white = rng.standard_normal(shape, dtype=np.float32)
    field = np.fft.irfft2(np.fft.rfft2(white) * amplitude, s=shape).astype(np.float32)
    return field / np.float32(field.std() + 1e-12)


class DecorrelatedScan(v2.TexturedScan):
    """A v2 textured phantom, scaled, with cached reconstructions and noise statistics."""

    def __init__(self, seed: int, phantom_index: int, region: str | None = None):
        self.rng = rng = np.random.default_rng([seed, VERSION, phantom_index])
        self.padding_rng = np.random.default_rng([seed, VERSION, phantom_index, 1])
        self.index = phantom_index
        region = region or REGIONS[phantom_index % len(REGIONS)]
        extent = _MAX_EXTENT[region] + 60.0
        fov_guess = float(np.clip(_MAX_EXTENT[region] * rng.uniform(0.55, 1.0), *v2.FOV_RANGE))
        size = int(np.clip(math.ceil(extent / (1.25 * fov_guess / IMAGE_SIZE) / 64) * 64, 512, 768))
        base = make_textured_phantom(rng, region, extent_mm=extent, size=size)
        low, high = SIZE_SCALE[region]
        scale = float(rng.uniform(low, high))
        scale = min(scale, MAX_DW_MM / base.water_equivalent_diameter_mm)
        self.phantom = TexturedPhantom(hu=base.hu, body=base.body, extent_mm=base.extent_mm * scale,
                                       region=region, phase=base.phase, width_mm=base.width_mm * scale,
                                       height_mm=base.height_mm * scale, extras={"scale": scale})
        width = self.phantom.width_mm
        truncate = rng.random() < v2.TRUNCATION_PROBABILITY
        if truncate and width * 0.95 > v2.FOV_RANGE[0]:
            fov = rng.uniform(max(v2.FOV_RANGE[0], 0.6 * width), min(0.95 * width, FOV_MAX_MM))
        else:
            fov = float(np.clip(width + rng.uniform(20.0, 100.0), v2.FOV_RANGE[0], FOV_MAX_MM))
        spacing = max(fov / IMAGE_SIZE, self.phantom.pixel_mm)
        n_det = int(math.ceil(self.phantom.extent_mm * math.sqrt(2) / spacing)) + 8
        self.geometry = v2.Geometry(float(fov), float(spacing), n_det)
        self.dw_mm = self.phantom.water_equivalent_diameter_mm
        # Tube current as v2's automatic exposure control, without v2's region factor.
        self.n0 = v2.N0_FULL_DOSE * float(np.clip(
            math.exp(v2.AEC_STRENGTH * v2.MU_WATER_PER_MM * (self.dw_mm - 300.0)), *v2.AEC_RANGE))
        self._masks()
        self._sino_full = None
        self._clean = {}
        self._noise: dict[str, tuple[float, np.ndarray]] = {}
        self._streak: dict[tuple[int, str], float] = {}
        self._amplitude: dict[tuple[str, float], np.ndarray] = {}

    def full_dose_noise(self, kernel: str) -> tuple[float, np.ndarray]:
        """Full-dose noise SD in the ROI and the unit-mean-in-ROI SD map of ``kernel``.

        From one physical Poisson realisation at the phantom's full-dose tube
        current: ``recon(noisy) - recon(clean)``; the map is its local RMS,
        smoothed over ``NOISE_MAP_SIGMA_MM``.
        """
        if kernel not in self._noise:
            from scipy import ndimage

            sino = self.sinogram(FULL_VIEWS)
            noisy = v2.noisy_sinogram(sino, self.n0, self.rng)
            noise = v2.fbp(noisy, self.geometry, kernel) - self.clean(FULL_VIEWS, kernel)
            sd = float(np.std(noise[self.roi]))
            sigma = NOISE_MAP_SIGMA_MM / self.geometry.pixel_mm
            weight = ndimage.gaussian_filter(self.body_mask.astype(np.float32), sigma) + 1e-3
            power = ndimage.gaussian_filter(np.where(self.body_mask, noise, 0.0) ** 2, sigma) / weight
            sd_map = np.sqrt(np.maximum(power, 1e-6)).astype(np.float32)
            # Outside the body the map holds the body's mean (air is noisy too after FBP).
            sd_map = np.where(self.body_mask, sd_map, np.float32(np.mean(sd_map[self.body_mask])))
            sd_map /= np.float32(np.sqrt(np.mean(sd_map[self.roi] ** 2)))
            self._noise[kernel] = (sd, sd_map)
        return self._noise[kernel]

    def streak_rms(self, n_views: int, kernel: str) -> float:
        key = (n_views, kernel)
        if key not in self._streak:
            if n_views == FULL_VIEWS:
                self._streak[key] = 0.0
            else:
                streak = self.clean(n_views, kernel) - self.clean(FULL_VIEWS, kernel)
                self._streak[key] = float(np.sqrt(np.mean(streak[self.body_mask] ** 2)))
        return self._streak[key]

    def amplitude(self, kernel: str, scale: float) -> np.ndarray:
        key = (kernel, round(scale, 2))
        if key not in self._amplitude:
            self._amplitude[key] = nps_amplitude(kernel, self.geometry.spacing_mm / self.geometry.pixel_mm,
                                                 key[1])
        return self._amplitude[key]

    def sample(self, target: float | None = None, *, kernel: str | None = None,
               texture: str | None = None, priors: bool = False, padded: bool | None = None) -> dict:
        """One slice at a drawn (or given) target label; see the module docstring."""
        rng = self.rng
        if padded is None:
            padded = bool(self.padding_rng.random() < PADDED_SHARE)
        kernel = kernel or str(rng.choice(KERNELS))
        texture = texture or str(rng.choice(tuple(SLICE_TEXTURES)))
        scale = round(float(rng.uniform(*SLICE_TEXTURES[texture])), 2)
        sd_full, sd_map = self.full_dose_noise(kernel)
        if priors:
            views = int(rng.choice(VIEW_CHOICES, p=VIEW_WEIGHTS))
            low, high = v2.DOSE_RANGE
            factor = v2.REGION_DOSE_FACTOR.get(self.phantom.region, 1.0)
            dose = float(math.exp(rng.uniform(math.log(low), math.log(high)))) * factor
            noise_sd = sd_full / math.sqrt(dose)
            streak = self.streak_rms(views, kernel)
        else:
            target = float(rng.choice(LABEL_LEVELS)) if target is None else float(target)
            degradation = degradation_for_label(target, rng)
            allowed = [(v, w) for v, w in zip(VIEW_CHOICES, VIEW_WEIGHTS)
                       if STREAK_WEIGHT * self.streak_rms(v, kernel)
                       <= math.sqrt(1.0 - MIN_NOISE_SHARE ** 2) * degradation]
            weights = np.array([w for _, w in allowed])
            views = int(allowed[int(rng.choice(len(allowed), p=weights / weights.sum()))][0])
            streak = self.streak_rms(views, kernel)
            noise_sd = math.sqrt(max(degradation ** 2 - (STREAK_WEIGHT * streak) ** 2, 1e-6))
            dose = (sd_full / noise_sd) ** 2
        field = shaped_noise(self.amplitude(kernel, scale), rng) * sd_map
        field *= np.float32(noise_sd / (np.std(field[self.roi]) + 1e-12))
        hu = self.clean(views, kernel) + field
        measured = float(np.std(field[self.roi]))
        if padded:
            hu = np.where(reconstruction_circle(hu.shape[0]), hu, np.float32(PADDING_HU))
        return {"hu": hu, "padded": padded, "noise_sd_hu": measured, "streak_rms_hu": streak,
                "label": likert_label(measured, streak), "target_label": target,
                "kernel": kernel, "slice_texture": texture, "nps_scale": scale, "n_views": views,
                "dose_fraction": dose, "pixel_spacing_mm": self.geometry.pixel_mm}


def _simulate_phantom(job: tuple[int, int, int, int, str], priors: bool = False) -> list[dict]:
    seed, phantom_index, first_file, n_samples, out_dir = job
    import tifffile

    scan = DecorrelatedScan(seed, phantom_index)
    records = []
    for variant in range(n_samples):
        result = scan.sample(priors=priors)
        name = f"{first_file + variant:05d}.tif"
        tifffile.imwrite(os.path.join(out_dir, "image", name), window_hu(result["hu"]))
        records.append(asdict(SliceRecordV3(
            file=name, phantom=phantom_index, variant=variant, region=scan.phantom.region,
            phase=scan.phantom.phase, kernel=result["kernel"], slice_texture=result["slice_texture"],
            nps_scale=result["nps_scale"], dose_fraction=round(result["dose_fraction"], 5),
            n_views=result["n_views"], noise_sd_hu=round(result["noise_sd_hu"], 4),
            streak_rms_hu=round(result["streak_rms_hu"], 4),
            target_label=result["target_label"], label=result["label"],
            water_equivalent_diameter_mm=round(scan.dw_mm, 1),
            body_width_mm=round(scan.phantom.width_mm, 1), fov_mm=round(scan.geometry.fov_mm, 1),
            pixel_mm=round(scan.geometry.pixel_mm, 5), truncated=scan.truncated,
            padded=result["padded"])))
    return records


def _simulate_phantom_priors(job: tuple) -> list[dict]:
    return _simulate_phantom(job, priors=True)


def likert_class(label: float) -> int:
    """The Likert class of a mean score: the nearest integer (halves round up)."""
    return int(math.floor(label + 0.5))


def label_balance(records: list[dict]) -> dict:
    """Per region: slices, share of each Likert class 0..4, Spearman(label, Dw), label mean."""
    from deltaiqa_lite.validate.metrics import srocc

    out = {}
    for region in sorted({r["region"] for r in records}):
        mine = [r for r in records if r["region"] == region]
        labels = np.array([r["label"] for r in mine], dtype=float)
        dw = np.array([r["water_equivalent_diameter_mm"] for r in mine], dtype=float)
        classes = np.array([likert_class(x) for x in labels])
        rho = srocc(labels, dw) if len(mine) > 2 and np.ptp(dw) > 0 and np.ptp(labels) > 0 else 0.0
        out[region] = {
            "slices": len(mine),
            "class_share": {str(c): round(float(np.mean(classes == c)), 4) for c in range(5)},
            "label_histogram": {f"{level:.1f}": int(np.sum(np.isclose(labels, level)))
                                for level in LABEL_LEVELS},
            "spearman_label_dw": round(float(rho), 4),
            "label_mean": round(float(labels.mean()), 3),
        }
    return out


def balance_problems(balance: dict) -> list[str]:
    """Every way ``balance`` breaks the gate, one line each (empty: the data set may train)."""
    problems = []
    for region, entry in balance.items():
        for c, share in entry["class_share"].items():
            if share < MIN_CLASS_SHARE:
                problems.append(f"{region}: class {c} holds {100 * share:.1f} % of its {entry['slices']} "
                                f"slices (minimum {100 * MIN_CLASS_SHARE:.0f} %)")
        if abs(entry["spearman_label_dw"]) > MAX_DW_SPEARMAN:
            problems.append(f"{region}: |Spearman(label, Dw)| = {abs(entry['spearman_label_dw']):.3f} "
                            f"(maximum {MAX_DW_SPEARMAN})")
    return problems


def require_balanced(folder: str | Path) -> dict:
    """Refuse (``SimulationError``, one line per problem) a data set whose labels follow anatomy."""
    folder = Path(folder)
    records = json.loads((folder / "simulation.json").read_text())["slices"]
    balance = label_balance(records)
    problems = balance_problems(balance)
    if problems:
        raise SimulationError(f"{folder}: label balance gate failed: " + "; ".join(problems))
    return balance


def settings(priors: bool = False) -> dict:
    """Every constant that shapes a v3 data set (recorded in simulation.json and the card)."""
    base = v2.settings()
    for key in ("region_dose_factor", "dose_range", "variants_per_phantom", "region_weights",
                "kernel_weights"):
        base.pop(key, None)
    base.update({
        "version": VERSION,
        "label_draw": ("protocol priors: dose log-uniform in v2's range times v2's region factor "
                       "(quiet heads); not for training" if priors else
                       "uniform over the 21 levels 0..4, independent of region, size, field of view "
                       "and kernel; noise SD from the label rule's inverse, dose from the SD"),
        "protocol_priors": priors,
        "label_levels": LABEL_LEVELS, "d_beyond_best_hu": D_BEYOND_BEST_HU,
        "d_beyond_worst_hu": D_BEYOND_WORST_HU, "min_noise_share": MIN_NOISE_SHARE,
        "regions": REGIONS, "region_order": "phantom i is region REGIONS[i % 5]",
        "size_scale": SIZE_SCALE, "max_dw_mm": MAX_DW_MM, "fov_max_mm": FOV_MAX_MM,
        "kernels": KERNELS, "kernel_draw": "uniform",
        "slice_textures": SLICE_TEXTURES,
        "noise": "white noise x sqrt(|f|) W(f * detector/pixel / nps_scale) (the kernel's FBP noise "
                 "power spectrum), times the phantom's smoothed noise-SD map from one physical Poisson "
                 f"realisation at full dose (Gaussian {NOISE_MAP_SIGMA_MM} mm), scaled to the exact SD in "
                 "the soft-tissue ROI",
        "streaks": "physically simulated: noise-free FBP from the sparse views minus from all views",
        "samples_per_phantom": SAMPLES_PER_PHANTOM,
        "padding": {"share": PADDED_SHARE, "hu": PADDING_HU,
                    "where": "outside the circle inscribed in the image (the reconstruction field of view), "
                             "flat; drawn per slice from its own generator"},
        "balance_gate": {"min_class_share": MIN_CLASS_SHARE, "max_abs_spearman_label_dw": MAX_DW_SPEARMAN},
    })
    if priors:
        base["region_dose_factor"] = v2.REGION_DOSE_FACTOR
        base["dose_range"] = v2.DOSE_RANGE
    return base


def simulate_dataset(out: str | Path, count: int, seed: int = 0, workers: int | None = None,
                     variants: int = SAMPLES_PER_PHANTOM, priors: bool = False, log=print) -> dict:
    """Write ``count`` v3 slices as an LDCTIQAC training folder (``image/`` + ``train.json``).

    ``simulation.json`` records every slice and, per region, the label
    histogram, class shares and Spearman(label, Dw). Unless ``priors``, the
    data set must pass the balance gate (:class:`SimulationError` otherwise;
    the files stay for inspection).
    """
    import time

    out = Path(out)
    job = _simulate_phantom_priors if priors else _simulate_phantom
    start = time.perf_counter()
    records, labels, elapsed, workers = run_phantom_jobs(job, out, count, seed, variants, workers,
                                                         log=log, name="simulate v3")
    scores = np.array(list(labels.values()))
    balance = label_balance(records)
    problems = balance_problems(balance)
    dws = np.array([r["water_equivalent_diameter_mm"] for r in records])
    summary = {
        "version": VERSION, "count": len(records), "seed": seed, "workers": workers,
        "phantoms": len({r["phantom"] for r in records}),
        "seconds": round(time.perf_counter() - start, 1),
        "slices_per_minute": round(60 * len(records) / max(elapsed, 1e-9), 1),
        "label_mean": round(float(scores.mean()), 3), "label_sd": round(float(scores.std()), 3),
        "label_levels": int(len(np.unique(scores))),
        "regions": {r: sum(1 for x in records if x["region"] == r) for r in REGIONS},
        "kernels": {k: sum(1 for x in records if x["kernel"] == k) for k in KERNELS},
        "slice_textures": {t: sum(1 for x in records if x["slice_texture"] == t) for t in SLICE_TEXTURES},
        "views": {str(v): sum(1 for x in records if x["n_views"] == v) for v in VIEW_CHOICES},
        "water_equivalent_diameter_mm": [round(float(dws.min()), 1), round(float(dws.max()), 1)],
        "truncated": sum(1 for x in records if x["truncated"]),
        "padded": sum(1 for x in records if x.get("padded")),
        "padded_by_region": {r: round(float(np.mean([bool(x.get("padded")) for x in records
                                                     if x["region"] == r])), 3)
                             for r in REGIONS if any(x["region"] == r for x in records)},
        "label_balance": balance,
        "balance_problems": problems,
        "settings": settings(priors),
    }
    (out / "simulation.json").write_text(json.dumps({"summary": summary, "slices": records}, indent=1))
    log(f"simulate v3: wrote {len(records)} slices from {summary['phantoms']} phantoms to {out} in "
        f"{elapsed:.0f} s ({summary['slices_per_minute']} slices/min; label mean {summary['label_mean']}, "
        f"SD {summary['label_sd']}; Dw {summary['water_equivalent_diameter_mm']} mm)")
    for region, entry in balance.items():
        log(f"simulate v3: {region}: {entry['slices']} slices, classes {entry['class_share']}, "
            f"Spearman(label, Dw) {entry['spearman_label_dw']}")
    if problems and not priors:
        raise SimulationError(f"{out}: label balance gate failed: " + "; ".join(problems))
    return summary
