"""Textured pixel phantoms of five body regions for simulator v2.

Version 1 drew smooth ellipses: every organ a flat plateau. Real slices are
not flat: liver has lobules and vessels, fat has septa, bowel holds mixed
contents and gas, lung is parenchyma threaded with vessels and airways, bone
is trabecular. A network trained on flat organs reads such texture as noise.
Here each phantom is a HU image on a square grid (in mm, x to the image's
right, y anterior) built from:

- shapes: ellipses and blobs (ellipses with a smooth random radius);
- fields: Gaussian random fields of a chosen correlation length (FFT-filtered
  white noise), scaled to a texture amplitude in HU;
- lines: thin networks where a band-pass field crosses zero (septa, lobule
  borders, vessels, trabeculae, sulci);
- dots: small discs (vessels in cross-section, calcifications).

Regions: head, neck, chest, abdomen, pelvis, with contrast phases
(none, arterial, portal venous), patient sizes giving a water-equivalent
diameter of about 150-450 mm, and a couch. Every random choice comes from the
generator passed in, so a phantom is reproducible for a seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

REGIONS = ("head", "neck", "chest", "abdomen", "pelvis")
REGION_WEIGHTS = (0.14, 0.10, 0.26, 0.30, 0.20)
PHASES = ("none", "arterial", "portal")
PHASE_WEIGHTS = (0.30, 0.20, 0.50)
MU_WATER_PER_MM = 0.0195


@dataclass
class TexturedPhantom:
    """A HU image of one slice and what it is made of.

    ``hu`` covers ``extent_mm`` x ``extent_mm`` centred on the scanner's axis;
    ``body`` marks the patient (not the couch).
    """

    hu: np.ndarray
    body: np.ndarray
    extent_mm: float
    region: str
    phase: str
    width_mm: float
    height_mm: float
    extras: dict = field(default_factory=dict)

    @property
    def pixel_mm(self) -> float:
        return self.extent_mm / self.hu.shape[0]

    @property
    def water_equivalent_diameter_mm(self) -> float:
        """Dw = 2 sqrt(A_w / pi), A_w the water-equivalent area (AAPM report 220)."""
        mu_rel = np.clip(self.hu[self.body] / 1000.0 + 1.0, 0.0, None)
        area = float(mu_rel.sum()) * self.pixel_mm ** 2
        return 2.0 * math.sqrt(area / math.pi)


class Canvas:
    """A HU grid with drawing helpers; every random draw goes through ``rng``."""

    def __init__(self, size: int, extent_mm: float, rng: np.random.Generator):
        self.size = size
        self.extent = extent_mm
        self.pixel = extent_mm / size
        self.rng = rng
        centre = (size - 1) / 2.0
        idx = (np.arange(size) - centre) * self.pixel
        self.x, self.y = np.meshgrid(idx, -idx)          # row 0 is anterior
        self.hu = np.full((size, size), -1000.0, dtype=np.float32)
        self.freq2 = (np.fft.fftfreq(size)[:, None] ** 2
                      + np.fft.rfftfreq(size)[None, :] ** 2) / self.pixel ** 2   # cycles/mm squared

    # shapes ---------------------------------------------------------------
    def ellipse(self, cx: float, cy: float, a: float, b: float, angle: float = 0.0) -> np.ndarray:
        c, s = math.cos(angle), math.sin(angle)
        dx, dy = self.x - cx, self.y - cy
        u, v = dx * c + dy * s, -dx * s + dy * c
        return (u / max(a, 0.3)) ** 2 + (v / max(b, 0.3)) ** 2 <= 1.0

    def blob(self, cx: float, cy: float, a: float, b: float, angle: float = 0.0,
             wobble: float = 0.15) -> np.ndarray:
        """An ellipse whose radius varies smoothly with angle (organs are not ellipses)."""
        c, s = math.cos(angle), math.sin(angle)
        dx, dy = self.x - cx, self.y - cy
        u, v = dx * c + dy * s, -dx * s + dy * c
        phi = np.arctan2(v, u)
        radius = np.ones_like(phi)
        for k in (2, 3, 4, 5):
            radius += wobble / k * self.rng.normal() * np.cos(k * phi + self.rng.uniform(0, 2 * math.pi))
        return (u / max(a, 0.3)) ** 2 + (v / max(b, 0.3)) ** 2 <= radius ** 2

    # textures -------------------------------------------------------------
    def field(self, scale_mm: float) -> np.ndarray:
        """Gaussian random field with correlation length ``scale_mm``, zero mean, unit SD."""
        white = self.rng.standard_normal((self.size, self.size)).astype(np.float32)
        sigma = scale_mm
        gain = np.exp(-2.0 * (math.pi * sigma) ** 2 * self.freq2)
        smooth = np.fft.irfft2(np.fft.rfft2(white) * gain, s=white.shape).astype(np.float32)
        return (smooth - smooth.mean()) / (smooth.std() + 1e-9)

    def lines(self, scale_mm: float, width: float = 0.08) -> np.ndarray:
        """0..1 network of thin lines where a field of scale ``scale_mm`` crosses zero."""
        f = self.field(scale_mm)
        return np.exp(-(f / width) ** 2).astype(np.float32)

    def dots(self, mask: np.ndarray, count: int, r_mm: tuple[float, float]) -> np.ndarray:
        """A mask of ``count`` small discs with centres inside ``mask``."""
        out = np.zeros_like(mask)
        rows, cols = np.nonzero(mask)
        if rows.size == 0:
            return out
        picks = self.rng.integers(0, rows.size, size=count)
        for p in picks:
            r = self.rng.uniform(*r_mm)
            cx, cy = self.x[rows[p], cols[p]], self.y[rows[p], cols[p]]
            half = int(math.ceil(r / self.pixel)) + 1
            r0, c0 = rows[p], cols[p]
            sl = (slice(max(r0 - half, 0), r0 + half + 1), slice(max(c0 - half, 0), c0 + half + 1))
            out[sl] |= (self.x[sl] - cx) ** 2 + (self.y[sl] - cy) ** 2 <= r * r
        return out

    # painting -------------------------------------------------------------
    def paint(self, mask: np.ndarray, hu: float, texture: np.ndarray | None = None,
              amplitude: float = 0.0) -> None:
        if texture is None:
            self.hu[mask] = hu
        else:
            self.hu[mask] = hu + amplitude * texture[mask]

    def fat(self, mask: np.ndarray) -> None:
        """Fat with fibrous septa and small vessels."""
        septa = self.lines(self.rng.uniform(4.0, 9.0), width=self.rng.uniform(0.05, 0.1))
        base = self.rng.uniform(-115.0, -85.0) + 6.0 * self.field(3.0)
        self.hu[mask] = (base + self.rng.uniform(60.0, 110.0) * septa)[mask]

    def soft_tissue(self, mask: np.ndarray, hu: float, amplitude: float, scale_mm: float,
                    lobules: float = 0.0) -> None:
        """Parenchyma: low-contrast texture plus (optionally) darker lobule borders."""
        texture = amplitude * self.field(scale_mm)
        if lobules:
            texture -= lobules * self.lines(scale_mm * 2.5, width=0.12)
        self.hu[mask] = (hu + texture)[mask]

    def muscle(self, mask: np.ndarray, hu: float) -> None:
        striation = self.field(1.2) * 4.0 + self.field(6.0) * 4.0
        fat_streaks = self.lines(5.0, width=0.05) * self.rng.uniform(20.0, 60.0)
        self.hu[mask] = (hu + striation - fat_streaks)[mask]

    def bone(self, mask: np.ndarray, cortex_mm: float, cortical_hu: float, cancellous_hu: float) -> None:
        """Cortical rim and trabecular interior (a network of bright struts in marrow)."""
        from scipy import ndimage

        inner = ndimage.binary_erosion(mask, iterations=max(1, int(round(cortex_mm / self.pixel))))
        self.hu[mask & ~inner] = cortical_hu + 60.0 * self.field(1.0)[mask & ~inner]
        struts = self.lines(self.rng.uniform(1.2, 2.2), width=0.25)
        marrow = cancellous_hu - 120.0
        self.hu[inner] = (marrow + self.rng.uniform(250.0, 450.0) * struts + 15.0 * self.field(2.0))[inner]

    def vessels(self, mask: np.ndarray, hu: float, density: float, scale_mm: float = 8.0) -> None:
        """Branching-looking vessels: zero-crossing lines, broken into segments, plus cross-sections."""
        lines = self.lines(scale_mm, width=0.06) * (self.field(scale_mm * 2) > 0.3 - density)
        dots = self.dots(mask, int(density * 60), (0.8, 3.0))
        weight = np.maximum(lines, dots.astype(np.float32))
        self.hu[mask] = (self.hu * (1 - weight) + hu * weight)[mask]

    def calcifications(self, mask: np.ndarray, count: int) -> None:
        spots = self.dots(mask, count, (0.5, 1.8))
        self.hu[spots] = self.rng.uniform(300.0, 1000.0)

    def bowel(self, cx: float, cy: float, a: float, b: float, contrast: bool) -> np.ndarray:
        """One loop: a wall, mixed contents (fluid, faeces with gas bubbles, oral contrast), gas."""
        outer = self.blob(cx, cy, a, b, self.rng.uniform(0, math.pi), wobble=0.25)
        inner = self.blob(cx, cy, a - 2.0, b - 2.0, self.rng.uniform(0, math.pi), wobble=0.2) & outer
        self.hu[outer] = self.rng.uniform(30.0, 60.0)
        kind = self.rng.choice(["fluid", "faeces", "gas", "contrast"], p=[0.3, 0.35, 0.2, 0.15 if contrast else 0.0]
                               / np.array([0.3, 0.35, 0.2, 0.15 if contrast else 0.0]).sum())
        if kind == "fluid":
            self.hu[inner] = (self.rng.uniform(0.0, 30.0) + 4.0 * self.field(3.0))[inner]
        elif kind == "faeces":
            mottled = self.field(1.5)
            contents = np.where(mottled > 1.2, -900.0, self.rng.uniform(-60.0, 40.0) + 25.0 * self.field(1.0))
            self.hu[inner] = contents[inner]
        elif kind == "contrast":
            self.hu[inner] = (self.rng.uniform(180.0, 450.0) + 20.0 * self.field(2.0))[inner]
        else:
            self.hu[inner] = -990.0
        # Air-fluid level: gas floats anteriorly (higher y) in a supine patient.
        if kind in ("fluid", "contrast") and self.rng.random() < 0.4:
            level = cy + self.rng.uniform(0.0, 0.6) * b
            self.hu[inner & (self.y > level)] = -990.0
        return outer


def _couch(canvas: Canvas, body_bottom: float) -> None:
    y0 = body_bottom - canvas.rng.uniform(4.0, 15.0)
    half = min(canvas.extent * 0.45, canvas.rng.uniform(200.0, 260.0))
    slab = (np.abs(canvas.x) < half) & (canvas.y < y0) & (canvas.y > y0 - canvas.rng.uniform(6.0, 12.0))
    canvas.hu[slab] = canvas.rng.uniform(100.0, 300.0)
    shell = (np.abs(canvas.x) < half) & (canvas.y < y0 - 14.0) & (canvas.y > y0 - 16.0)
    canvas.hu[shell] = canvas.rng.uniform(200.0, 500.0)


def _body_outline(c: Canvas, width: float, height: float) -> tuple[np.ndarray, float, float]:
    cx, cy = c.rng.uniform(-6, 6), c.rng.uniform(-6, 6)
    body = c.blob(cx, cy, width / 2, height / 2, c.rng.uniform(-0.05, 0.05), wobble=0.06)
    return body, cx, cy


def _vertebra(c: Canvas, cx: float, cy: float, r: float, canal: bool = True) -> np.ndarray:
    body = c.blob(cx, cy, r, r * 0.85, 0.0, wobble=0.05)
    arch = c.ellipse(cx, cy - r * 1.5, r * 0.9, r * 0.7) & ~c.ellipse(cx, cy - r * 1.45, r * 0.5, r * 0.45)
    spinous = c.ellipse(cx, cy - r * 2.3, r * 0.22, r * 0.7)
    bone = body | arch | spinous
    c.bone(bone, 1.5, c.rng.uniform(700, 1100), c.rng.uniform(150, 300))
    if canal:
        c.soft_tissue(c.ellipse(cx, cy - r * 1.45, r * 0.45, r * 0.4), 35.0, 3.0, 2.0)
    return bone


def _head(c: Canvas, phase: str) -> dict:
    rng = c.rng
    w, h = rng.uniform(135, 165), rng.uniform(165, 200)
    cx, cy, tilt = rng.uniform(-6, 6), rng.uniform(-6, 6), rng.uniform(-0.15, 0.15)
    body = c.ellipse(cx, cy, w / 2, h / 2, tilt)         # scalp, skull and brain share one outline
    c.soft_tissue(body, rng.uniform(20, 45), 5.0, 3.0)
    scalp = rng.uniform(2.5, 6.0)
    skull_out = c.ellipse(cx, cy, w / 2 - scalp, h / 2 - scalp, tilt)
    thick = rng.uniform(4.0, 8.0)
    brain = c.ellipse(cx, cy, w / 2 - scalp - thick, h / 2 - scalp - thick, tilt)
    c.bone(skull_out & ~brain, 1.6, rng.uniform(1100, 1600), rng.uniform(300, 600))
    # Grey and white matter, sulci with CSF near the surface, ventricles.
    grey, white = rng.uniform(34, 42), rng.uniform(24, 30)
    wm = c.field(6.0) > rng.uniform(-0.3, 0.4)
    matter = np.where(wm, white, grey) + 2.5 * c.field(1.5)
    c.hu[brain] = matter[brain]
    from scipy import ndimage
    cortex = brain & ~ndimage.binary_erosion(brain, iterations=int(12 / c.pixel))
    sulci = c.lines(4.0, width=0.08) > 0.5
    c.hu[cortex & sulci] = rng.uniform(2, 12)
    for side in (-1, 1):
        vent = c.blob(cx + side * rng.uniform(4, 9), cy + rng.uniform(-10, 15), rng.uniform(3, 7),
                      rng.uniform(12, 22), side * rng.uniform(0.1, 0.35), wobble=0.2)
        c.hu[vent] = rng.uniform(2, 10)
    if rng.random() < 0.4:        # a lower slice: sinuses and orbits of air and fat
        for side in (-1, 1):
            orbit = c.ellipse(cx + side * w * 0.2, cy + h * 0.35, w * 0.1, h * 0.08)
            c.fat(orbit & brain)
        sinus = c.blob(cx, cy + h * 0.25, w * 0.12, h * 0.08, 0, wobble=0.3)
        c.hu[sinus & brain] = -950
    if phase != "none":
        c.vessels(brain, rng.uniform(90, 160) if phase == "arterial" else rng.uniform(60, 100), 0.1, 10.0)
    c.calcifications(c.ellipse(cx, cy, 8, 8), int(rng.integers(0, 3)))   # pineal, plexus
    return {"body": body, "width": w, "height": h, "cy": cy}


def _neck(c: Canvas, phase: str) -> dict:
    rng = c.rng
    w, h = rng.uniform(120, 175), rng.uniform(110, 150)
    body, cx, cy = _body_outline(c, w, h)
    c.fat(body)
    inner = c.blob(cx, cy, w / 2 - rng.uniform(4, 12), h / 2 - rng.uniform(4, 10), 0, wobble=0.08) & body
    c.muscle(inner, rng.uniform(45, 60))
    _vertebra(c, cx, cy - h * 0.12, rng.uniform(8, 11))
    trachea = c.ellipse(cx, cy + h * 0.2, rng.uniform(7, 10), rng.uniform(6, 9))
    ring = c.ellipse(cx, cy + h * 0.2, 12, 11) & ~trachea
    c.soft_tissue(ring, 70, 8.0, 1.0)
    c.hu[trachea] = -990
    enh = {"none": (40, 45), "arterial": (250, 100), "portal": (160, 150)}[phase]
    for side in (-1, 1):
        thyroid = c.blob(cx + side * 16, cy + h * 0.2, 9, 13, side * 0.4, wobble=0.15)
        c.soft_tissue(thyroid & ~ring, rng.uniform(80, 120) + (40 if phase != "none" else 0), 8.0, 1.5)
        c.hu[c.ellipse(cx + side * 27, cy + h * 0.12, 4.5, 4.5)] = enh[0] + rng.normal(0, 10)
        c.hu[c.blob(cx + side * 33, cy + h * 0.16, 6, 5, 0, 0.2)] = enh[1] + rng.normal(0, 10)
    c.calcifications(c.ellipse(cx, cy + h * 0.12, 30, 6), int(rng.integers(0, 4)))
    return {"body": body, "width": w, "height": h, "cy": cy}


def _chest(c: Canvas, phase: str) -> dict:
    rng = c.rng
    w = rng.uniform(270, 450)
    h = w * rng.uniform(0.6, 0.75)
    body, cx, cy = _body_outline(c, w, h)
    c.fat(body)
    wall = rng.uniform(15, 30 + 0.06 * w)
    thorax = c.blob(cx, cy, w / 2 - wall, h / 2 - wall, 0, wobble=0.05) & body
    c.muscle(body & ~thorax & ~c.blob(cx, cy, w / 2 - wall * 0.5, h / 2 - wall * 0.5, 0, 0.05), 50)
    c.soft_tissue(thorax, 40, 5.0, 4.0)
    if rng.random() < 0.35:   # breasts: fibroglandular texture in fat
        for side in (-1, 1):
            breast = c.blob(cx + side * w * 0.22, cy + h * 0.45, w * 0.16, h * 0.22, 0, 0.2) & body
            glands = c.field(3.0) > rng.uniform(0.0, 1.0)
            c.fat(breast)
            c.hu[breast & glands] = (rng.uniform(20, 50) + 8 * c.field(1.5))[breast & glands]
    ta, tb = w / 2 - wall, h / 2 - wall
    # Lungs: parenchyma with a gravity gradient, vessels, airways.
    lungs = np.zeros_like(body)
    for side in (-1, 1):
        lungs |= c.blob(cx + side * ta * 0.48, cy - tb * 0.02, ta * 0.46, tb * 0.9, 0, 0.1) & thorax
    gradient = -870 + 40 * (-(c.y - cy) / tb)           # dependent lung is denser
    c.hu[lungs] = (gradient + rng.uniform(5, 20) * c.field(0.8))[lungs]
    c.vessels(lungs, rng.uniform(20, 60), 0.35, rng.uniform(6, 12))
    c.vessels(lungs, rng.uniform(0, 50), 0.2, rng.uniform(15, 25))
    for _ in range(int(rng.integers(3, 9))):            # airways: air with a thin wall
        pick = c.dots(lungs, 1, (1.5, 4.0))
        from scipy import ndimage
        wall_mask = ndimage.binary_dilation(pick, iterations=max(1, int(1.2 / c.pixel))) & ~pick
        c.hu[wall_mask & lungs] = 30
        c.hu[pick] = -990
    # Mediastinum: heart, aorta, spine, ribs.
    enh = {"none": 40, "arterial": rng.uniform(250, 400), "portal": rng.uniform(150, 200)}[phase]
    heart = c.blob(cx + ta * 0.1, cy + tb * 0.15, ta * 0.3, tb * 0.45, 0.4, 0.1) & thorax
    c.soft_tissue(heart & ~lungs, 45, 3.0, 3.0)
    if phase != "none":
        chamber = c.blob(cx + ta * 0.12, cy + tb * 0.2, ta * 0.17, tb * 0.25, 0.4, 0.25)
        c.hu[chamber & heart] = enh + rng.normal(0, 15)
    vr = rng.uniform(13, 18)
    vy = cy - tb + vr * 1.2
    aorta = c.ellipse(cx + vr * 1.6, vy + vr * 1.5, rng.uniform(10, 15), rng.uniform(10, 15))
    c.hu[aorta] = enh if phase != "none" else 42
    c.calcifications(aorta & ~c.ellipse(cx + vr * 1.6, vy + vr * 1.5, 8, 8), int(rng.integers(0, 5)))
    _vertebra(c, cx, vy, vr)
    for k in range(int(rng.integers(6, 11))):           # ribs around the thorax
        t = rng.uniform(0, 2 * math.pi)
        rx, ry = cx + (ta + wall * 0.4) * math.cos(t), cy + (tb + wall * 0.4) * math.sin(t)
        rib = c.ellipse(rx, ry, rng.uniform(5, 9), rng.uniform(3, 5), t + math.pi / 2)
        c.bone(rib & body, 1.0, rng.uniform(600, 1000), rng.uniform(150, 250))
    for side in (-1, 1):                                 # scapulae
        scap = c.blob(cx + side * ta * 0.7, cy - tb * 0.95, ta * 0.3, 5, side * 0.3, 0.2) & body
        c.bone(scap, 1.0, rng.uniform(600, 900), rng.uniform(150, 250))
    return {"body": body, "width": w, "height": h, "cy": cy}


def _abdominal_wall(c: Canvas, w: float, h: float) -> tuple[np.ndarray, np.ndarray, float, float, float, float]:
    rng = c.rng
    body, cx, cy = _body_outline(c, w, h)
    c.fat(body)
    fat = rng.uniform(8.0, 0.12 * w / 2 + 12.0)
    muscle = c.blob(cx, cy, w / 2 - fat, h / 2 - fat, 0, 0.05) & body
    c.muscle(muscle, rng.uniform(40, 60))
    wall = rng.uniform(8, 16)
    ca, cb = w / 2 - fat - wall, h / 2 - fat - wall
    cavity = c.blob(cx, cy + 0.05 * cb, ca, cb * 0.92, 0, 0.06) & muscle
    c.fat(cavity)                                          # visceral fat with septa and vessels
    c.vessels(cavity, rng.uniform(20, 60), 0.15, 10.0)
    return body, cavity, cx, cy, ca, cb


def _abdomen(c: Canvas, phase: str) -> dict:
    rng = c.rng
    w = rng.uniform(230, 450)
    h = w * rng.uniform(0.62, 0.82)
    body, cavity, cx, cy, ca, cb = _abdominal_wall(c, w, h)
    enh = {"none": (55, 45, 30, 40), "arterial": (70, 110, 180, 300),
           "portal": (110, 115, 160, 170)}[phase]      # liver, spleen, kidney, aorta
    liver = c.blob(cx - ca * 0.42, cy + cb * rng.uniform(-0.05, 0.2), ca * rng.uniform(0.45, 0.55),
                   cb * rng.uniform(0.55, 0.75), rng.uniform(-0.4, 0.1), 0.12) & cavity
    c.soft_tissue(liver, enh[0] + rng.normal(0, 5), rng.uniform(3, 7), rng.uniform(1.5, 3.0),
                  lobules=rng.uniform(3, 8))
    c.vessels(liver, enh[0] + (50 if phase == "portal" else -20), 0.25, rng.uniform(8, 14))
    for _ in range(int(rng.integers(0, 4))):          # low-contrast lesions
        lesion = c.dots(liver, 1, (3.0, 10.0))
        c.hu[lesion] -= rng.uniform(10, 30)
    spleen = c.blob(cx + ca * 0.62, cy - cb * 0.25, ca * 0.2, cb * 0.35, rng.uniform(0.3, 0.8), 0.15) & cavity
    mottle = 25.0 if phase == "arterial" else 4.0
    c.soft_tissue(spleen, enh[1], mottle, 3.0)
    vr = rng.uniform(16, 22)
    vy = cy - cb * 0.55
    for side in (-1, 1):
        kidney = c.blob(cx + side * vr * 2.6, vy + vr * 0.2, vr * 0.75, vr * 1.15, side * 0.5, 0.1) & cavity
        c.soft_tissue(kidney, enh[2], 5.0, 2.0)
        if phase == "arterial":                       # corticomedullary differentiation
            medulla = c.blob(cx + side * vr * 2.6, vy + vr * 0.2, vr * 0.45, vr * 0.8, side * 0.5, 0.3)
            c.hu[medulla & kidney] = 60 + 10 * c.field(2.0)[medulla & kidney]
        c.hu[c.ellipse(cx + side * vr * 2.8, vy + vr * 0.3, vr * 0.2, vr * 0.35) & kidney] = 5 + (
            rng.uniform(300, 800) if phase == "portal" and rng.random() < 0.2 else 0)
    for side in (-1, 1):
        c.muscle(c.blob(cx + side * vr * 1.5, vy - vr * 1.6, vr * 1.1, vr * 0.8, side * 0.3, 0.1), 50)
        c.muscle(c.blob(cx + side * vr * 1.3, vy + vr * 0.1, vr * 0.4, vr * 0.6, 0, 0.1) & cavity, 48)
    _vertebra(c, cx, vy, vr)
    aorta = c.ellipse(cx + vr * 0.6, vy + vr + 13, rng.uniform(9, 13), rng.uniform(9, 13))
    c.hu[aorta] = enh[3] + rng.normal(0, 8)
    c.calcifications(aorta & ~c.ellipse(cx + vr * 0.6, vy + vr + 13, 7, 7), int(rng.integers(0, 6)))
    c.hu[c.blob(cx - vr * 0.8, vy + vr + 14, 11, 8, 0, 0.2)] = enh[3] * 0.6 + 20     # IVC
    for _ in range(int(rng.integers(3, 9))):          # bowel loops anteriorly
        bx = cx + rng.uniform(-0.2, 0.7) * ca
        by = cy + rng.uniform(0.0, 0.6) * cb
        c.bowel(bx, by, rng.uniform(8, 22), rng.uniform(8, 18), contrast=rng.random() < 0.4)
    return {"body": body, "width": w, "height": h, "cy": cy}


def _pelvis(c: Canvas, phase: str) -> dict:
    rng = c.rng
    w = rng.uniform(250, 460)
    h = w * rng.uniform(0.55, 0.75)
    body, cavity, cx, cy, ca, cb = _abdominal_wall(c, w, h)
    for side in (-1, 1):                                # gluteal muscles, iliac wings, femoral vessels
        c.muscle(c.blob(cx + side * ca * 0.6, cy - cb * 0.55, ca * 0.35, cb * 0.35, side * 0.4, 0.1) & body, 50)
        ilium = c.blob(cx + side * ca * 0.65, cy - cb * 0.15, ca * 0.2, cb * 0.42, side * -0.5, 0.15)
        c.bone(ilium & body, rng.uniform(2.0, 3.5), rng.uniform(700, 1100), rng.uniform(150, 300))
        enh = {"none": 40, "arterial": 300, "portal": 170}[phase]
        c.hu[c.ellipse(cx + side * ca * 0.55, cy + cb * 0.25, 5, 5)] = enh + rng.normal(0, 10)
        c.hu[c.ellipse(cx + side * ca * 0.62, cy + cb * 0.22, 7, 6)] = enh * 0.8 + rng.normal(0, 10)
    sacrum = c.blob(cx, cy - cb * 0.6, ca * 0.25, cb * 0.22, 0, 0.1)
    c.bone(sacrum & body, 1.5, rng.uniform(600, 900), rng.uniform(120, 250))
    bladder = c.blob(cx, cy + cb * 0.35, ca * rng.uniform(0.15, 0.3), cb * rng.uniform(0.2, 0.4), 0, 0.1) & cavity
    c.hu[bladder] = rng.uniform(0, 20) if rng.random() < 0.8 else rng.uniform(200, 600)
    for _ in range(int(rng.integers(2, 7))):
        bx = cx + rng.uniform(-0.6, 0.6) * ca
        by = cy + rng.uniform(-0.2, 0.2) * cb
        c.bowel(bx, by, rng.uniform(10, 25), rng.uniform(10, 20), contrast=rng.random() < 0.4)
    return {"body": body, "width": w, "height": h, "cy": cy}


_BUILDERS = {"head": _head, "neck": _neck, "chest": _chest, "abdomen": _abdomen, "pelvis": _pelvis}
# Largest lateral extent each region can reach (mm), so the grid always holds the body.
_MAX_EXTENT = {"head": 170.0, "neck": 180.0, "chest": 470.0, "abdomen": 470.0, "pelvis": 480.0}


def make_textured_phantom(rng: np.random.Generator, region: str | None = None,
                          extent_mm: float | None = None, size: int = 512,
                          phase: str | None = None) -> TexturedPhantom:
    """Draw one textured phantom of ``region`` (random when None) on a ``size`` grid.

    ``extent_mm`` is the side of the square grid; it must hold the body and
    couch (default: the region's largest body plus a margin).
    """
    region = region or str(rng.choice(REGIONS, p=REGION_WEIGHTS))
    if region not in _BUILDERS:
        raise ValueError(f"unknown region {region!r}; choose one of {', '.join(REGIONS)}")
    phase = phase or str(rng.choice(PHASES, p=PHASE_WEIGHTS))
    extent = extent_mm or _MAX_EXTENT[region] + 60.0
    canvas = Canvas(size, extent, rng)
    info = _BUILDERS[region](canvas, phase)
    body = info["body"]
    canvas.hu[~body] = -1000.0
    body_bottom = float(canvas.y[body].min()) if body.any() else -extent / 3
    if region != "head" or rng.random() < 0.5:
        _couch(canvas, body_bottom)
    hu = np.clip(canvas.hu, -1000.0, 3000.0).astype(np.float32)
    return TexturedPhantom(hu=hu, body=body, extent_mm=extent, region=region, phase=phase,
                           width_mm=float(info["width"]), height_mm=float(info["height"]))
