"""Pictures from arrays with NumPy and Pillow only: Grad-CAM overlays, confusion matrices.

No matplotlib at run time. The colour map is matplotlib's "jet" (the usual
Grad-CAM colours, and what ``cv2.COLORMAP_JET`` approximates), rebuilt here
from its published piecewise-linear segment data as a 256-entry table.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

__all__ = ["JET", "colourise", "overlay", "save_png", "confusion_matrix_image"]

# matplotlib _jet_data: (x, value) control points per channel.
_JET_SEGMENTS = {
    "red": ((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)),
    "green": ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)),
    "blue": ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)),
}


def _table(segments: dict[str, tuple[tuple[float, float], ...]], size: int = 256) -> np.ndarray:
    x = np.linspace(0.0, 1.0, size)
    channels = []
    for name in ("red", "green", "blue"):
        points = np.asarray(segments[name])
        channels.append(np.interp(x, points[:, 0], points[:, 1]))
    return np.round(np.stack(channels, axis=1) * 255.0).astype(np.uint8)


JET = _table(_JET_SEGMENTS)  # [256, 3] uint8: 0 dark blue .. 1 dark red

DEFAULT_ALPHA = 0.4  # weight of the colour map, as in the Keras Grad-CAM example


def colourise(values: np.ndarray, table: np.ndarray = JET) -> np.ndarray:
    """Map values in 0..1 to RGB through a lookup table.

    Parameters
    ----------
    values : numpy.ndarray
        2-D, expected in 0..1 (clipped); NaN maps to black.
    table : numpy.ndarray
        ``[K, 3]`` uint8 colour table.

    Returns
    -------
    numpy.ndarray
        ``values.shape + (3,)`` uint8.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    index = np.zeros(values.shape, dtype=np.int64)
    index[finite] = np.round(np.clip(values[finite], 0.0, 1.0) * (len(table) - 1))
    rgb = table[index]
    rgb[~finite] = 0
    return rgb


def overlay(grey: np.ndarray, heatmap: np.ndarray, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """Blend a 0..1 heat map in colour over a 0..1 grey image.

    Parameters
    ----------
    grey : numpy.ndarray
        2-D image in 0..1 (the windowed CT slice).
    heatmap : numpy.ndarray
        Same shape, 0..1; NaN where there is no map (left grey).
    alpha : float
        Weight of the colour, 0..1.

    Returns
    -------
    numpy.ndarray
        ``[rows, cols, 3]`` uint8 RGB.
    """
    grey = np.asarray(grey, dtype=np.float64)
    heatmap = np.asarray(heatmap, dtype=np.float64)
    if grey.shape != heatmap.shape or grey.ndim != 2:
        raise ValueError(f"grey {grey.shape} and heatmap {heatmap.shape} must be the same 2-D shape")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in 0..1, got {alpha}")
    base = np.repeat((np.clip(grey, 0.0, 1.0) * 255.0)[..., None], 3, axis=2)
    colour = colourise(heatmap).astype(np.float64)
    weight = np.where(np.isfinite(heatmap), alpha, 0.0)[..., None]
    return np.round(base * (1.0 - weight) + colour * weight).astype(np.uint8)


def save_png(rgb: np.ndarray, path: str | os.PathLike) -> None:
    """Write an ``[rows, cols, 3]`` uint8 array as PNG."""
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB").save(path, format="PNG")


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # scalable built-in font (Pillow >= 10.1 + FreeType)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def confusion_matrix_image(matrix: np.ndarray, class_labels: Sequence[str], *,
                           title: str = "", cell: int = 72):
    """Draw a confusion matrix (rows: reference class, columns: predicted class).

    Cells are shaded by the row-normalised fraction (recall view) so a rare
    class reads as clearly as a common one; each cell shows its count.

    Parameters
    ----------
    matrix : numpy.ndarray
        ``[K, K]`` counts.
    class_labels : sequence of str
        K names, e.g. ``("bad", "poor", "fair", "good", "excellent")``.
    title : str
        Line drawn above the matrix.
    cell : int
        Cell side in pixels.

    Returns
    -------
    PIL.Image.Image
        RGB image.
    """
    from PIL import Image, ImageDraw

    matrix = np.asarray(matrix, dtype=np.int64)
    k = matrix.shape[0]
    if matrix.shape != (k, k) or len(class_labels) != k:
        raise ValueError(f"matrix {matrix.shape} does not fit {len(class_labels)} class labels")
    font = _font(max(10, cell // 5))
    small = _font(max(9, cell // 6))
    margin_left, margin_top = int(cell * 1.9), int(cell * 1.3)
    width = margin_left + k * cell + cell // 3
    height = margin_top + k * cell + int(cell * 0.9)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((cell // 6, cell // 8), title, fill="black", font=font)
    rows = matrix.sum(axis=1, keepdims=True)
    fraction = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    for i in range(k):
        for j in range(k):
            x0, y0 = margin_left + j * cell, margin_top + i * cell
            # White (0) to a deep blue (1).
            shade = np.array([255, 255, 255]) * (1 - fraction[i, j]) + \
                np.array([8, 48, 107]) * fraction[i, j]
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1],
                           fill=tuple(int(v) for v in shade), outline=(160, 160, 160))
            text = str(int(matrix[i, j]))
            colour = "white" if fraction[i, j] > 0.5 else "black"
            box = draw.textbbox((0, 0), text, font=font)
            draw.text((x0 + (cell - (box[2] - box[0])) / 2, y0 + (cell - (box[3] - box[1])) / 2),
                      text, fill=colour, font=font)
    for index, name in enumerate(class_labels):
        label = f"{index} {name}"
        box = draw.textbbox((0, 0), label, font=small)
        draw.text((margin_left - (box[2] - box[0]) - cell // 8,
                   margin_top + index * cell + (cell - (box[3] - box[1])) / 2),
                  label, fill="black", font=small)
        box = draw.textbbox((0, 0), str(index), font=small)
        draw.text((margin_left + index * cell + (cell - (box[2] - box[0])) / 2,
                   margin_top - (box[3] - box[1]) - cell // 8), str(index), fill="black", font=small)
    draw.text((margin_left, margin_top - int(cell * 0.55)), "predicted (rounded score)",
              fill="black", font=small)
    draw.text((cell // 8, margin_top + k * cell + cell // 6),
              "rows: reference (rounded label); shade: row fraction", fill="black", font=small)
    return image
