"""Simulator v2: textured multi-region CT in the LDCTIQAC format.

What changes from v1 (``convert/sim/simulate.py``):

1. anatomy: pixel phantoms with texture of five body regions
   (``convert/sim/anatomy.py``), patients of about 150-450 mm water-equivalent
   diameter, contrast phases;
2. field of view 250-500 mm, and about one phantom in six with a display
   field smaller than the body (truncated at the image edge);
3. acquisition: pixel-driven forward projection (numba; each pixel's shadow a
   box, so pixel and bin sizes may differ without moire) of the HU image over
   360 degrees, Poisson noise ``N ~ Poisson(N0 a exp(-p))`` plus a Gaussian
   electronic noise floor, tube-current modulation with patient size, and
   sparse views (720, 360, 180, 90);
4. reconstruction: filtered back-projection with one of three kernels
   (``KERNELS``: the apodisation window of the ramp filter), so the noise
   texture varies as between scanner kernels;
5. label: the same rule (``deltaiqa_lite.physics.label_rule``), with the noise SD
   measured in soft tissue as ``recon(noisy) - recon(noise-free)`` of the same
   textured phantom, views and kernel, so texture is anatomy and never noise;
   streaks as ``recon(noise-free, views) - recon(noise-free, all views)`` over
   the body.

Every random choice comes from ``numpy.random.default_rng([seed, 2, phantom])``,
so a dataset is reproducible for a seed whatever the number of workers.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from convert.sim.anatomy import (MU_WATER_PER_MM, PHASE_WEIGHTS, PHASES, REGION_WEIGHTS, REGIONS,
                             TexturedPhantom, _MAX_EXTENT, make_textured_phantom)
from convert.sim.simulate import _load_backprojector, run_phantom_jobs
from deltaiqa_lite.physics.label_rule import (LABEL_D_BEST_HU, LABEL_D_WORST_HU, STREAK_WEIGHT,
                                      likert_label)
from deltaiqa_lite.model.preprocess import window_hu

VERSION = 2
IMAGE_SIZE = 512
FULL_VIEWS = 720
VIEW_CHOICES = (720, 360, 180, 90)
VIEW_WEIGHTS = (0.56, 0.2, 0.14, 0.1)
# Photons per detector bin per view at 100 % dose for a 300 mm (water-equivalent)
# patient; calibrated so that a 300-330 mm abdomen has a soft-tissue noise SD of
# about 10-14 HU with the standard kernel at full dose (DESIGN.md 2b).
N0_FULL_DOSE = 4.0e5
# Tube-current modulation: N0 scales with exp(AEC_STRENGTH * mu_w * (Dw - 300 mm)),
# a partial compensation (larger patients still come out noisier, as on scanners).
AEC_STRENGTH = 0.6
AEC_RANGE = (0.15, 8.0)
# Protocols differ by region: brain CT runs at several times the tube current
# of a body scan of the same size (a routine head is quiet, about 3-6 HU).
REGION_DOSE_FACTOR = {"head": 4.0}
# Electronic noise of the detector in photon-count units (SD): negligible at
# routine dose, it dominates the photon noise of the thickest rays at very low dose.
ELECTRONIC_NOISE_COUNTS = 6.0
DOSE_RANGE = (0.06, 1.25)
FOV_RANGE = (250.0, 500.0)
TRUNCATION_PROBABILITY = 0.16
VARIANTS_PER_PHANTOM = 4
# Apodisation windows of the ramp filter, as functions of frequency in cycles
# per detector bin (0 .. 0.5). "standard" is v1's Hann window.
KERNELS = ("soft", "standard", "sharp")
KERNEL_WEIGHTS = (0.3, 0.45, 0.25)
SOFT_TISSUE_HU = (-150.0, 250.0)
ROI_EROSION_MM = 3.0


def kernel_window(kernel: str, freq: np.ndarray) -> np.ndarray:
    """Apodisation of the ramp at ``freq`` (cycles per bin): soft, standard or sharp."""
    f = np.abs(freq)
    if kernel == "soft":        # Hann with its cut-off at 0.35 cycles/bin: smooth, blotchy noise
        return np.where(f < 0.35, 0.5 + 0.5 * np.cos(np.pi * f / 0.35), 0.0)
    if kernel == "standard":    # Hann to Nyquist (v1)
        return 0.5 + 0.5 * np.cos(2 * np.pi * f)
    if kernel == "sharp":       # Shepp-Logan: ramp nearly to Nyquist, fine grainy noise
        return np.sinc(f)
    raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")


def ramp_filter(n_det: int, spacing: float, kernel: str) -> np.ndarray:
    """Frequency response of the band-limited ramp (spatial Ram-Lak) times the kernel window."""
    size = max(64, int(2 ** math.ceil(math.log2(2 * n_det))))
    n = np.concatenate([np.arange(1, size // 2 + 1, 2), np.arange(size // 2 - 1, 0, -2)])
    spatial = np.zeros(size)
    spatial[0] = 0.25
    spatial[1::2] = -1.0 / (np.pi * n) ** 2
    ramp = 2 * np.real(np.fft.fft(spatial))
    return ramp * kernel_window(kernel, np.fft.fftfreq(size)) / spacing


def _load_projector():
    import numba

    @numba.njit(cache=True, fastmath=True, parallel=True)
    def project(mu, cos_v, sin_v, pixel_mm, spacing, n_det):
        """Pixel-driven projection with a box footprint (as distance-driven projectors).

        Each pixel's mass ``mu * pixel^2`` is spread over the bins its shadow
        covers; the shadow is a box ``pixel * max(|cos|, |sin|)`` wide, so the
        shadows of one row (or column) tile the detector exactly and a uniform
        object projects without the periodic ripple (moire in the image) that
        a point splat with linear interpolation leaves when pixel and bin
        sizes differ.
        """
        n_pix = mu.shape[0]
        n_views = cos_v.shape[0]
        centre_pix = (n_pix - 1) / 2.0
        centre_det = (n_det - 1) / 2.0
        sino = np.zeros((n_views, n_det), dtype=np.float64)
        for v in numba.prange(n_views):
            c = cos_v[v]
            s = sin_v[v]
            step = c * pixel_mm / spacing
            width = pixel_mm * max(abs(c), abs(s)) / spacing        # shadow width in bins
            half = width / 2.0
            density = pixel_mm * pixel_mm / (width * spacing)       # mass per bin-length, per mu
            for row in range(n_pix):
                y = (centre_pix - row) * pixel_mm
                start = (y * s) / spacing + centre_det - centre_pix * step
                for col in range(n_pix):
                    value = mu[row, col]
                    if value != 0.0:
                        pos = start + col * step
                        lo = pos - half
                        hi = pos + half
                        k = int(math.floor(lo + 0.5))
                        k_end = int(math.floor(hi + 0.5))
                        if k < 0 or k_end > n_det - 1:
                            continue
                        while k <= k_end:
                            overlap = min(hi, k + 0.5) - max(lo, k - 0.5)
                            if overlap > 0.0:
                                sino[v, k] += value * density * overlap
                            k += 1
        return sino

    return project


_PROJECT = None
_BACKPROJECT = None


@dataclass(frozen=True)
class Geometry:
    """Parallel-beam geometry over 360 degrees and the display field."""

    fov_mm: float          # side of the reconstructed 512x512 image
    spacing_mm: float      # detector bin spacing
    n_det: int

    @property
    def pixel_mm(self) -> float:
        return self.fov_mm / IMAGE_SIZE


def forward_project(phantom: TexturedPhantom, geometry: Geometry, n_views: int) -> np.ndarray:
    """Line integrals (mu * mm) of the phantom's attenuation over ``n_views`` views."""
    global _PROJECT
    if _PROJECT is None:
        _PROJECT = _load_projector()
    mu = (MU_WATER_PER_MM * np.clip(phantom.hu / 1000.0 + 1.0, 0.0, None)).astype(np.float64)
    theta = np.arange(n_views) * (2 * math.pi / n_views)
    return _PROJECT(mu, np.cos(theta), np.sin(theta), phantom.pixel_mm, geometry.spacing_mm,
                    geometry.n_det)


def fbp(sino: np.ndarray, geometry: Geometry, kernel: str) -> np.ndarray:
    """Filtered back-projection onto the 512x512 display field, in HU."""
    global _BACKPROJECT
    if _BACKPROJECT is None:
        _BACKPROJECT = _load_backprojector()
    n_views, n_det = sino.shape
    response = ramp_filter(n_det, geometry.spacing_mm, kernel)
    padded = np.zeros((n_views, response.size))
    padded[:, :n_det] = sino
    # The response is real and even, so a real FFT does the same work at half the cost.
    half = response[:response.size // 2 + 1]
    filtered = np.ascontiguousarray(
        np.fft.irfft(np.fft.rfft(padded, axis=1) * half, n=response.size, axis=1)[:, :n_det],
        dtype=np.float32)
    theta = np.arange(n_views) * (2 * math.pi / n_views)
    mu = _BACKPROJECT(filtered, np.cos(theta), np.sin(theta), IMAGE_SIZE, geometry.pixel_mm,
                      geometry.spacing_mm)
    mu *= np.float32(math.pi / (2 * n_views))     # 360-degree data, doubled ramp (as v1)
    return (1000.0 * (mu / MU_WATER_PER_MM - 1.0)).astype(np.float32)


def noisy_sinogram(clean: np.ndarray, n0: float, rng: np.random.Generator,
                   electronic_sd: float = ELECTRONIC_NOISE_COUNTS) -> np.ndarray:
    """Poisson photon noise plus Gaussian electronic noise, then ``p = ln(n0 / N)``."""
    expected = n0 * np.exp(-clean)
    counts = rng.poisson(expected).astype(np.float64)
    counts += rng.normal(0.0, electronic_sd, size=counts.shape)
    np.maximum(counts, 1.0, out=counts)      # a count <= 0 would be an infinite line integral
    return np.log(n0 / counts)


@dataclass
class SliceRecordV2:
    file: str
    phantom: int
    variant: int
    region: str
    phase: str
    kernel: str
    dose_fraction: float
    n_views: int
    n0: float
    noise_sd_hu: float
    streak_rms_hu: float
    label: float
    water_equivalent_diameter_mm: float
    body_width_mm: float
    fov_mm: float
    pixel_mm: float
    truncated: bool


class TexturedScan:
    """One textured phantom, its geometry, and the reconstructions its acquisitions share."""

    def __init__(self, seed: int, phantom_index: int, region: str | None = None,
                 truncate: bool | None = None):
        self.rng = np.random.default_rng([seed, VERSION, phantom_index])
        self.index = phantom_index
        rng = self.rng
        region = region or str(rng.choice(REGIONS, p=REGION_WEIGHTS))
        # The display field is drawn before the body, from the region's size range,
        # then fixed against the drawn body below.
        extent = _MAX_EXTENT[region] + 60.0
        fov_guess = float(np.clip(_MAX_EXTENT[region] * rng.uniform(0.55, 1.0), *FOV_RANGE))
        # Phantom pixels no coarser than 1.25 display pixels (cap 768 for speed).
        size = int(np.clip(math.ceil(extent / (1.25 * fov_guess / IMAGE_SIZE) / 64) * 64, 512, 768))
        self.phantom = make_textured_phantom(rng, region, extent_mm=extent, size=size)
        width = self.phantom.width_mm
        truncate = (rng.random() < TRUNCATION_PROBABILITY) if truncate is None else truncate
        if truncate and width * 0.95 > FOV_RANGE[0]:
            fov = rng.uniform(max(FOV_RANGE[0], 0.6 * width), 0.95 * width)
        else:
            fov = float(np.clip(width + rng.uniform(20.0, 100.0), *FOV_RANGE))
        spacing = max(fov / IMAGE_SIZE, self.phantom.pixel_mm)
        n_det = int(math.ceil(extent * math.sqrt(2) / spacing)) + 8
        self.geometry = Geometry(float(fov), float(spacing), n_det)
        self.dw_mm = self.phantom.water_equivalent_diameter_mm
        self.n0 = N0_FULL_DOSE * float(np.clip(
            math.exp(AEC_STRENGTH * MU_WATER_PER_MM * (self.dw_mm - 300.0)), *AEC_RANGE)) * \
            REGION_DOSE_FACTOR.get(self.phantom.region, 1.0)
        self._masks()
        self._sino_full: np.ndarray | None = None
        self._clean: dict[tuple[int, str], np.ndarray] = {}

    def _masks(self) -> None:
        """Soft-tissue ROI and body mask on the display grid, from the phantom itself."""
        from scipy import ndimage

        g = self.geometry
        centre = (IMAGE_SIZE - 1) / 2.0
        coords = (np.arange(IMAGE_SIZE) - centre) * g.pixel_mm
        p = self.phantom
        index = np.round(coords / p.pixel_mm + (p.hu.shape[0] - 1) / 2.0).astype(int)
        index = np.clip(index, 0, p.hu.shape[0] - 1)
        rows = index                # display and phantom rows both run from anterior (+y) down
        hu = p.hu[np.ix_(rows, index)]
        body = p.body[np.ix_(rows, index)]
        erosion = max(1, int(round(ROI_EROSION_MM / g.pixel_mm)))
        soft = body & (hu >= SOFT_TISSUE_HU[0]) & (hu <= SOFT_TISSUE_HU[1])
        soft = ndimage.binary_erosion(soft, iterations=erosion)
        self.body_mask = ndimage.binary_erosion(body, iterations=erosion)
        self.roi = soft if soft.sum() >= 500 else self.body_mask
        self.truncated = bool(body[0].any() or body[-1].any() or body[:, 0].any() or body[:, -1].any())

    def sinogram(self, n_views: int) -> np.ndarray:
        if self._sino_full is None:
            self._sino_full = forward_project(self.phantom, self.geometry, FULL_VIEWS)
        if FULL_VIEWS % n_views:
            raise ValueError(f"{n_views} views: choose a divisor of {FULL_VIEWS}")
        return self._sino_full[::FULL_VIEWS // n_views]

    def clean(self, n_views: int, kernel: str) -> np.ndarray:
        key = (n_views, kernel)
        if key not in self._clean:
            self._clean[key] = fbp(self.sinogram(n_views), self.geometry, kernel)
        return self._clean[key]

    def acquire(self, dose_fraction: float, n_views: int = FULL_VIEWS, kernel: str = "standard") -> dict:
        """Reconstruct one acquisition and measure its degradation against the noise-free image."""
        noisy = noisy_sinogram(self.sinogram(n_views), self.n0 * dose_fraction, self.rng)
        hu = fbp(noisy, self.geometry, kernel)
        clean = self.clean(n_views, kernel)
        noise_sd = float(np.std((hu - clean)[self.roi]))
        streak = clean - self.clean(FULL_VIEWS, kernel)
        streak_rms = float(np.sqrt(np.mean(streak[self.body_mask] ** 2)))
        return {"hu": hu, "noise_sd_hu": noise_sd, "streak_rms_hu": streak_rms,
                "label": likert_label(noise_sd, streak_rms), "kernel": kernel,
                "pixel_spacing_mm": self.geometry.pixel_mm}


def simulate_slice(seed: int, dose_fraction: float, n_views: int = FULL_VIEWS, phantom_index: int = 0,
                   kernel: str = "standard", region: str | None = None) -> dict:
    """One reconstructed slice in HU with its measurements (examples and tests)."""
    return TexturedScan(seed, phantom_index, region=region).acquire(dose_fraction, n_views, kernel)


def _draw_acquisitions(rng: np.random.Generator, count: int) -> list[tuple[float, int, str]]:
    low, high = DOSE_RANGE
    return [(float(math.exp(rng.uniform(math.log(low), math.log(high)))),
             int(rng.choice(VIEW_CHOICES, p=VIEW_WEIGHTS)),
             str(rng.choice(KERNELS, p=KERNEL_WEIGHTS))) for _ in range(count)]


def _simulate_phantom(job: tuple[int, int, int, int, str]) -> list[dict]:
    seed, phantom_index, first_file, n_variants, out_dir = job
    import tifffile

    scan = TexturedScan(seed, phantom_index)
    records = []
    for variant, (dose, views, kernel) in enumerate(_draw_acquisitions(scan.rng, n_variants)):
        result = scan.acquire(dose, views, kernel)
        name = f"{first_file + variant:04d}.tif"
        tifffile.imwrite(os.path.join(out_dir, "image", name), window_hu(result["hu"]))
        records.append(asdict(SliceRecordV2(
            file=name, phantom=phantom_index, variant=variant, region=scan.phantom.region,
            phase=scan.phantom.phase, kernel=kernel, dose_fraction=round(dose, 5), n_views=views,
            n0=round(scan.n0, 1), noise_sd_hu=round(result["noise_sd_hu"], 4),
            streak_rms_hu=round(result["streak_rms_hu"], 4), label=result["label"],
            water_equivalent_diameter_mm=round(scan.dw_mm, 1),
            body_width_mm=round(scan.phantom.width_mm, 1), fov_mm=round(scan.geometry.fov_mm, 1),
            pixel_mm=round(scan.geometry.pixel_mm, 5), truncated=scan.truncated)))
    return records


def settings() -> dict:
    """Every constant that shapes a v2 dataset (recorded in simulation.json and the card)."""
    return {
        "version": VERSION, "n0_full_dose": N0_FULL_DOSE, "aec_strength": AEC_STRENGTH,
        "aec_range": AEC_RANGE, "region_dose_factor": REGION_DOSE_FACTOR,
        "electronic_noise_counts": ELECTRONIC_NOISE_COUNTS,
        "dose_range": DOSE_RANGE, "views": VIEW_CHOICES, "view_weights": VIEW_WEIGHTS,
        "full_views": FULL_VIEWS, "mu_water_per_mm": MU_WATER_PER_MM, "fov_range_mm": FOV_RANGE,
        "truncation_probability": TRUNCATION_PROBABILITY, "regions": REGIONS,
        "region_weights": REGION_WEIGHTS, "phases": PHASES, "phase_weights": PHASE_WEIGHTS,
        "kernels": KERNELS, "kernel_weights": KERNEL_WEIGHTS,
        "kernel": "ramp x {soft: Hann cut at 0.35 cycles/bin, standard: Hann, sharp: Shepp-Logan}",
        "noise_roi": f"soft tissue {SOFT_TISSUE_HU} HU in the body, eroded {ROI_EROSION_MM} mm",
        "streak_weight": STREAK_WEIGHT, "label_d_best_hu": LABEL_D_BEST_HU,
        "label_d_worst_hu": LABEL_D_WORST_HU, "variants_per_phantom": VARIANTS_PER_PHANTOM,
        "geometry": "parallel beam, 360 degrees, pixel-driven box-footprint projection of textured "
                    "pixel phantoms",
    }


def simulate_dataset(out: str | Path, count: int, seed: int = 0, workers: int | None = None,
                     variants: int = VARIANTS_PER_PHANTOM, log=print) -> dict:
    """Write ``count`` v2 slices as an LDCTIQAC training folder (``image/`` + ``train.json``).

    ``simulation.json`` beside them records how each slice was made (region,
    phase, kernel, dose, views, size, field of view, measured noise and
    streaks); the trainer splits by its ``phantom`` field.
    """
    out = Path(out)
    records, labels, elapsed, workers = run_phantom_jobs(_simulate_phantom, out, count, seed, variants,
                                                         workers, log=log, name="simulate v2")
    scores = np.array(list(labels.values()))
    summary = {
        "version": VERSION, "count": len(records), "seed": seed, "workers": workers,
        "seconds": round(elapsed, 1), "slices_per_minute": round(60 * len(records) / max(elapsed, 1e-9), 1),
        "label_mean": round(float(scores.mean()), 3), "label_sd": round(float(scores.std()), 3),
        "label_levels": int(len(np.unique(scores))),
        "regions": {r: sum(1 for x in records if x["region"] == r) for r in REGIONS},
        "kernels": {k: sum(1 for x in records if x["kernel"] == k) for k in KERNELS},
        "truncated": sum(1 for x in records if x["truncated"]),
        "settings": settings(),
    }
    (out / "simulation.json").write_text(json.dumps({"summary": summary, "slices": records}, indent=1))
    log(f"simulate v2: wrote {len(records)} slices to {out} in {elapsed:.0f} s "
        f"(label mean {summary['label_mean']}, SD {summary['label_sd']}, {summary['label_levels']} levels)")
    return summary
