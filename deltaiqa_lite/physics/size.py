"""Patient size: water-equivalent diameter Dw (AAPM Report 220).

The largest connected body region, holes filled, table removed;
``Dw = 2 sqrt((mean/1000 + 1) A / pi)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from deltaiqa_lite.physics.noise import _block_sums, _even


# -- water-equivalent diameter (AAPM Report 220, 2014) -----------------------------
BODY_THRESHOLD_HU = -500.0      # body above this; halfway between air and water
OUTSIDE_FOV_HU = -1500.0        # far below air (noise never gets there): padding outside the reconstruction circle
MIN_BODY_MM2 = 2000.0           # smaller "bodies" (a 50 mm circle) are not a patient
MAX_TRUNCATED_FRACTION = 0.25   # body contour on the field edge beyond this share: no Dw
MIN_TRUNCATED_FRACTION = 0.02   # less contour than this on the edge is a graze, not a truncation


@dataclass
class WaterEquivalentDiameter:
    """TG-220 water-equivalent diameter of one slice, or why there is none."""

    dw_mm: float | None
    area_mm2: float
    mean_hu: float | None
    truncated: bool
    truncated_fraction: float
    note: str | None = None


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
        whether it touches the field's edge over at least 2 % of its contour
        (less is a graze that comes and goes with the noise), in which case
        ``dw_mm`` is a lower bound.

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
    # A graze of a few blocks comes and goes with the noise in the mixed blocks at the
    # edge (body and padding or air in one block): only a real share of the contour counts.
    truncated = fraction >= MIN_TRUNCATED_FRACTION
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
