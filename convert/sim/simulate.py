"""Simulated low-dose abdominal CT in the LDCTIQAC format.

The organisers of LDCTIQAC 2023 made their images by forward-projecting
routine-dose abdominal CT, adding Poisson noise in the projection domain at a
reduced dose, or keeping fewer views, and reconstructing with filtered
back-projection (DESIGN.md section 2b). We do the same on procedural phantoms:

1. anatomy: a stack of ellipses in HU (body outline, subcutaneous fat, muscle
   wall, abdominal cavity, liver, spleen, kidneys, vertebra with cortical and
   cancellous bone, paraspinal muscles, aorta, bowel gas, small low-contrast
   lesions, couch), varied per phantom;
2. acquisition: the exact parallel-beam sinogram of the ellipses (analytic
   Radon transform), Poisson noise ``N ~ Poisson(N0 * a * exp(-p))`` at a dose
   fraction ``a``, ``p = ln(N0 * a / N)``;
3. reconstruction: filtered back-projection (ramp filter with a Hann window,
   a "standard" soft-tissue kernel) on a 512x512 grid;
4. label: a documented monotone function of the measured degradation (see
   ``likert_label``), in steps of 0.2 like a mean of five readers.

Every random choice comes from ``numpy.random.default_rng([seed, phantom])``,
so a dataset is reproducible for a seed whatever the number of workers.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from deltaiqa_lite.physics.label_rule import (LABEL_D_BEST_HU, LABEL_D_WORST_HU, STREAK_WEIGHT,  # noqa: F401
                                    likert_label)

from deltaiqa_lite.model.preprocess import window_hu

IMAGE_SIZE = 512
MU_WATER_PER_MM = 0.0195          # ~120 kVp effective energy (DESIGN.md 2b)
FULL_VIEWS = 1000                 # "full sampling" over 360 degrees
VIEW_CHOICES = (1000, 720, 360, 180, 90)
VIEW_WEIGHTS = (0.40, 0.18, 0.17, 0.15, 0.10)
# Photons per detector bin per view at 100 % dose. Calibrated so that an
# average patient (about 330 mm wide) has a liver noise SD of about 12 HU at
# full dose and 1000 views, and about twice that at a quarter dose
# (DESIGN.md 2b); see ``calibrate`` in the note of issue 2.
N0_FULL_DOSE = 5.0e5
DOSE_RANGE = (0.05, 1.0)
VARIANTS_PER_PHANTOM = 4
# Body regions of the phantoms: make_phantom draws abdominal slices only. Recorded in the
# model card's training domain (convert/card/domain.py), which the runtime's outside-training
# flag follows.
REGIONS = ("abdomen",)

# Label rule: deltaiqa_lite.physics.label_rule (shared with the runtime's physics baseline).


# --------------------------------------------------------------------------
# Anatomy
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Ellipse:
    """An ellipse adding ``delta_hu`` to everything under it (Shepp-Logan style)."""

    x_mm: float
    y_mm: float
    a_mm: float
    b_mm: float
    angle_rad: float
    delta_hu: float
    name: str = ""


@dataclass
class Phantom:
    ellipses: list[Ellipse]
    fov_mm: float
    body_width_mm: float
    body_height_mm: float
    liver: Ellipse
    extras: dict = field(default_factory=dict)

    @property
    def pixel_mm(self) -> float:
        return self.fov_mm / IMAGE_SIZE


def _add(parts: list[Ellipse], name: str, x: float, y: float, a: float, b: float,
         angle: float, hu: float, parent_hu: float) -> Ellipse:
    ellipse = Ellipse(x, y, a, b, angle, hu - parent_hu, name)
    parts.append(ellipse)
    return ellipse


def make_phantom(rng: np.random.Generator) -> Phantom:
    """Draw one abdominal phantom; x to the image's right (patient's left), y anterior."""
    width = rng.uniform(250.0, 420.0)                 # lateral body width, mm
    height = width * rng.uniform(0.62, 0.82)          # anterior-posterior
    fov = float(np.clip(width + rng.uniform(30.0, 90.0), 320.0, 450.0))
    A, B = width / 2, height / 2
    cy = rng.uniform(-8.0, 8.0)
    cx = rng.uniform(-6.0, 6.0)
    parts: list[Ellipse] = []

    # Couch under the patient: a thin dense slab with an air gap above it.
    couch_y = cy - B - rng.uniform(6.0, 15.0) - 4.0
    couch_a = min(fov * 0.46, A * 1.15)
    _add(parts, "couch", cx * 0.2, couch_y, couch_a, 4.0, 0.0, rng.uniform(150, 350), -1000)

    fat_hu = rng.uniform(-115.0, -85.0)
    body = _add(parts, "body", cx, cy, A, B, rng.uniform(-0.05, 0.05), fat_hu, -1000)
    fat = rng.uniform(8.0, 0.12 * A + 10.0)          # subcutaneous fat thickness
    muscle_hu = rng.uniform(40.0, 60.0)
    _add(parts, "muscle wall", cx, cy, A - fat, B - fat, body.angle_rad, muscle_hu, fat_hu)
    wall = rng.uniform(8.0, 16.0)
    cavity_hu = rng.uniform(-40.0, 10.0)             # visceral fat and bowel mixture
    ca, cb = A - fat - wall, B - fat - wall
    _add(parts, "abdominal cavity", cx, cy + 0.05 * cb, ca, cb * 0.92, 0.0, cavity_hu, muscle_hu)

    # Vertebra, posterior midline, with paraspinal muscles behind it.
    vr = rng.uniform(16.0, 22.0)
    vy = cy - cb * 0.55
    _add(parts, "paraspinal left", cx + vr * 1.5, vy - vr * 1.6, vr * 1.1, vr * 0.8, 0.3, muscle_hu, cavity_hu)
    _add(parts, "paraspinal right", cx - vr * 1.5, vy - vr * 1.6, vr * 1.1, vr * 0.8, -0.3, muscle_hu, cavity_hu)
    cortical_hu = rng.uniform(600.0, 900.0)
    cancellous_hu = rng.uniform(150.0, 280.0)
    _add(parts, "vertebral body cortex", cx, vy, vr, vr * 0.9, 0.0, cortical_hu, cavity_hu)
    _add(parts, "vertebral body cancellous", cx, vy, vr - 2.5, vr * 0.9 - 2.5, 0.0, cancellous_hu, cortical_hu)
    _add(parts, "spinous process", cx, vy - vr * 1.7, vr * 0.22, vr * 0.65, 0.0, cortical_hu, muscle_hu)

    # Aorta left-anterior of the vertebra; contrast-enhanced or not.
    aorta_hu = rng.choice([rng.uniform(35.0, 50.0), rng.uniform(150.0, 300.0)])
    ar = rng.uniform(9.0, 13.0)
    _add(parts, "aorta", cx + vr * 0.6, vy + vr + ar + 2.0, ar, ar, 0.0, aorta_hu, cavity_hu)

    # Liver on the patient's right (image left), spleen on the left-posterior.
    liver_hu = rng.uniform(50.0, 70.0)
    liver = _add(parts, "liver", cx - ca * 0.42, cy + cb * rng.uniform(-0.05, 0.2),
                 ca * rng.uniform(0.45, 0.55), cb * rng.uniform(0.55, 0.75),
                 rng.uniform(-0.4, 0.1), liver_hu, cavity_hu)
    spleen_hu = rng.uniform(40.0, 55.0)
    _add(parts, "spleen", cx + ca * 0.62, cy - cb * 0.25, ca * 0.2, cb * 0.35,
         rng.uniform(0.3, 0.8), spleen_hu, cavity_hu)
    kidney_hu = rng.choice([rng.uniform(25.0, 40.0), rng.uniform(120.0, 200.0)])
    for side, name in ((1.0, "left kidney"), (-1.0, "right kidney")):
        _add(parts, name, cx + side * vr * 2.6, vy + vr * 0.2, vr * 0.75, vr * 1.15,
             side * 0.5, kidney_hu, cavity_hu)

    # Small low-contrast liver lesions (the detail readers look for).
    for k in range(int(rng.integers(1, 4))):
        r = rng.uniform(3.0, 9.0)
        angle = rng.uniform(0, 2 * math.pi)
        dist = rng.uniform(0.0, 0.55)
        lx = liver.x_mm + dist * liver.a_mm * 0.8 * math.cos(angle)
        ly = liver.y_mm + dist * liver.b_mm * 0.8 * math.sin(angle)
        _add(parts, f"lesion {k}", lx, ly, r, r * rng.uniform(0.8, 1.0), 0.0,
             liver_hu - rng.uniform(10.0, 25.0), liver_hu)

    # Bowel gas pockets in the anterior cavity.
    for k in range(int(rng.integers(0, 5))):
        r = rng.uniform(5.0, 14.0)
        gx = cx + rng.uniform(-0.1, 0.6) * ca
        gy = cy + rng.uniform(0.1, 0.6) * cb
        _add(parts, f"bowel gas {k}", gx, gy, r, r * rng.uniform(0.6, 1.0),
             rng.uniform(0, math.pi), -1000.0, cavity_hu)

    return Phantom(parts, fov, width, height, liver)


# --------------------------------------------------------------------------
# Projection and reconstruction
# --------------------------------------------------------------------------

def _detector(phantom: Phantom) -> tuple[int, float]:
    """Number of bins and bin spacing (mm): one bin per pixel, covering the FOV circle."""
    n_det = int(math.ceil(IMAGE_SIZE * math.sqrt(2))) + 8
    return n_det, phantom.pixel_mm


def analytic_sinogram(phantom: Phantom, n_views: int) -> np.ndarray:
    """Exact line integrals of attenuation (unitless, mu * mm) for views over 360 degrees."""
    n_det, spacing = _detector(phantom)
    theta = np.arange(n_views) * (2 * math.pi / n_views)
    t = (np.arange(n_det) - (n_det - 1) / 2.0) * spacing
    cos_t, sin_t = np.cos(theta)[:, None], np.sin(theta)[:, None]
    sino = np.zeros((n_views, n_det), dtype=np.float64)
    for e in phantom.ellipses:
        mu = MU_WATER_PER_MM * e.delta_hu / 1000.0
        rel = theta - e.angle_rad
        r2 = (e.a_mm * np.cos(rel)) ** 2 + (e.b_mm * np.sin(rel)) ** 2
        s0 = e.x_mm * cos_t + e.y_mm * sin_t
        d2 = r2[:, None] - (t[None, :] - s0) ** 2
        np.maximum(d2, 0.0, out=d2)
        sino += (2.0 * mu * e.a_mm * e.b_mm / r2)[:, None] * np.sqrt(d2)
    return sino


def _ramp_hann_filter(n_det: int, spacing: float) -> np.ndarray:
    """Frequency response of the band-limited ramp (Ram-Lak, spatial form) times a Hann window."""
    size = max(64, int(2 ** math.ceil(math.log2(2 * n_det))))
    n = np.concatenate([np.arange(1, size // 2 + 1, 2), np.arange(size // 2 - 1, 0, -2)])
    kernel = np.zeros(size)
    kernel[0] = 0.25
    kernel[1::2] = -1.0 / (np.pi * n) ** 2
    ramp = 2 * np.real(np.fft.fft(kernel))          # spatial Ram-Lak avoids a DC offset
    freq = np.fft.fftfreq(size)
    hann = 0.5 + 0.5 * np.cos(2 * np.pi * freq)     # 1 at DC, 0 at Nyquist
    return ramp * hann / spacing


def filter_sinogram(sino: np.ndarray, spacing: float) -> np.ndarray:
    n_views, n_det = sino.shape
    response = _ramp_hann_filter(n_det, spacing)
    padded = np.zeros((n_views, response.size))
    padded[:, :n_det] = sino
    filtered = np.real(np.fft.ifft(np.fft.fft(padded, axis=1) * response, axis=1))
    return np.ascontiguousarray(filtered[:, :n_det], dtype=np.float32)


def _load_backprojector():
    import numba

    @numba.njit(cache=True, fastmath=True, parallel=True)
    def backproject(filtered, cos_v, sin_v, n_pix, pixel_mm, spacing):
        n_views, n_det = filtered.shape
        centre_pix = (n_pix - 1) / 2.0
        centre_det = (n_det - 1) / 2.0
        out = np.zeros((n_pix, n_pix), dtype=np.float32)
        for row in numba.prange(n_pix):
            y = (centre_pix - row) * pixel_mm      # row 0 is anterior
            for v in range(n_views):
                c = cos_v[v]
                s = sin_v[v]
                base = (y * s) / spacing + centre_det
                step = c * pixel_mm / spacing
                start = base - centre_pix * step
                for col in range(n_pix):
                    pos = start + col * step
                    k = int(math.floor(pos))
                    if k >= 0 and k < n_det - 1:
                        w = pos - k
                        out[row, col] += (1.0 - w) * filtered[v, k] + w * filtered[v, k + 1]
        return out

    return backproject


_BACKPROJECT = None


def fbp_hu(sino: np.ndarray, phantom: Phantom) -> np.ndarray:
    """Filtered back-projection of a 360-degree parallel-beam sinogram, in HU."""
    global _BACKPROJECT
    if _BACKPROJECT is None:
        _BACKPROJECT = _load_backprojector()
    n_views, _ = sino.shape
    _, spacing = _detector(phantom)
    filtered = filter_sinogram(sino, spacing)
    theta = np.arange(n_views) * (2 * math.pi / n_views)
    mu = _BACKPROJECT(filtered, np.cos(theta).astype(np.float64), np.sin(theta).astype(np.float64),
                      IMAGE_SIZE, phantom.pixel_mm, spacing)
    # 360-degree data: every line is measured twice, and the filter above is
    # twice the true ramp (as in scikit-image), hence pi / (2 V).
    mu *= np.float32(math.pi / (2 * n_views))
    return (1000.0 * (mu / MU_WATER_PER_MM - 1.0)).astype(np.float32)


def noisy_sinogram(clean: np.ndarray, dose_fraction: float, n0: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Poisson noise in the projection domain: p = ln(N0 a / N), N ~ Poisson(N0 a exp(-p))."""
    expected = n0 * dose_fraction * np.exp(-clean)
    counts = rng.poisson(expected).astype(np.float64)
    np.maximum(counts, 1.0, out=counts)      # a zero count would be an infinite line integral
    return np.log(n0 * dose_fraction / counts)


# --------------------------------------------------------------------------
# Measurement and label
# --------------------------------------------------------------------------

def _pixel_grid(phantom: Phantom) -> tuple[np.ndarray, np.ndarray]:
    centre = (IMAGE_SIZE - 1) / 2.0
    idx = np.arange(IMAGE_SIZE)
    x = (idx - centre) * phantom.pixel_mm
    y = (centre - idx) * phantom.pixel_mm
    return np.meshgrid(x, y)


def _inside(e: Ellipse, x: np.ndarray, y: np.ndarray, shrink_mm: float = 0.0) -> np.ndarray:
    dx, dy = x - e.x_mm, y - e.y_mm
    c, s = math.cos(e.angle_rad), math.sin(e.angle_rad)
    u, v = dx * c + dy * s, -dx * s + dy * c
    a, b = max(e.a_mm - shrink_mm, 1.0), max(e.b_mm - shrink_mm, 1.0)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def measurement_masks(phantom: Phantom) -> tuple[np.ndarray, np.ndarray]:
    """Soft-tissue ROI (liver, away from its edge and lesions) and the body mask."""
    x, y = _pixel_grid(phantom)
    liver = _inside(phantom.liver, x, y, shrink_mm=6.0)
    for e in phantom.ellipses:
        if e.name.startswith(("lesion", "bowel gas", "vertebral", "aorta", "kidney")):
            liver &= ~_inside(e, x, y, shrink_mm=-4.0)
    body = next(e for e in phantom.ellipses if e.name == "body")
    return liver, _inside(body, x, y, shrink_mm=3.0)


# --------------------------------------------------------------------------
# Slices and datasets
# --------------------------------------------------------------------------

@dataclass
class SliceRecord:
    file: str
    phantom: int
    variant: int
    dose_fraction: float
    n_views: int
    n0: float
    noise_sd_hu: float
    streak_rms_hu: float
    label: float
    body_width_mm: float
    pixel_mm: float


class PhantomScan:
    """One phantom and the reconstructions it shares among its acquisitions."""

    def __init__(self, seed: int, phantom_index: int):
        self.rng = np.random.default_rng([seed, phantom_index])
        self.index = phantom_index
        self.phantom = make_phantom(self.rng)
        self.liver_roi, self.body_mask = measurement_masks(self.phantom)
        self._sino: dict[int, np.ndarray] = {}
        self._clean: dict[int, np.ndarray] = {}

    def sinogram(self, n_views: int) -> np.ndarray:
        if n_views not in self._sino:
            self._sino[n_views] = analytic_sinogram(self.phantom, n_views)
        return self._sino[n_views]

    def clean(self, n_views: int) -> np.ndarray:
        if n_views not in self._clean:
            self._clean[n_views] = fbp_hu(self.sinogram(n_views), self.phantom)
        return self._clean[n_views]

    def acquire(self, dose_fraction: float, n_views: int, n0: float = N0_FULL_DOSE) -> dict:
        """Reconstruct one acquisition and measure its degradation."""
        noisy = noisy_sinogram(self.sinogram(n_views), dose_fraction, n0, self.rng)
        hu = fbp_hu(noisy, self.phantom)
        clean = self.clean(n_views)
        noise = hu - clean
        noise_sd = float(np.std(noise[self.liver_roi]))
        streak = clean - self.clean(FULL_VIEWS)
        streak_rms = float(np.sqrt(np.mean(streak[self.body_mask] ** 2)))
        return {
            "hu": hu,
            "noise_sd_hu": noise_sd,
            "streak_rms_hu": streak_rms,
            "label": likert_label(noise_sd, streak_rms),
            "pixel_spacing_mm": self.phantom.pixel_mm,
            "body_width_mm": self.phantom.body_width_mm,
        }


def simulate_slice(seed: int, dose_fraction: float, n_views: int = FULL_VIEWS,
                   phantom_index: int = 0, n0: float = N0_FULL_DOSE) -> dict:
    """One reconstructed slice in HU with its measurements (used for examples and tests)."""
    return PhantomScan(seed, phantom_index).acquire(dose_fraction, n_views, n0)


def _draw_acquisitions(rng: np.random.Generator, count: int) -> list[tuple[float, int]]:
    low, high = DOSE_RANGE
    acquisitions = []
    for _ in range(count):
        dose = float(math.exp(rng.uniform(math.log(low), math.log(high))))
        views = int(rng.choice(VIEW_CHOICES, p=VIEW_WEIGHTS))
        acquisitions.append((dose, views))
    return acquisitions


def _simulate_phantom(job: tuple[int, int, int, int, str]) -> list[dict]:
    seed, phantom_index, first_file, n_variants, out_dir = job
    import tifffile

    scan = PhantomScan(seed, phantom_index)
    records = []
    for variant, (dose, views) in enumerate(_draw_acquisitions(scan.rng, n_variants)):
        result = scan.acquire(dose, views)
        name = f"{first_file + variant:04d}.tif"
        unit = window_hu(result["hu"])
        tifffile.imwrite(os.path.join(out_dir, "image", name), unit)
        records.append(asdict(SliceRecord(
            file=name, phantom=phantom_index, variant=variant, dose_fraction=round(dose, 5),
            n_views=views, n0=N0_FULL_DOSE, noise_sd_hu=round(result["noise_sd_hu"], 4),
            streak_rms_hu=round(result["streak_rms_hu"], 4), label=result["label"],
            body_width_mm=round(scan.phantom.body_width_mm, 2),
            pixel_mm=round(scan.phantom.pixel_mm, 5))))
    return records


def _init_worker() -> None:
    import numba
    numba.set_num_threads(1)


def run_phantom_jobs(simulate_phantom, out: Path, count: int, seed: int, variants: int,
                     workers: int | None, *, log, name: str) -> tuple[list[dict], dict, float, int]:
    """Simulate ``count`` slices, ``variants`` per phantom, and write ``train.json``.

    The one job loop of both simulators: ``simulate_phantom((seed, phantom,
    first, n, out))`` writes one phantom's slices into ``out/image`` and returns
    their records. Runs in a spawn pool when ``workers > 1`` (numba one thread
    per worker). Returns the records sorted by file, the labels, the seconds
    taken and the number of workers.
    """
    (out / "image").mkdir(parents=True, exist_ok=True)
    jobs = [(seed, index, first, min(variants, count - first), str(out))
            for index, first in enumerate(range(0, count, variants))]
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    start = time.perf_counter()
    records: list[dict] = []
    with contextlib.ExitStack() as stack:
        if workers > 1:
            import multiprocessing as mp
            pool = stack.enter_context(mp.get_context("spawn").Pool(workers, initializer=_init_worker))
            batches = pool.imap(simulate_phantom, jobs)
        else:
            batches = map(simulate_phantom, jobs)
        for done, batch in enumerate(batches, 1):
            records.extend(batch)
            if done % 10 == 0 or done == len(jobs):
                elapsed = time.perf_counter() - start
                log(f"{name}: {len(records)}/{count} slices, {elapsed:.0f} s "
                    f"({60 * len(records) / max(elapsed, 1e-9):.1f} slices/min)")
    records.sort(key=lambda r: r["file"])
    labels = {r["file"]: r["label"] for r in records}
    (out / "train.json").write_text(json.dumps(labels, indent=1))
    return records, labels, time.perf_counter() - start, workers


def simulate_dataset(out: str | Path, count: int, seed: int = 0, workers: int | None = None,
                     variants: int = VARIANTS_PER_PHANTOM, log=print) -> dict:
    """Write ``count`` slices as an LDCTIQAC training folder: ``image/*.tif`` + ``train.json``.

    Beside them ``simulation.json`` records how each slice was made (phantom,
    dose, views, measured noise and streaks), which the trainer uses to split
    by phantom.
    """
    out = Path(out)
    records, labels, elapsed, _ = run_phantom_jobs(_simulate_phantom, out, count, seed, variants,
                                                   workers, log=log, name="simulate")
    scores = np.array(list(labels.values()))
    summary = {
        "count": len(records), "seed": seed, "seconds": round(elapsed, 1),
        "label_mean": round(float(scores.mean()), 3), "label_sd": round(float(scores.std()), 3),
        "label_levels": int(len(np.unique(scores))),
        "settings": {
            "n0_full_dose": N0_FULL_DOSE, "dose_range": DOSE_RANGE, "views": VIEW_CHOICES,
            "view_weights": VIEW_WEIGHTS, "full_views": FULL_VIEWS, "mu_water_per_mm": MU_WATER_PER_MM,
            "variants_per_phantom": variants, "streak_weight": STREAK_WEIGHT,
            "label_d_best_hu": LABEL_D_BEST_HU, "label_d_worst_hu": LABEL_D_WORST_HU,
            "kernel": "ramp x Hann", "geometry": "parallel beam, 360 degrees",
        },
    }
    (out / "simulation.json").write_text(json.dumps({"summary": summary, "slices": records}, indent=1))
    log(f"simulate: wrote {len(records)} slices to {out} in {elapsed:.0f} s "
        f"(label mean {summary['label_mean']}, SD {summary['label_sd']}, {summary['label_levels']} levels)")
    return summary
