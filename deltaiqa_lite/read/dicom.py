"""CT DICOM -> HU slices in display orientation.

What pydicom leaves to the caller, and why each step is here:

- Rescale Slope/Intercept may sit in the Shared or Per-frame Functional Groups
  (Pixel Value Transformation Sequence) of enhanced multi-frame CT;
  ``pydicom.pixels.apply_modality_lut`` reads only the top-level elements and
  would return unrescaled values silently.
- Pixel Padding Value (and Pixel Padding Range Limit) marks pixels outside the
  reconstructed field; they are set to air before any resizing blends them in.
- MONOCHROME1 only says how grey levels are *displayed* (PS3.3 C.7.6.3.1.2:
  the minimum is shown white after the VOI LUT). The Modality LUT output of a
  CT image is HU either way, so HU are taken as rescaled and never inverted:
  inverting them would turn air into bone.
- Slices stored flipped or transposed are turned to the orientation of the
  training images: anterior up, the patient's right on the image's left.
- Compressed transfer syntaxes decode through pydicom's plugins; a missing
  plugin gives one line naming the syntax and the extra to install.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any, Collection, Iterator

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from deltaiqa_lite.errors import InputError, InputWarning, MissingCodecError, RefusedInput
from deltaiqa_lite.read.slice import Slice
from deltaiqa_lite.read import policy
from deltaiqa_lite.read.policy import MAX_TILT_DEGREES

__all__ = ["read_dicom", "MAX_TILT_DEGREES", "MIN_SIZE", "AIR_HU", "MAX_PIXEL_BYTES",
           "display_orientation"]

AIR_HU = -1000.0
MIN_SIZE = 64
CT_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2",      # CT Image Storage
    "1.2.840.10008.5.1.4.1.1.2.1",    # Enhanced CT Image Storage
    "1.2.840.10008.5.1.4.1.1.2.2",    # Legacy Converted Enhanced CT Image Storage
}
# Modalities of objects that never hold an image to score.
NON_IMAGE_MODALITIES = {"SR", "RTPLAN", "RTSTRUCT", "RTRECORD", "KO", "PR", "DOC", "REG",
                        "PLAN", "FID", "AU", "ECG", "HD"}
CODECS_HINT = "pip install 'deltaiqa-lite[codecs]'"
# Ceiling on the stored pixel values of one file, checked from the header before
# anything is allocated or looped over per frame: a 39 KB file may declare a
# million frames. 1 GiB holds about 2,000 frames of 512 x 512 at 16 bits.
MAX_PIXEL_BYTES = 1 << 30
# Plausible ranges of the numeric values the reader uses (CT, PS3.3 C.8.2.1, C.7.6.2).
RESCALE_SLOPE_RANGE = (1e-6, 1e4)
RESCALE_INTERCEPT_RANGE = (-1e5, 1e5)
POSITION_RANGE_MM = (-1e6, 1e6)
SPACING_RANGE_MM = (1e-4, 1e3)
BITS_ALLOCATED = (8, 16, 32)


def _tag(keyword: str) -> str:
    """``(0008,0060) Modality`` for a keyword: how pydicom names an element."""
    tag = pydicom.datadict.tag_for_keyword(keyword)
    group, element = tag >> 16, tag & 0xFFFF
    name = pydicom.datadict.dictionary_description(tag)
    return f"({group:04X},{element:04X}) {name}"


def _multi(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return [value]
    return list(value)


#: Bytes looked at before any parsing (preamble, 'DICM', the first elements).
SNIFF_BYTES = 4096


def sniff_refusal(path: str | os.PathLike) -> str | None:
    """Why a file cannot be DICOM, judged from its first :data:`SNIFF_BYTES` bytes, or None.

    pydicom's ``force=True`` parses whatever it is given; on a large zero-filled or
    random file that takes minutes (1.4 MB/s through zeros). A Part 10 file has
    'DICM' at byte 128; a dataset without the preamble starts with an element of
    group 0x0000-0x0008 (File Meta or Identifying), little or big endian. Anything
    else, and a start that is all zeros, is refused here in bounded time.

    Raises
    ------
    InputError
        The file cannot be opened or read.
    """
    name = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError as error:
        raise InputError(name, f"cannot read: {error.strerror or error}") from error
    if not head:
        return "file is empty (0 bytes); not a DICOM file"
    if head[128:132] == b"DICM":
        return None
    if not head.strip(b"\0"):
        return (f"the first {len(head)} bytes are all zero (a zero-filled or truncated copy); "
                "not a DICOM file")
    if len(head) >= 8:
        little, big = int.from_bytes(head[:2], "little"), int.from_bytes(head[:2], "big")
        if little <= 0x0008 or big <= 0x0008:
            return None  # may be a dataset without preamble: pydicom decides
    return "not a DICOM file (no 'DICM' prefix at byte 128 and no DICOM element at byte 0)"


def _read_dataset(path: Path) -> pydicom.Dataset:
    name = str(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise InputError(name, f"cannot read: {error.strerror or error}") from error
    if size == 0:
        raise InputError(name, "file is empty (0 bytes); not a DICOM file")
    refusal = sniff_refusal(path)
    if refusal is not None:
        raise InputError(name, refusal)
    try:
        dataset = pydicom.dcmread(path)
    except InvalidDicomError:
        pass
    except Exception as error:  # pydicom raises many types on damaged files
        raise InputError(name, f"cannot read DICOM: {_first_line(error)}") from error
    else:
        # A damaged File Meta may lack (0002,0010): decode with what was read.
        _ensure_transfer_syntax(dataset)
        return dataset
    # Some archives write datasets without the 128-byte preamble and 'DICM'.
    # Read them forcibly, but only believe the result if it looks like an image object.
    try:
        dataset = pydicom.dcmread(path, force=True)
        if "SOPClassUID" in dataset or "PixelData" in dataset:
            _ensure_transfer_syntax(dataset)
            return dataset
    except Exception:
        pass
    raise InputError(name, "not a DICOM file (no 'DICM' prefix at byte 128 and no DICOM image elements)")


def _ensure_transfer_syntax(dataset: pydicom.Dataset) -> None:
    """Give a dataset read without File Meta the transfer syntax it was read with."""
    meta = getattr(dataset, "file_meta", None)
    if meta is None:
        dataset.file_meta = meta = pydicom.dataset.FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        implicit, little = dataset.original_encoding
        if implicit:
            meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
        elif little:
            meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        else:
            meta.TransferSyntaxUID = pydicom.uid.ExplicitVRBigEndian


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _shown(value: Any) -> str:
    """A value as it appears in a message: short, repr-quoted, never a whole blob."""
    text = repr(value if not isinstance(value, (list, tuple)) else list(value))
    return text if len(text) <= 80 else text[:77] + "..."


def _bound(value: float) -> str:
    """A range limit as written in a message: integers in full, others in %g."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e12 else f"{value:g}"


def _get(name: str, item: pydicom.Dataset, keyword: str) -> Any:
    """``item.get(keyword)``; a value pydicom cannot even convert names its element."""
    try:
        return item.get(keyword)
    except Exception as error:  # pydicom converts raw values on access and may raise anything
        raise InputError(name, f"{_tag(keyword)} cannot be read: {_first_line(error)}") from error


def _numbers(name: str, item: pydicom.Dataset, keyword: str, *, count: int | None = None,
             low: float = -math.inf, high: float = math.inf) -> list[float] | None:
    """The numeric values of an element, each finite and within [low, high].

    Returns None when the element is absent or empty. Raises InputError naming the
    element, its value and what was expected otherwise.
    """
    value = _get(name, item, keyword)
    if value is None or value == "":
        return None
    values = _multi(value)
    expected = {None: "numbers", 1: "a number"}.get(count, f"{count} numbers")
    if low > -math.inf or high < math.inf:
        expected += f" in [{_bound(low)}, {_bound(high)}]"
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        numbers = None
    if (numbers is None or (count is not None and len(numbers) != count)
            or not all(math.isfinite(v) and low <= v <= high for v in numbers)):
        raise InputError(name, f"{_tag(keyword)} is {_shown(value)}; expected {expected}")
    return numbers


def _integer(name: str, item: pydicom.Dataset, keyword: str, *, default: int | None,
             low: int, high: int) -> int:
    """One integer element within [low, high] (``default`` when absent)."""
    numbers = _numbers(name, item, keyword, count=1, low=low, high=high)
    if numbers is None:
        if default is None:
            raise InputError(name, f"{_tag(keyword)} is missing")
        return default
    if numbers[0] != int(numbers[0]):
        raise InputError(name, f"{_tag(keyword)} is {_shown(_get(name, item, keyword))}; "
                               "expected a whole number")
    return int(numbers[0])


def _optional(name: str, item: pydicom.Dataset, keyword: str, **limits: Any) -> list[float] | None:
    """Like :func:`_numbers` for values scoring does not need: a bad one is ignored with a note."""
    try:
        return _numbers(name, item, keyword, **limits)
    except InputError as error:
        warnings.warn(InputWarning(f"{error}; ignored"), stacklevel=2)
        return None


def _check_size(name: str, ds: pydicom.Dataset, max_pixel_bytes: int) -> int:
    """Frames x rows x columns x bits against the bytes present and the ceiling; the frame count.

    Runs before any pixel allocation or per-frame loop, so a header that lies about
    its size costs microseconds, not minutes and gigabytes.
    """
    frames = _integer(name, ds, "NumberOfFrames", default=1, low=1, high=2**31 - 1)
    rows = _integer(name, ds, "Rows", default=None, low=1, high=65535)
    columns = _integer(name, ds, "Columns", default=None, low=1, high=65535)
    bits = _integer(name, ds, "BitsAllocated", default=None, low=1, high=64)
    if bits not in BITS_ALLOCATED:
        raise InputError(name, f"{_tag('BitsAllocated')} is {bits}; expected one of "
                               f"{', '.join(map(str, BITS_ALLOCATED))} for CT")
    needed = frames * rows * columns * bits // 8
    shape = f"{frames} x {rows} x {columns} at {bits} bits"
    if needed > max_pixel_bytes:
        raise InputError(name, f"{_tag('NumberOfFrames')} x {_tag('Rows')} x {_tag('Columns')} is "
                               f"{shape} = {needed} bytes; above the ceiling of "
                               f"{max_pixel_bytes} bytes per file")
    if "PixelData" not in ds:
        return frames
    stored = len(_get(name, ds, "PixelData") or b"")
    syntax = UID(ds.file_meta.get("TransferSyntaxUID", pydicom.uid.ExplicitVRLittleEndian))
    if syntax.is_compressed:
        # Each encapsulated frame needs at least one 8-byte item header.
        if frames * 8 > stored:
            raise InputError(name, f"{_tag('NumberOfFrames')} is {frames}; the encapsulated "
                                   f"{_tag('PixelData')} holds only {stored} bytes")
    elif stored < needed:
        raise InputError(name, f"{_tag('PixelData')} is truncated: {stored} bytes, "
                               f"expected {needed} for {shape}")
    return frames


def _uid_name(uid: str) -> str:
    name = UID(uid).name
    return name if name and name != uid else uid


def _check_object(name: str, ds: pydicom.Dataset) -> None:
    """Refuse what is not an axial greyscale CT image, element by element."""
    sop_class = str(ds.get("SOPClassUID", "") or "")
    modality = str(ds.get("Modality", "") or "").upper()
    has_pixels = any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
    if not has_pixels:
        is_image_class = sop_class in CT_SOP_CLASSES or "Image Storage" in UID(sop_class).name
        if sop_class and not is_image_class:
            raise RefusedInput(name, f"{_tag('SOPClassUID')} is '{_uid_name(sop_class)}'; "
                                     "not an image, nothing to score")
        if not sop_class and modality in NON_IMAGE_MODALITIES:
            raise RefusedInput(name, f"{_tag('Modality')} is '{modality}'; not an image, nothing to score")
        raise InputError(name, f"{_tag('PixelData')} is missing")
    if not modality:
        if sop_class not in CT_SOP_CLASSES:
            raise RefusedInput(name, f"{_tag('Modality')} is missing and {_tag('SOPClassUID')} is "
                                     f"'{_uid_name(sop_class) or 'missing'}'; deltaiqa-lite scores CT only")
    elif modality != "CT":
        raise RefusedInput(name, f"{_tag('Modality')} is '{modality}'; deltaiqa-lite scores CT only")
    samples = _integer(name, ds, "SamplesPerPixel", default=1, low=1, high=4)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").upper()
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise RefusedInput(name, f"{_tag('PhotometricInterpretation')} is '{photometric}' "
                                 f"({samples} samples per pixel); deltaiqa-lite needs greyscale CT")
    rows = _integer(name, ds, "Rows", default=None, low=0, high=65535)
    columns = _integer(name, ds, "Columns", default=None, low=0, high=65535)
    _integer(name, ds, "BitsAllocated", default=None, low=1, high=64)
    if rows < MIN_SIZE or columns < MIN_SIZE:
        raise RefusedInput(name, f"{_tag('Rows')} x {_tag('Columns')} is {rows} x {columns}; "
                                 f"smaller than {MIN_SIZE} x {MIN_SIZE}, not a CT slice")


def _rescale(name: str, ds: pydicom.Dataset, frame: int) -> tuple[float, float]:
    item = policy.functional_item(ds, frame, "PixelValueTransformationSequence")
    source = item if item is not None and "RescaleSlope" in item else ds
    # A slope of 0 or NaN turns every pixel into one value, which the model
    # scores as a clean image; refuse instead of scoring nonsense.
    slope = _numbers(name, source, "RescaleSlope", count=1, low=RESCALE_SLOPE_RANGE[0],
                     high=RESCALE_SLOPE_RANGE[1])
    intercept = _numbers(name, source, "RescaleIntercept", count=1,
                         low=RESCALE_INTERCEPT_RANGE[0], high=RESCALE_INTERCEPT_RANGE[1])
    return (slope[0] if slope else 1.0), (intercept[0] if intercept else 0.0)


def _orientation(name: str, ds: pydicom.Dataset, frame: int) -> list[float] | None:
    item = policy.functional_item(ds, frame, "PlaneOrientationSequence")
    # Direction cosines: needed for the axial check and the display orientation, so a
    # NaN or out-of-range one refuses the file (NaN would pass every comparison).
    return _numbers(name, item if item is not None else ds, "ImageOrientationPatient", count=6,
                    low=-1.001, high=1.001)


def _position(name: str, ds: pydicom.Dataset, frame: int) -> list[float] | None:
    item = policy.functional_item(ds, frame, "PlanePositionSequence")
    # Only orders slices within a series; not needed for the score.
    return _optional(name, item if item is not None else ds, "ImagePositionPatient", count=3,
                     low=POSITION_RANGE_MM[0], high=POSITION_RANGE_MM[1])


def _spacing(name: str, ds: pydicom.Dataset, frame: int) -> tuple[float, float] | None:
    item = policy.functional_item(ds, frame, "PixelMeasuresSequence")
    values = _optional(name, item if item is not None else ds, "PixelSpacing", count=2,
                       low=SPACING_RANGE_MM[0], high=SPACING_RANGE_MM[1])
    return (values[0], values[1]) if values else None


def _ctdivol(ds: pydicom.Dataset, frame: int) -> float | None:
    """(0018,9345) CTDIvol: top level (classic CT) or the frame's CT Exposure Sequence."""
    item = policy.functional_item(ds, frame, "CTExposureSequence")
    value = item.get("CTDIvol") if item is not None and "CTDIvol" in item else ds.get("CTDIvol")
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None  # a malformed optional dose field must not cost the slice its score


def _ctdi_phantom(ds: pydicom.Dataset, frame: int) -> str | None:
    """Code value of (0018,9346) CTDI Phantom Type Code Sequence (top level or CT Exposure Sequence)."""
    item = policy.functional_item(ds, frame, "CTExposureSequence")
    holder = item if item is not None and "CTDIPhantomTypeCodeSequence" in item else ds
    sequence = holder.get("CTDIPhantomTypeCodeSequence")
    if sequence and len(sequence) > 0:
        return str(sequence[0].get("CodeValue", "") or "") or None
    return None


def _normal(name: str, iop: list[float]) -> np.ndarray:
    row, column = np.asarray(iop[:3], dtype=np.float64), np.asarray(iop[3:], dtype=np.float64)
    normal = np.cross(row, column)
    length = float(np.linalg.norm(normal))
    if length < 1e-3:
        raise InputError(name, f"{_tag('ImageOrientationPatient')} is {_fmt(iop)}: "
                               "row and column directions are parallel or zero")
    return normal / length


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


def display_orientation(plane: np.ndarray, iop: list[float] | None,
                        spacing: tuple[float, float] | None = None
                        ) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Turn an axial plane to anterior up, the patient's right on the image's left.

    Parameters
    ----------
    plane : numpy.ndarray
        2-D plane as stored (rows, columns).
    iop : list of 6 float or None
        Image Orientation (Patient): row direction (along a row, increasing
        column index) then column direction (increasing row index), in LPS
        patient coordinates. None leaves the plane as stored.
    spacing : (row spacing, column spacing) or None
        Pixel Spacing, swapped when the plane is transposed.

    Returns
    -------
    plane, spacing
        The plane such that columns run towards the patient's left (+x) and
        rows towards posterior (+y), i.e. the standard axial display.
    """
    if iop is None:
        return plane, spacing
    row_dir, col_dir = list(iop[:3]), list(iop[3:])
    # Rows that run mostly anterior-posterior mean the image is stored transposed.
    if abs(row_dir[1]) > abs(row_dir[0]):
        plane = plane.T
        row_dir, col_dir = col_dir, row_dir
        if spacing is not None:
            spacing = (spacing[1], spacing[0])
    if row_dir[0] < 0:
        plane = plane[:, ::-1]
    if col_dir[1] < 0:
        plane = plane[::-1, :]
    return np.ascontiguousarray(plane), spacing


def _decode(name: str, ds: pydicom.Dataset, frames: int) -> np.ndarray:
    syntax = UID(ds.file_meta.TransferSyntaxUID)
    if syntax.is_compressed:
        from pydicom.pixels import get_decoder
        try:
            decoder = get_decoder(syntax)
        except NotImplementedError:
            raise InputError(name, f"(0002,0010) Transfer Syntax UID is '{_uid_name(syntax)}' ({syntax}); "
                                   "no pydicom decoder exists for it") from None
        if not decoder.is_available:
            raise MissingCodecError(name, f"(0002,0010) Transfer Syntax UID is '{_uid_name(syntax)}'; "
                                          f"decoding it needs the codecs extra: {CODECS_HINT}")
    try:
        stored_values = ds.pixel_array
    except Exception as error:
        raise InputError(name, f"{_tag('PixelData')} cannot be decoded "
                               f"({_uid_name(syntax)}): {_first_line(error)}") from error
    if stored_values.ndim == 2:
        stored_values = stored_values[None]
    if stored_values.ndim != 3 or stored_values.shape[0] != frames:
        raise InputError(name, f"{_tag('PixelData')} decodes to shape {stored_values.shape}, "
                               f"expected {frames} frame(s) of {ds.Rows} x {ds.Columns}")
    return stored_values


def _padding_mask(name: str, ds: pydicom.Dataset, stored: np.ndarray) -> np.ndarray | None:
    if _get(name, ds, "PixelPaddingValue") is None:
        return None
    bits = int(ds.BitsAllocated)
    signed = _integer(name, ds, "PixelRepresentation", default=0, low=0, high=1) == 1

    def as_stored(value: Any) -> int:
        try:
            value = int(value)
        except (TypeError, ValueError):
            raise InputError(name, f"{_tag('PixelPaddingValue')} is {_shown(value)}; "
                                   "expected a stored pixel value") from None
        # The VR is 'US or SS'; a reader that guessed US gives e.g. 63536 for -2000.
        if signed and value >= 2 ** (bits - 1):
            value -= 2 ** bits
        return value

    first = as_stored(_multi(ds.PixelPaddingValue)[0] if _multi(ds.PixelPaddingValue) else None)
    limit = _get(name, ds, "PixelPaddingRangeLimit")
    limit = _multi(limit)[0] if _multi(limit) else None
    last = as_stored(limit) if limit is not None else first
    low, high = min(first, last), max(first, last)
    return (stored >= low) & (stored <= high)


def read_dicom(path: str | os.PathLike, *, accept: Collection[str] = (),
               max_pixel_bytes: int = MAX_PIXEL_BYTES) -> Iterator[Slice]:
    """Yield the HU slices of one CT DICOM file (one per frame).

    Parameters
    ----------
    path : str or os.PathLike
        Classic or enhanced (multi-frame) CT image, any transfer syntax that
        pydicom can decode with the installed plugins.
    accept : collection of str, optional
        Values or kinds the selection policy refuses that are to be scored on
        purpose (``--accept``), see :mod:`deltaiqa_lite.read.policy`.

    Yields
    ------
    Slice
        ``hu`` float32, padding set to -1000 HU, turned to display orientation.

    Raises
    ------
    InputError
        Unreadable, truncated or undecodable files (``MissingCodecError``
        when only the codecs extra is missing); ``RefusedInput`` for objects
        deltaiqa-lite is not for: not CT, non-image objects, RGB, smaller than
        64 x 64, and (``PolicyRefusal``) the kinds the selection policy refuses:
        localizers, more than 30 degrees off axial, MIP, perfusion maps ...
        Numeric values the score depends on (Rescale Slope/Intercept, Image
        Orientation, sizes) must be finite and in range; values it does not
        need (Instance Number, Slice Location, Image Position, Pixel Spacing)
        are ignored with an :class:`~deltaiqa_lite.errors.InputWarning` when
        malformed.
    max_pixel_bytes : int
        Refuse files whose header declares more stored pixel bytes than this
        (checked before anything is allocated).
    """
    path = Path(path)
    name = str(path)
    ds = _read_dataset(path)
    try:
        yield from _read_frames(name, ds, policy.normalise_accept(accept), max_pixel_bytes)
    except InputError as error:
        error.series_uid = str(ds.get("SeriesInstanceUID", "") or "") or None
        error.sop_instance_uid = str(ds.get("SOPInstanceUID", "") or "") or None
        raise


def _read_frames(name: str, ds: pydicom.Dataset, accept: frozenset[str],
                 max_pixel_bytes: int) -> Iterator[Slice]:
    _check_object(name, ds)
    frames = _check_size(name, ds, max_pixel_bytes)
    enhanced = "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds
    modality_lut = "ModalityLUTSequence" in ds and "RescaleSlope" not in ds
    geometry = []
    for frame in range(frames):
        iop = _orientation(name, ds, frame)
        normal = _normal(name, iop) if iop is not None else None
        # The selection policy (localizer, off-axial, MIP, maps ...): deltaiqa_lite/read/policy.py.
        decision = policy.decide(name, ds, frame if enhanced else None, frames, iop=iop, normal=normal,
                                 accept=accept)
        # Rescale values are checked here too, before the pixels are decoded.
        rescale = None if modality_lut else _rescale(name, ds, frame)
        geometry.append((iop, normal, decision, rescale))
    stored = _decode(name, ds, frames)
    padding = _padding_mask(name, ds, stored)
    multi = frames > 1
    # Instance Number only orders slices: a malformed one is ignored (one note), never fatal.
    numbers = _optional(name, ds, "InstanceNumber", count=1, low=-2**31, high=2**31 - 1)
    instance = int(numbers[0]) if numbers and numbers[0] == int(numbers[0]) else None
    for frame in range(frames):
        iop, normal, decision, rescale = geometry[frame]
        if modality_lut:
            from pydicom.pixels import apply_modality_lut
            hu = np.asarray(apply_modality_lut(stored[frame], ds), dtype=np.float32)
        else:
            slope, intercept = rescale
            hu = stored[frame].astype(np.float32)  # a new array: scale it in place, no temporaries
            hu *= np.float32(slope)
            hu += np.float32(intercept)
        pad = None
        if padding is not None:
            hu[padding[frame]] = AIR_HU
            pad, _ = display_orientation(padding[frame], iop)
        hu, spacing = display_orientation(hu, iop, _spacing(name, ds, frame))
        position = _position(name, ds, frame)
        if position is not None and normal is not None:
            location = float(np.dot(normal, position))
        else:
            found = _optional(name, ds, "SliceLocation", count=1, low=POSITION_RANGE_MM[0],
                              high=POSITION_RANGE_MM[1])
            location = found[0] if found else None
        yield Slice(
            path=name,
            hu=hu,
            frame=frame if multi else None,
            sop_instance_uid=str(ds.SOPInstanceUID) if "SOPInstanceUID" in ds else None,
            series_uid=str(ds.SeriesInstanceUID) if "SeriesInstanceUID" in ds else None,
            study_uid=str(ds.StudyInstanceUID) if "StudyInstanceUID" in ds else None,
            instance_number=instance,
            slice_location=location,
            normal=tuple(float(v) for v in normal) if normal is not None else None,
            pixel_spacing_mm=spacing,
            series_description=str(ds.get("SeriesDescription", "") or "") or None,
            policy_override=decision.override,
            policy_note=decision.note,
            ctdivol_mgy=_ctdivol(ds, frame),
            ctdi_phantom=_ctdi_phantom(ds, frame),
            body_part=str(ds.get("BodyPartExamined", "") or "") or None,
            padding=pad,
        )
