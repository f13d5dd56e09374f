"""Turn a CT slice into the network's input: HU -> window -> square crop -> resize.

This is the only implementation of the preprocessing rule (DESIGN.md section 3).
Training (``convert/``), conversion checks and the runtime all call it, so they
cannot drift apart. NumPy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotation only: the model layer does not import the readers
    from deltaiqa_lite.read import Slice

# LDCTIQAC window (ldct-benchmark): centre -300 HU, width 1400 HU,
# i.e. -1000..400 HU -> 0..1. Kept here only as defaults for model cards;
# the runtime reads the values from the card of the model it runs.
DEFAULT_WINDOW_CENTRE_HU = -300.0
DEFAULT_WINDOW_WIDTH_HU = 1400.0
DEFAULT_INPUT_SIZE = 512
AIR_HU = -1000.0


@dataclass(frozen=True)
class Preprocessing:
    """Preprocessing parameters as written in a model card."""

    window_centre_hu: float = DEFAULT_WINDOW_CENTRE_HU
    window_width_hu: float = DEFAULT_WINDOW_WIDTH_HU
    input_size: int = DEFAULT_INPUT_SIZE
    resize: str = "bilinear-half-pixel"  # cv2.resize INTER_LINEAR, no antialiasing

    def to_card(self) -> dict:
        return {
            "window_centre_hu": self.window_centre_hu,
            "window_width_hu": self.window_width_hu,
            "input_size": self.input_size,
            "crop": "centre-square",
            "resize": self.resize,
            "layout": "NHWC float32 in [0, 1]",
        }

    @classmethod
    def from_card(cls, card: dict) -> "Preprocessing":
        return cls(
            window_centre_hu=float(card["window_centre_hu"]),
            window_width_hu=float(card["window_width_hu"]),
            input_size=int(card["input_size"]),
            resize=str(card.get("resize", "bilinear-half-pixel")),
        )


def window_hu(hu: np.ndarray, centre: float = DEFAULT_WINDOW_CENTRE_HU,
              width: float = DEFAULT_WINDOW_WIDTH_HU) -> np.ndarray:
    """Map HU linearly so that ``centre - width/2 .. centre + width/2`` -> 0..1, clipped."""
    low = centre - width / 2.0
    unit = np.asarray(hu, dtype=np.float32) - np.float32(low)  # a new array: the rest works in place
    unit /= np.float32(width)
    return np.clip(unit, 0.0, 1.0, out=unit)


def centre_crop_square(image: np.ndarray) -> np.ndarray:
    """Crop the largest centred square, as the original loader does."""
    rows, cols = image.shape[:2]
    side = min(rows, cols)
    top = (rows - side) // 2
    left = (cols - side) // 2
    return image[top:top + side, left:left + side]


def _linear_taps(src_size: int, dst_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of OpenCV's INTER_LINEAR along one axis.

    Half-pixel centres, no antialiasing; out-of-range taps clamp to the edge
    the way ``cv2.resize`` does (weight moved entirely onto the edge pixel).
    """
    scale = src_size / dst_size
    position = (np.arange(dst_size, dtype=np.float64) + 0.5) * scale - 0.5
    index = np.floor(position).astype(np.int64)
    frac = position - index
    low_edge = index < 0
    index[low_edge] = 0
    frac[low_edge] = 0.0
    high_edge = index >= src_size - 1
    index[high_edge] = src_size - 1
    frac[high_edge] = 0.0
    upper = np.minimum(index + 1, src_size - 1)
    return index, upper, frac.astype(np.float32)


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a 2-D float image to ``size x size`` like ``cv2.resize(..., INTER_LINEAR)``."""
    image = np.asarray(image, dtype=np.float32)
    rows, cols = image.shape
    if rows == size and cols == size:
        return image
    r0, r1, rf = _linear_taps(rows, size)
    c0, c1, cf = _linear_taps(cols, size)
    vertical = image[r0, :] * (1.0 - rf)[:, None] + image[r1, :] * rf[:, None]
    out = vertical[:, c0] * (1.0 - cf)[None, :] + vertical[:, c1] * cf[None, :]
    return out.astype(np.float32, copy=False)


def prepare_unit_image(unit: np.ndarray, size: int = DEFAULT_INPUT_SIZE) -> np.ndarray:
    """Crop and resize an image already windowed to [0, 1] (LDCTIQAC TIFF)."""
    unit = np.asarray(unit, dtype=np.float32)
    if unit.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {unit.shape}")
    return resize_bilinear(centre_crop_square(unit), size)


def prepare_hu(hu: np.ndarray, preprocessing: Preprocessing = Preprocessing()) -> np.ndarray:
    """HU slice -> network input plane ``[size, size]`` float32 in [0, 1]."""
    unit = window_hu(hu, preprocessing.window_centre_hu, preprocessing.window_width_hu)
    return prepare_unit_image(unit, preprocessing.input_size)


def to_batch(planes: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """Stack prepared planes into the model input ``[N, size, size, 1]``."""
    batch = np.asarray(planes, dtype=np.float32)
    if batch.ndim == 2:
        batch = batch[None]
    return np.ascontiguousarray(batch[..., None])


def prepare_slice(item: Slice, preprocessing: Preprocessing) -> np.ndarray:
    """The network input plane of a slice (uses the stored [0, 1] plane for LDCTIQAC TIFF)."""
    if item.unit is not None:
        return prepare_unit_image(item.unit, preprocessing.input_size)
    return prepare_hu(item.hu, preprocessing)
