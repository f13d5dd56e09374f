"""Physics beside the network: global noise level, water-equivalent diameter, SSDE, flags.

Measured on the HU slice at its native resolution, with its Pixel Spacing,
using NumPy only (no SciPy in the runtime). See ``docs/physics.md`` for the
parameters, their sources and the limits.

- :func:`global_noise_level`  Christianson et al. (AJR 2015) style: local SD in
  a ~6 mm square over soft tissue, mode of its histogram.
- :func:`water_equivalent_diameter`  AAPM TG-220: the largest connected body
  region, holes filled, table removed; ``Dw = 2 sqrt((mean/1000 + 1) A / pi)``.
- :func:`ssde_conversion_factor`  AAPM Reports 204/220 exponential fits, 32 cm
  or 16 cm CTDI phantom.
- :func:`measure_slice`  all of it for one slice, never raising for bad input:
  what cannot be computed is None and ``note`` says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from deltaiqa_lite.errors import ModelError
from deltaiqa_lite.label_rule import continuous_score

__all__ = [
    "NoiseLevel", "WaterEquivalentDiameter", "PhysicsResult",
    "global_noise_level", "water_equivalent_diameter", "ssde_conversion_factor",
    "SliceMeasurement", "measure_slice", "physics_flags", "uses_16cm_phantom",
    "FLAG_SCORE_NOISE_DISAGREE", "FLAG_BODY_TRUNCATED", "FLAG_OUTSIDE_TRAINING",
    "DISAGREE_THRESHOLD", "TrainingDomain", "V1_TRAINING_DOMAIN",
]

# -- global noise level (Christianson et al., AJR 2015; 205:W93-W99) --------------
NOISE_BOX_MM = 6.0              # side of the square in which the local SD is taken
SOFT_TISSUE_HU = (0.0, 150.0)   # local mean range counted as soft tissue (enhanced parenchyma included)
LOG_BIN_WIDTH = 0.01            # histogram bins: 1 % wide in ln(SD)
MODE_SMOOTH_BINS = 3.0          # Gaussian smoothing of the histogram (SD in bins) before the mode
MIN_SOFT_TISSUE_MM2 = 500.0     # less soft tissue than this: no noise level

# -- water-equivalent diameter (AAPM Report 220, 2014) -----------------------------
BODY_THRESHOLD_HU = -500.0      # body above this; halfway between air and water
OUTSIDE_FOV_HU = -1500.0        # far below air (noise never gets there): padding outside the reconstruction circle
MIN_BODY_MM2 = 2000.0           # smaller "bodies" (a 50 mm circle) are not a patient
MAX_TRUNCATED_FRACTION = 0.25   # body contour on the field edge beyond this share: no Dw

# -- SSDE (AAPM Report 204, 2011; Report 220 for Dw in place of effective diameter) --
SSDE_FIT_32CM = (3.704369, 0.03671937)   # f = a exp(-b Dw[cm])
SSDE_FIT_16CM = (1.874799, 0.03871313)
PHANTOM_16CM_CODES = {"113690"}          # IEC Head Dosimetry Phantom (CID 4052)
PHANTOM_32CM_CODES = {"113691"}          # IEC Body Dosimetry Phantom
# Body parts whose CTDIvol refers to the 16 cm phantom when (0018,9346) is absent. Neck
# is left out: scanners differ (many use the 32 cm phantom there).
HEAD_BODY_PARTS = {"HEAD", "BRAIN", "SKULL", "IAC", "ORBIT", "SINUS", "EAR"}

# -- flags -----------------------------------------------------------------------
FLAG_SCORE_NOISE_DISAGREE = "score-noise-disagree"
FLAG_BODY_TRUNCATED = "body-truncated"
FLAG_OUTSIDE_TRAINING = "outside-training"
DISAGREE_THRESHOLD = 1.0
# The v1 training domain: what models trained on simulator v1 saw (convert/simulate.py
# make_phantom): abdominal slices, lateral width 250-420 mm at AP/lateral 0.62-0.82, i.e.
# an equal-area diameter of 197-380 mm, Dw 199-380 mm over the 300 phantoms of a
# 1,200-slice set; fields of view 320-450 mm. Margins of about 10 mm on both (a build
# test, tests/convert/test_domain.py, keeps them around what v1 draws). Used for models
# whose card carries no training.domain (models built before it was recorded, site
# models); newer cards carry their own (convert/domain.py), see TrainingDomain.
TRAINING_DW_MM = (180.0, 390.0)
TRAINING_FOV_MM = (300.0, 470.0)
TRAINING_BODY_PARTS = {"ABDOMEN", "PELVIS", "ABDOMENPELVIS", "ABDOMEN_PELVIS", "CHESTABDOMEN",
                       "CHESTABDOMENPELVIS", "CHEST_ABDOMEN_PELVIS", "LIVER", "KIDNEY", "PANCREAS",
                       "TRUNK", "BODY", "WHOLEBODY"}


@dataclass(frozen=True)
class TrainingDomain:
    """What a model was trained on, as the ``outside-training`` flag checks it.

    ``body_parts``: (0018,0015) Body Part Examined values inside (upper case, no
    spaces); ``water_equivalent_diameter_mm`` and ``field_of_view_mm``: closed
    (low, high) ranges; ``head``: head slices were trained on, so a 16 cm CTDI
    phantom alone does not make a slice outside; ``source``: where it came from.
    """

    body_parts: frozenset[str]
    water_equivalent_diameter_mm: tuple[float, float]
    field_of_view_mm: tuple[float, float]
    head: bool = False
    source: str = ""

    @classmethod
    def from_card(cls, card: dict, source: str = "model card") -> TrainingDomain:
        """The card's ``training.domain``, or :data:`V1_TRAINING_DOMAIN` when it has none.

        Raises
        ------
        ModelError
            ``training.domain`` is present but malformed (``source`` names the model).
        """
        training = card.get("training")
        domain = training.get("domain") if isinstance(training, dict) else None
        if domain is None:
            return V1_TRAINING_DOMAIN
        where = f"{source}: model card training.domain"
        if not isinstance(domain, dict):
            raise ModelError(f"{where} is {domain!r}; expected a JSON object")
        parts = domain.get("body_parts")
        if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
            raise ModelError(f"{where}.body_parts is {parts!r}; expected a list of Body Part Examined values")
        head = domain.get("head")
        if not isinstance(head, bool):
            raise ModelError(f"{where}.head is {head!r}; expected true or false")
        return cls(frozenset(_normal_body_part(p) for p in parts),
                   _card_range(domain, "water_equivalent_diameter_mm", where),
                   _card_range(domain, "field_of_view_mm", where), head,
                   str(domain.get("source", "model card")))


def _card_range(domain: dict, key: str, where: str) -> tuple[float, float]:
    value = domain.get(key)
    if (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                    for v in value) and value[0] <= value[1]):
        return float(value[0]), float(value[1])
    raise ModelError(f"{where}.{key} is {value!r}; expected [low, high] in mm with low <= high")


#: The domain of models trained on simulator v1, for cards without ``training.domain``.
V1_TRAINING_DOMAIN = TrainingDomain(frozenset(TRAINING_BODY_PARTS), TRAINING_DW_MM, TRAINING_FOV_MM,
                                    head=False, source="v1 fallback: deltaiqa_lite.physics TRAINING_* "
                                                       "(simulator v1, abdomen only)")


@dataclass
class NoiseLevel:
    """Global noise level of one slice, or why there is none."""

    noise_hu: float | None
    soft_tissue_mm2: float
    box_px: tuple[int, int]
    note: str | None = None


@dataclass
class WaterEquivalentDiameter:
    """TG-220 water-equivalent diameter of one slice, or why there is none."""

    dw_mm: float | None
    area_mm2: float
    mean_hu: float | None
    truncated: bool
    truncated_fraction: float
    note: str | None = None


@dataclass
class PhysicsResult:
    """Everything physics says about one slice (the ``SliceResult`` fields of the same names)."""

    noise_hu: float | None = None
    water_equivalent_diameter_mm: float | None = None
    ctdivol_mgy: float | None = None
    ssde_mgy: float | None = None
    noise_score: float | None = None
    flags: list[str] = field(default_factory=list)
    physics_note: str | None = None


#: The physics keys of a result, the same in every output format and in SliceResult.
PHYSICS_FIELDS = ("noise_hu", "water_equivalent_diameter_mm", "ctdivol_mgy", "ssde_mgy", "noise_score",
                  "flags", "physics_note")
#: Flag codes of a slice joined in one text field (CSV, QA log); codes never contain it.
FLAG_SEPARATOR = ";"


def _even(hu: np.ndarray) -> np.ndarray:
    """The plane as float32 with an even number of rows and columns (an odd last one repeated)."""
    plane = np.asarray(hu, dtype=np.float32)
    if plane.shape[0] % 2 or plane.shape[1] % 2:
        plane = np.pad(plane, ((0, plane.shape[0] % 2), (0, plane.shape[1] % 2)), mode="edge")
    return plane


def _block_sums(values: np.ndarray) -> np.ndarray:
    """Sums over 2 x 2 pixel blocks of an even-sized plane."""
    pairs = values[0::2] + values[1::2]
    return pairs[:, 0::2] + pairs[:, 1::2]


def _window_sums(blocks: np.ndarray, k_rows: int, k_cols: int) -> np.ndarray:
    """Sums over every k_rows x k_cols window of blocks (valid positions), by shifted adds.

    Shift-and-add costs k additions of a (quarter-size) plane per axis: for the
    3-8 blocks of a 6 mm window that is cheaper than an integral image, whose
    cumulative sums along axis 0 cost more than the whole measurement here
    (measured: 6 ms against 0.4 ms for a 512 x 512 slice).
    """
    rows = blocks.shape[0] - k_rows + 1
    cols = blocks.shape[1] - k_cols + 1
    along = blocks[0:rows].copy()
    for shift in range(1, k_rows):
        along += blocks[shift:shift + rows]
    window = along[:, 0:cols].copy()
    for shift in range(1, k_cols):
        window += along[:, shift:shift + cols]
    return window


def global_noise_level(hu: np.ndarray, pixel_spacing_mm: tuple[float, float], *,
                       box_mm: float = NOISE_BOX_MM,
                       soft_tissue_hu: tuple[float, float] = SOFT_TISSUE_HU) -> NoiseLevel:
    """Global noise level: mode of the local-SD histogram over soft tissue.

    Parameters
    ----------
    hu : numpy.ndarray
        2-D slice in HU at native resolution.
    pixel_spacing_mm : (row, column) spacing in mm
        Sets the window: the even number of pixels closest to ``box_mm`` on
        each axis (at least 4).
    box_mm : float, default 6
        Side of the square window (Christianson et al. 2015 used a kernel of
        about this size).
    soft_tissue_hu : (low, high), default (0, 150)
        A window counts as soft tissue when its mean lies in this range.

    Returns
    -------
    NoiseLevel
        ``noise_hu`` None (and ``note`` the reason) when soft tissue covers less
        than 500 mm^2.

    Notes
    -----
    The local SD (sample SD, n - 1) is taken in windows whose corners lie on a
    2-pixel grid (windows are whole 2 x 2 blocks, summed by shifted adds).
    Its histogram has bins 1 % wide in ln(SD), smoothed by a Gaussian of 3
    bins; the mode is refined by a parabola through the peak bin and its
    neighbours. For white Gaussian noise of SD sigma, ln(s) of a window of n
    pixels has its mode at exactly sigma (the density of ln chi_k peaks at
    sqrt(k)), so the estimate is unbiased there at any window size.
    """
    hu = np.asarray(hu)
    if hu.ndim != 2:
        return NoiseLevel(None, 0.0, (0, 0), f"expected a 2-D slice, got shape {hu.shape}")
    centre_hu = 0.5 * (soft_tissue_hu[0] + soft_tissue_hu[1])
    centred = _even(hu) - np.float32(centre_hu)
    return _noise_level(centred, _block_sums(centred), pixel_spacing_mm, box_mm=box_mm,
                        soft_tissue_hu=soft_tissue_hu)


def _noise_level(centred: np.ndarray, blocks: np.ndarray, pixel_spacing_mm: tuple[float, float], *,
                 box_mm: float, soft_tissue_hu: tuple[float, float]) -> NoiseLevel:
    """:func:`global_noise_level` on a plane already centred on the soft-tissue range, and its block sums."""
    row_mm, col_mm = (float(v) for v in pixel_spacing_mm)
    k_rows = max(2, int(round(box_mm / (2.0 * row_mm))))
    k_cols = max(2, int(round(box_mm / (2.0 * col_mm))))
    box = (2 * k_rows, 2 * k_cols)
    if centred.shape[0] < box[0] + 2 or centred.shape[1] < box[1] + 2:
        return NoiseLevel(None, 0.0, box, f"slice of shape {centred.shape} is smaller than the "
                                          f"{box[0]} x {box[1]} pixel noise window")
    n = box[0] * box[1]
    # The plane is offset by the soft-tissue centre, which keeps float32 sums of
    # squares exact enough where it matters (soft-tissue windows hold small deviations).
    sums = _window_sums(blocks, k_rows, k_cols)
    squares = _window_sums(_block_sums(centred * centred), k_rows, k_cols)
    half_width = np.float32(0.5 * (soft_tissue_hu[1] - soft_tissue_hu[0]) * n)
    tissue = np.abs(sums) <= half_width
    # Each window corner stands for one 2 x 2 block of soft tissue.
    tissue_mm2 = float(np.count_nonzero(tissue)) * 4.0 * row_mm * col_mm
    if tissue_mm2 < MIN_SOFT_TISSUE_MM2:
        return NoiseLevel(None, tissue_mm2, box,
                          f"soft tissue ({soft_tissue_hu[0]:g}..{soft_tissue_hu[1]:g} HU in "
                          f"{box_mm:g} mm windows) covers {tissue_mm2:.0f} mm^2; at least "
                          f"{MIN_SOFT_TISSUE_MM2:.0f} mm^2 needed for a noise level")
    window_sums = sums[tissue].astype(np.float64)
    variance = (squares[tissue].astype(np.float64) - window_sums * window_sums / n) / (n - 1)
    variance = variance[variance > 1e-6]
    if variance.size == 0:
        return NoiseLevel(0.0, tissue_mm2, box, "soft tissue has no noise at all (SD 0)")
    log_sd = 0.5 * np.log(variance)
    low, high = float(log_sd.min()), float(log_sd.max())
    bins = max(1, int(math.ceil((high - low) / LOG_BIN_WIDTH)) + 1)
    counts = np.bincount(((log_sd - low) / LOG_BIN_WIDTH).astype(np.intp), minlength=bins)
    radius = int(4 * MODE_SMOOTH_BINS)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / MODE_SMOOTH_BINS) ** 2)
    smooth = np.convolve(np.pad(counts.astype(np.float64), radius), kernel, mode="valid")
    peak = int(np.argmax(smooth))
    offset = 0.0
    if 0 < peak < smooth.size - 1:
        left, centre, right = smooth[peak - 1], smooth[peak], smooth[peak + 1]
        curvature = left - 2.0 * centre + right
        if curvature < 0:
            offset = 0.5 * (left - right) / curvature
    mode_log = low + (peak + 0.5 + offset) * LOG_BIN_WIDTH
    return NoiseLevel(float(math.exp(mode_log)), tissue_mm2, box)


# ----------------------------------------------------------------- connected components

def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of True along rows: (row, start, end) with ``end`` exclusive, row-major order."""
    rows, cols = mask.shape
    padded = np.zeros((rows, cols + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    flat = padded.ravel()
    # Every row starts and ends with a padding zero, so changes alternate start, end.
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts, ends = changes[0::2], changes[1::2]
    row = starts // (cols + 2)
    return row, starts - row * (cols + 2) - 1, ends - row * (cols + 2) - 1


def _label_runs(row: np.ndarray, start: np.ndarray, end: np.ndarray, width: int,
                diagonal: bool) -> np.ndarray:
    """Connected-component label (smallest run index of the component) of each run.

    Runs in consecutive rows touch when their column ranges overlap (4-connected)
    or overlap or meet at a corner (``diagonal``: 8-connected). Components come
    from vectorised union-find: hook larger roots to smaller ones along the
    edges, then jump pointers until every run points at its root; a few rounds
    suffice because pointer jumping halves path lengths each time.
    """
    count = row.size
    if count == 0:
        return np.zeros(0, dtype=np.intp)
    key = width + 2
    start_key = row * key + start
    end_key = row * key + end
    reach = 1 if diagonal else 0
    # Runs of row r+1 touching run i: end > start_i - reach and start < end_i + reach.
    first = np.searchsorted(end_key, (row + 1) * key + start - reach, side="right")
    stop = np.searchsorted(start_key, (row + 1) * key + end + reach, side="left")
    per_run = np.maximum(stop - first, 0)
    total = int(per_run.sum())
    parent = np.arange(count, dtype=np.intp)
    if total == 0:
        return parent
    a = np.repeat(np.arange(count, dtype=np.intp), per_run)
    offsets = np.repeat(first - (np.cumsum(per_run) - per_run), per_run)
    b = offsets + np.arange(total, dtype=np.intp)
    while True:
        pa, pb = parent[a], parent[b]
        differ = pa != pb
        if not differ.any():
            return parent
        low, high = np.minimum(pa[differ], pb[differ]), np.maximum(pa[differ], pb[differ])
        np.minimum.at(parent, high, low)
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped


def _gaps(row: np.ndarray, start: np.ndarray, end: np.ndarray, rows: int, cols: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of the complement of the given runs (row-major order), as (row, start, end)."""
    count = row.size
    # Before each run: from the end of the previous run of its row (or 0) to its start.
    same_row = np.zeros(count, dtype=bool)
    same_row[1:] = row[1:] == row[:-1]
    previous_end = np.zeros(count, dtype=np.intp)
    previous_end[1:] = end[:-1]
    previous_end[~same_row] = 0
    # After the last run of each row (or the whole row when it has none): to the border.
    last = np.ones(count, dtype=bool)
    last[:-1] = row[1:] != row[:-1]
    tail_start = np.zeros(rows, dtype=np.intp)
    tail_start[row[last]] = end[last]
    gap_row = np.concatenate([row, np.arange(rows)])
    gap_start = np.concatenate([previous_end, tail_start])
    gap_end = np.concatenate([start, np.full(rows, cols, dtype=np.intp)])
    keep = gap_end > gap_start
    gap_row, gap_start, gap_end = gap_row[keep], gap_start[keep], gap_end[keep]
    order = np.argsort(gap_row * (cols + 2) + gap_start, kind="stable")
    return gap_row[order], gap_start[order], gap_end[order]


def water_equivalent_diameter(hu: np.ndarray, pixel_spacing_mm: tuple[float, float], *,
                              threshold_hu: float = BODY_THRESHOLD_HU) -> WaterEquivalentDiameter:
    """AAPM TG-220 water-equivalent diameter of the patient in one axial slice.

    Parameters
    ----------
    hu : numpy.ndarray
        2-D slice in HU at native resolution.
    pixel_spacing_mm : (row, column) spacing in mm
    threshold_hu : float, default -500
        Body pixels are above it.

    Returns
    -------
    WaterEquivalentDiameter
        ``dw_mm`` is None (``note`` says why) when there is no body, or when
        the body runs off the field of view over more than a quarter of its
        contour (a body filling the field); otherwise ``truncated`` says
        whether it touches the field's edge at all, in which case ``dw_mm`` is
        a lower bound.

    Notes
    -----
    The plane is measured as means of 2 x 2 pixel blocks: a quarter of the
    work, and air contributes nothing to the water-equivalent area, so only
    edge blocks with less than half their area in the body (mean below
    -500 HU) lose their share: about 0.1 % of Dw for a 300 mm body at 0.7 mm
    pixels. The body is the largest 4-connected region above the threshold (a table
    separated from the patient by air is a different region and is dropped),
    with every region it encloses filled in (lungs, bowel gas: background
    regions, 8-connected, that do not reach the image border). Then
    ``Aw = sum over the region of (HU/1000 + 1) * pixel area`` and
    ``Dw = 2 sqrt(Aw / pi)``, i.e. TG-220's ``2 sqrt((mean/1000 + 1) A / pi)``.
    """
    plane = _even(hu)
    means = _block_sums(plane) * np.float32(0.25)
    return _water_equivalent_diameter(means, (2.0 * float(pixel_spacing_mm[0]), 2.0 * float(pixel_spacing_mm[1])),
                                      threshold_hu=threshold_hu)


def _water_equivalent_diameter(hu: np.ndarray, pixel_spacing_mm: tuple[float, float], *,
                               threshold_hu: float) -> WaterEquivalentDiameter:
    """:func:`water_equivalent_diameter` on a plane (of 2 x 2 block means) with its spacing."""
    row_mm, col_mm = (float(v) for v in pixel_spacing_mm)
    pixel_mm2 = row_mm * col_mm
    rows, cols = hu.shape
    row, start, end = _runs(hu > threshold_hu)
    nothing = WaterEquivalentDiameter(None, 0.0, None, False, 0.0)
    if row.size == 0:
        nothing.note = f"no body: no pixel above {threshold_hu:g} HU"
        return nothing
    labels = _label_runs(row, start, end, cols, diagonal=False)
    area_px = np.bincount(labels, weights=(end - start), minlength=row.size)
    body = int(np.argmax(area_px))
    if area_px[body] * pixel_mm2 < MIN_BODY_MM2:
        nothing.area_mm2 = float(area_px[body] * pixel_mm2)
        nothing.note = (f"no body: the largest region above {threshold_hu:g} HU covers "
                        f"{nothing.area_mm2:.0f} mm^2 (less than {MIN_BODY_MM2:.0f} mm^2)")
        return nothing
    keep = labels == body
    b_row, b_start, b_end = row[keep], start[keep], end[keep]
    # Holes: background regions of the complement of the body that never reach the border.
    g_row, g_start, g_end = _gaps(b_row, b_start, b_end, rows, cols)
    g_labels = _label_runs(g_row, g_start, g_end, cols, diagonal=True)
    border = (g_row == 0) | (g_row == rows - 1) | (g_start == 0) | (g_end == cols)
    outside = np.zeros(g_row.size, dtype=bool)
    outside[np.unique(g_labels[border])] = True
    hole = ~outside[g_labels]
    f_row = np.concatenate([b_row, g_row[hole]])
    f_start = np.concatenate([b_start, g_start[hole]])
    f_end = np.concatenate([b_end, g_end[hole]])
    # Sum of HU over the runs only: reduceat over [start, end) boundaries of the flat plane.
    bounds = np.empty(2 * f_row.size, dtype=np.intp)
    bounds[0::2] = f_row * cols + f_start
    bounds[1::2] = f_row * cols + f_end
    order = np.argsort(bounds[0::2], kind="stable")
    bounds = np.column_stack([bounds[0::2][order], bounds[1::2][order]]).ravel()
    flat = np.ascontiguousarray(hu).ravel()
    if bounds[-1] == flat.size:  # reduceat needs indices inside the array
        flat = np.append(flat, np.float32(0))
    hu_sum = float(np.add.reduceat(flat, bounds, dtype=np.float64)[0::2].sum())
    area_px_filled = float((f_end - f_start).sum())
    mean_hu = hu_sum / area_px_filled
    area_mm2 = area_px_filled * pixel_mm2
    water_area = (mean_hu / 1000.0 + 1.0) * area_mm2
    # Truncation: body pixels on the image border, or next to padding outside the
    # reconstruction circle (values below air), along rows.
    contact_mm = float(np.count_nonzero(b_start == 0) + np.count_nonzero(b_end == cols)) * row_mm
    edge_rows = (b_row == 0) | (b_row == rows - 1)
    contact_mm += float((b_end[edge_rows] - b_start[edge_rows]).sum()) * col_mm
    inner_left = b_start > 0
    inner_right = b_end < cols
    contact_mm += float(np.count_nonzero(hu[b_row[inner_left], b_start[inner_left] - 1] < OUTSIDE_FOV_HU)
                        + np.count_nonzero(hu[b_row[inner_right], b_end[inner_right]] < OUTSIDE_FOV_HU)
                        ) * row_mm
    # Share of the contour: contact length over the circumference of the equal-area circle.
    circumference = 2.0 * math.sqrt(math.pi * area_mm2)
    fraction = contact_mm / circumference
    truncated = contact_mm > 0
    if fraction > MAX_TRUNCATED_FRACTION:
        return WaterEquivalentDiameter(None, area_mm2, mean_hu, True, fraction,
                                       f"body fills the field of view ({100 * fraction:.0f} % of its "
                                       f"contour on the edge, limit {100 * MAX_TRUNCATED_FRACTION:.0f} %); "
                                       "no water-equivalent diameter")
    if water_area <= 0:
        return WaterEquivalentDiameter(None, area_mm2, mean_hu, truncated, fraction,
                                       f"body mean {mean_hu:.0f} HU gives no water-equivalent area")
    dw = 2.0 * math.sqrt(water_area / math.pi)
    note = None
    if truncated:
        note = (f"body touches the edge of the field of view ({contact_mm:.0f} mm of contour); "
                "water-equivalent diameter is a lower bound")
    return WaterEquivalentDiameter(dw, area_mm2, mean_hu, truncated, fraction, note)


# ----------------------------------------------------------------- SSDE

def uses_16cm_phantom(ctdi_phantom: str | None, body_part: str | None) -> bool:
    """Whether CTDIvol refers to the 16 cm (head) phantom.

    (0018,9346) CTDI Phantom Type Code Sequence decides when present
    (113690 IEC Head, 113691 IEC Body); otherwise a head body part
    (0018,0015) means 16 cm, anything else 32 cm.
    """
    if ctdi_phantom in PHANTOM_16CM_CODES:
        return True
    if ctdi_phantom in PHANTOM_32CM_CODES:
        return False
    return _normal_body_part(body_part) in HEAD_BODY_PARTS


def _normal_body_part(body_part: str | None) -> str:
    return "".join(str(body_part or "").upper().split())


def ssde_conversion_factor(dw_mm: float, *, phantom_16cm: bool = False) -> float:
    """AAPM Report 204 conversion factor f from CTDIvol to SSDE at water-equivalent diameter ``dw_mm``.

    32 cm phantom: ``f = 3.704369 exp(-0.03671937 Dw[cm])``;
    16 cm phantom: ``f = 1.874799 exp(-0.03871313 Dw[cm])``
    (Report 204, with Dw for the effective diameter as Report 220 recommends).
    """
    a, b = SSDE_FIT_16CM if phantom_16cm else SSDE_FIT_32CM
    return a * math.exp(-b * dw_mm / 10.0)


# ----------------------------------------------------------------- flags and the whole slice

def physics_flags(result: PhysicsResult, score: float | None, *, truncated: bool = False,
                  body_part: str | None = None, phantom_16cm: bool = False,
                  field_of_view_mm: float | None = None,
                  domain: TrainingDomain | None = None) -> list[str]:
    """The flag codes of one slice (see ``docs/physics.md`` for their meanings).

    ``outside-training``: the slice is not what the model was trained on
    (``domain``, the model card's; None is :data:`V1_TRAINING_DOMAIN`): a 16 cm
    CTDI phantom when the domain has no head, a body part given and not in the
    domain's, or Dw or the field of view outside the domain's ranges.
    """
    domain = V1_TRAINING_DOMAIN if domain is None else domain
    flags: list[str] = []
    if score is not None and result.noise_score is not None \
            and abs(score - result.noise_score) > DISAGREE_THRESHOLD:
        flags.append(FLAG_SCORE_NOISE_DISAGREE)
    if truncated:
        flags.append(FLAG_BODY_TRUNCATED)
    part = _normal_body_part(body_part)
    dw = result.water_equivalent_diameter_mm
    dw_range, fov_range = domain.water_equivalent_diameter_mm, domain.field_of_view_mm
    outside = ((phantom_16cm and not domain.head) or (part and part not in domain.body_parts)
               or (dw is not None and not dw_range[0] <= dw <= dw_range[1])
               or (field_of_view_mm is not None and not fov_range[0] <= field_of_view_mm <= fov_range[1]))
    if outside:
        flags.append(FLAG_OUTSIDE_TRAINING)
    return flags


@dataclass
class SliceMeasurement:
    """Physics of one slice before the network's score is known (flags need the score)."""

    result: PhysicsResult
    truncated: bool = False
    phantom_16cm: bool = False
    body_part: str | None = None
    field_of_view_mm: float | None = None

    def finish(self, score: float | None, domain: TrainingDomain | None = None) -> PhysicsResult:
        """The result with its flags, given the network's score (None when not scored).

        ``domain`` is the model's training domain (:meth:`TrainingDomain.from_card`);
        None is :data:`V1_TRAINING_DOMAIN`.
        """
        result = PhysicsResult(**{**self.result.__dict__, "flags": []})
        result.flags = physics_flags(result, score, truncated=self.truncated, body_part=self.body_part,
                                     phantom_16cm=self.phantom_16cm,
                                     field_of_view_mm=self.field_of_view_mm, domain=domain)
        return result


def measure_slice(hu: np.ndarray | None, pixel_spacing_mm: tuple[float, float] | None, *,
                  ctdivol_mgy: float | None = None, ctdi_phantom: str | None = None,
                  body_part: str | None = None) -> SliceMeasurement:
    """Noise level, Dw, SSDE and noise score of one slice; never raises for bad input.

    Parameters
    ----------
    hu : numpy.ndarray or None
        2-D slice in HU at native resolution.
    pixel_spacing_mm : (row, column) in mm, or None
        Without it nothing spatial can be measured (noise window, areas).
    ctdivol_mgy : float, optional
        (0018,9345) CTDIvol.
    ctdi_phantom : str, optional
        Code value of (0018,9346) CTDI Phantom Type Code Sequence.
    body_part : str, optional
        (0018,0015) Body Part Examined.

    Returns
    -------
    SliceMeasurement
        Call :meth:`SliceMeasurement.finish` with the network's score for the
        final :class:`PhysicsResult` with flags.
    """
    notes: list[str] = []
    result = PhysicsResult()
    if ctdivol_mgy is not None and math.isfinite(ctdivol_mgy) and ctdivol_mgy >= 0:
        result.ctdivol_mgy = float(ctdivol_mgy)
    elif ctdivol_mgy is not None:
        notes.append(f"(0018,9345) CTDIvol is {ctdivol_mgy!r}; expected a non-negative number")
    phantom_16cm = uses_16cm_phantom(ctdi_phantom, body_part)
    measurement = SliceMeasurement(result, phantom_16cm=phantom_16cm, body_part=body_part)
    try:
        plane = None if hu is None else np.asarray(hu, dtype=np.float32)
        spacing_ok = (pixel_spacing_mm is not None and len(pixel_spacing_mm) == 2
                      and all(math.isfinite(float(v)) and float(v) > 0 for v in pixel_spacing_mm))
        if plane is None or plane.ndim != 2:
            notes.append("no 2-D HU plane to measure")
        elif not spacing_ok:
            notes.append(f"(0028,0030) Pixel Spacing is {'missing' if pixel_spacing_mm is None else pixel_spacing_mm}; "
                         "noise level and water-equivalent diameter need it")
        elif not np.isfinite(plane).all():
            notes.append("slice holds NaN or infinite HU; not measured")
        else:
            spacing = (float(pixel_spacing_mm[0]), float(pixel_spacing_mm[1]))
            measurement.field_of_view_mm = spacing[1] * plane.shape[1]
            # One pass of 2 x 2 block sums serves both measures.
            centre_hu = 0.5 * (SOFT_TISSUE_HU[0] + SOFT_TISSUE_HU[1])
            centred = _even(plane) - np.float32(centre_hu)
            blocks = _block_sums(centred)
            noise = _noise_level(centred, blocks, spacing, box_mm=NOISE_BOX_MM, soft_tissue_hu=SOFT_TISSUE_HU)
            if noise.noise_hu is not None:
                result.noise_hu = noise.noise_hu
                result.noise_score = continuous_score(noise.noise_hu)
            if noise.note:
                notes.append(noise.note)
            means = blocks * np.float32(0.25) + np.float32(centre_hu)
            size = _water_equivalent_diameter(means, (2.0 * spacing[0], 2.0 * spacing[1]),
                                              threshold_hu=BODY_THRESHOLD_HU)
            result.water_equivalent_diameter_mm = size.dw_mm
            measurement.truncated = size.truncated
            if size.note:
                notes.append(size.note)
    except Exception as error:  # a physics bug must never cost the slice its score
        notes.append(f"physics failed: {type(error).__name__}: {error}")
    if result.ctdivol_mgy is None:
        notes.append("no (0018,9345) CTDIvol; no SSDE")
    elif result.water_equivalent_diameter_mm is not None:
        factor = ssde_conversion_factor(result.water_equivalent_diameter_mm, phantom_16cm=phantom_16cm)
        result.ssde_mgy = result.ctdivol_mgy * factor
    result.physics_note = "; ".join(notes) if notes else None
    return measurement
