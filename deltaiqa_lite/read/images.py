"""Non-DICOM inputs: LDCTIQAC TIFF, NumPy ``.npy`` in HU, other images via Pillow.

- LDCTIQAC TIFFs are float32, already windowed to [0, 1] with the LDCTIQAC
  window (centre -300 HU, width 1400 HU); single images and multi-page stacks
  (``valid_0.tif``) are read page by page with Pillow (no tifffile needed).
- ``.npy`` holds HU: a 2-D slice or a 3-D stack along axis 0.
- Any other image (PNG, JPEG, integer TIFF ...) holds display grey levels with
  no HU in them; it is scored only when the caller says which window the grey
  levels were written with, so they can be mapped back to HU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from deltaiqa_lite.errors import InputError, RefusedInput
from deltaiqa_lite.read.slice import Slice

__all__ = ["read_tiff", "read_npy", "read_pillow", "LDCTIQAC_WINDOW", "unit_to_hu"]

LDCTIQAC_WINDOW = (-300.0, 1400.0)  # centre, width in HU (ldct-benchmark)
MIN_SIZE = 64
# Float TIFFs from LDCTIQAC are in [0, 1]; allow float rounding at the ends.
UNIT_TOLERANCE = 1e-3


def unit_to_hu(unit: np.ndarray, window: tuple[float, float] = LDCTIQAC_WINDOW) -> np.ndarray:
    """Invert a linear window: [0, 1] -> HU (clipped values stay at the window ends)."""
    centre, width = window
    return (np.asarray(unit, dtype=np.float32) * np.float32(width)
            + np.float32(centre - width / 2.0)).astype(np.float32)


def _check_plane(name: str, plane: np.ndarray, what: str) -> None:
    if plane.ndim != 2:
        raise RefusedInput(name, f"{what} has shape {plane.shape}; expected a 2-D greyscale slice")
    if plane.shape[0] < MIN_SIZE or plane.shape[1] < MIN_SIZE:
        raise RefusedInput(name, f"{what} is {plane.shape[0]} x {plane.shape[1]}; "
                                 f"smaller than {MIN_SIZE} x {MIN_SIZE}, not a CT slice")
    if not np.isfinite(plane).all():
        raise InputError(name, f"{what} contains NaN or infinite values")


def _open_image(path: Path):
    from PIL import Image, UnidentifiedImageError
    name = str(path)
    if path.stat().st_size == 0:
        raise InputError(name, "file is empty (0 bytes)")
    try:
        image = Image.open(path)
        image.load()
    except UnidentifiedImageError:
        raise InputError(name, "not an image Pillow can read") from None
    except (OSError, ValueError) as error:
        raise InputError(name, f"cannot read image: {error}") from error
    return image


def _grey_levels(name: str, image, page: int | None) -> tuple[np.ndarray, bool]:
    """Pixel values of one Pillow frame and whether they are floating point."""
    mode = image.mode
    where = f"page {page}" if page is not None else "image"
    if mode in ("RGB", "RGBA", "CMYK", "YCbCr", "P", "LAB", "HSV", "PA", "LA"):
        raise RefusedInput(name, f"{where} has Pillow mode '{mode}' (colour); deltaiqa-lite needs greyscale CT")
    values = np.asarray(image)
    return values, mode == "F"


def read_tiff(path: str | os.PathLike, *,
              image_window: tuple[float, float] | None = None) -> Iterator[Slice]:
    """Yield the pages of a TIFF: float pages as LDCTIQAC [0, 1], others need ``image_window``."""
    from PIL import ImageSequence
    path = Path(path)
    name = str(path)
    image = _open_image(path)
    pages = getattr(image, "n_frames", 1)
    for index, frame in enumerate(ImageSequence.Iterator(image)):
        page = index if pages > 1 else None
        where = f"page {index}" if pages > 1 else "image"
        values, is_float = _grey_levels(name, frame, page)
        values = values.astype(np.float32)
        _check_plane(name, values, where)
        if is_float:
            low, high = float(values.min()), float(values.max())
            if low < -UNIT_TOLERANCE or high > 1 + UNIT_TOLERANCE:
                raise RefusedInput(name, f"{where} is float with values {low:g}..{high:g}; an LDCTIQAC "
                                         "TIFF is windowed to [0, 1] (save HU as .npy instead)")
            unit = np.clip(values, 0.0, 1.0)
            yield Slice(path=name, frame=page, hu=unit_to_hu(unit), unit=unit)
        else:
            yield Slice(path=name, frame=page,
                        hu=_grey_to_hu(name, values, frame.mode, image_window))


def _grey_to_hu(name: str, values: np.ndarray, mode: str,
                image_window: tuple[float, float] | None) -> np.ndarray:
    if image_window is None:
        raise RefusedInput(name, f"a '{mode}' image holds display grey levels, not HU; pass the window it "
                                 "was saved with (--image-window CENTRE,WIDTH) to score it")
    # Full grey range of the stored integer type is the window.
    top = {"1": 1.0, "L": 255.0, "I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0}.get(mode)
    if top is None:
        top = float(np.iinfo(values.dtype).max) if np.issubdtype(values.dtype, np.integer) else 1.0
    return unit_to_hu(values.astype(np.float32) / np.float32(top), image_window)


def read_pillow(path: str | os.PathLike, *,
                image_window: tuple[float, float] | None = None) -> Iterator[Slice]:
    """Yield one slice of a plain greyscale image, mapped to HU through ``image_window``."""
    path = Path(path)
    name = str(path)
    image = _open_image(path)
    values, _ = _grey_levels(name, image, None)
    values = values.astype(np.float32)
    _check_plane(name, values, "image")
    yield Slice(path=name, hu=_grey_to_hu(name, values, image.mode, image_window))


def read_npy(path: str | os.PathLike) -> Iterator[Slice]:
    """Yield the HU slices of a ``.npy`` (2-D slice or 3-D stack along axis 0)."""
    path = Path(path)
    name = str(path)
    if path.stat().st_size == 0:
        raise InputError(name, "file is empty (0 bytes)")
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError, EOFError) as error:
        raise InputError(name, f"not a readable .npy array: {error}") from error
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise RefusedInput(name, f"array dtype is {array.dtype}; expected numbers in HU")
    if array.ndim == 2:
        planes, multi = [array], False
    elif array.ndim == 3:
        planes, multi = array, True
    else:
        raise RefusedInput(name, f"array has shape {array.shape}; expected a 2-D slice or a 3-D stack of HU")
    for index, plane in enumerate(planes):
        hu = np.asarray(plane, dtype=np.float32)
        _check_plane(name, hu, f"slice {index}" if multi else "array")
        yield Slice(path=name, frame=index if multi else None, hu=hu)
