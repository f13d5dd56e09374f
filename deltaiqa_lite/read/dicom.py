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
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from deltaiqa_lite.errors import InputError, MissingCodecError, RefusedInput
from deltaiqa_lite.read import Slice

__all__ = ["read_dicom", "MAX_TILT_DEGREES", "MIN_SIZE", "AIR_HU", "display_orientation"]

AIR_HU = -1000.0
MAX_TILT_DEGREES = 30.0
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


def _read_dataset(path: Path) -> pydicom.Dataset:
    name = str(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise InputError(name, f"cannot read: {error.strerror or error}") from error
    if size == 0:
        raise InputError(name, "file is empty (0 bytes); not a DICOM file")
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError:
        pass
    except Exception as error:  # pydicom raises many types on damaged files
        raise InputError(name, f"cannot read DICOM: {_first_line(error)}") from error
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
    image_type = [str(v).upper() for v in _multi(ds.get("ImageType"))]
    if "LOCALIZER" in image_type:
        raise RefusedInput(name, f"{_tag('ImageType')} is '{chr(92).join(image_type)}'; "
                                 "a localizer (scout) is not an axial slice")
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").upper()
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise RefusedInput(name, f"{_tag('PhotometricInterpretation')} is '{photometric}' "
                                 f"({samples} samples per pixel); deltaiqa-lite needs greyscale CT")
    for keyword in ("Rows", "Columns", "BitsAllocated"):
        if ds.get(keyword) in (None, ""):
            raise InputError(name, f"{_tag(keyword)} is missing")
    rows, columns = int(ds.Rows), int(ds.Columns)
    if rows < MIN_SIZE or columns < MIN_SIZE:
        raise RefusedInput(name, f"{_tag('Rows')} x {_tag('Columns')} is {rows} x {columns}; "
                                 f"smaller than {MIN_SIZE} x {MIN_SIZE}, not a CT slice")


def _check_frame_type(name: str, ds: pydicom.Dataset, frame: int, frames: int) -> None:
    """Enhanced CT keeps the image type per frame (CT Image Frame Type Sequence): refuse scouts."""
    item = _functional_item(ds, frame, "CTImageFrameTypeSequence")
    if item is None:
        return
    frame_type = [str(v).upper() for v in _multi(item.get("FrameType"))]
    if "LOCALIZER" in frame_type:
        where = f" of frame {frame + 1}/{frames}" if frames > 1 else ""
        raise RefusedInput(name, f"{_tag('FrameType')}{where} is '{chr(92).join(frame_type)}'; "
                                 "a localizer (scout) is not an axial slice")


def _functional_item(ds: pydicom.Dataset, frame: int, sequence: str) -> pydicom.Dataset | None:
    """The functional-group item of one frame: per-frame first, then shared."""
    for groups_keyword, index in (("PerFrameFunctionalGroupsSequence", frame),
                                  ("SharedFunctionalGroupsSequence", 0)):
        groups = ds.get(groups_keyword)
        if groups and len(groups) > index:
            item = groups[index]
            if sequence in item and len(item[sequence].value) > 0:
                return item[sequence][0]
    return None


def _rescale(ds: pydicom.Dataset, frame: int) -> tuple[float, float]:
    item = _functional_item(ds, frame, "PixelValueTransformationSequence")
    source = item if item is not None and "RescaleSlope" in item else ds
    slope = source.get("RescaleSlope", 1.0)
    intercept = source.get("RescaleIntercept", 0.0)
    return float(slope if slope not in (None, "") else 1.0), float(intercept if intercept not in (None, "") else 0.0)


def _orientation(ds: pydicom.Dataset, frame: int) -> list[float] | None:
    item = _functional_item(ds, frame, "PlaneOrientationSequence")
    value = item.get("ImageOrientationPatient") if item is not None else ds.get("ImageOrientationPatient")
    values = _multi(value)
    return [float(v) for v in values] if len(values) == 6 else None


def _position(ds: pydicom.Dataset, frame: int) -> list[float] | None:
    item = _functional_item(ds, frame, "PlanePositionSequence")
    value = item.get("ImagePositionPatient") if item is not None else ds.get("ImagePositionPatient")
    values = _multi(value)
    return [float(v) for v in values] if len(values) == 3 else None


def _spacing(ds: pydicom.Dataset, frame: int) -> tuple[float, float] | None:
    item = _functional_item(ds, frame, "PixelMeasuresSequence")
    value = item.get("PixelSpacing") if item is not None else ds.get("PixelSpacing")
    values = _multi(value)
    return (float(values[0]), float(values[1])) if len(values) == 2 else None


def _ctdivol(ds: pydicom.Dataset, frame: int) -> float | None:
    """(0018,9345) CTDIvol: top level (classic CT) or the frame's CT Exposure Sequence."""
    item = _functional_item(ds, frame, "CTExposureSequence")
    value = item.get("CTDIvol") if item is not None and "CTDIvol" in item else ds.get("CTDIvol")
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None  # a malformed optional dose field must not cost the slice its score


def _ctdi_phantom(ds: pydicom.Dataset, frame: int) -> str | None:
    """Code value of (0018,9346) CTDI Phantom Type Code Sequence (top level or CT Exposure Sequence)."""
    item = _functional_item(ds, frame, "CTExposureSequence")
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


def _check_axial(name: str, iop: list[float]) -> np.ndarray:
    normal = _normal(name, iop)
    tilt = math.degrees(math.acos(min(1.0, abs(float(normal[2])))))
    if tilt > MAX_TILT_DEGREES:
        raise RefusedInput(name, f"{_tag('ImageOrientationPatient')} is {_fmt(iop)}: slice normal "
                                 f"{tilt:.1f} degrees from the patient z axis (limit {MAX_TILT_DEGREES:g}); "
                                 "deltaiqa-lite scores axial slices only")
    return normal


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


def _decode(name: str, ds: pydicom.Dataset) -> np.ndarray:
    syntax = UID(ds.file_meta.TransferSyntaxUID)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
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
    elif "PixelData" in ds:
        expected = int(ds.Rows) * int(ds.Columns) * frames * int(ds.BitsAllocated) // 8
        stored = len(ds.PixelData)
        if stored < expected:
            raise InputError(name, f"{_tag('PixelData')} is truncated: {stored} bytes, "
                                   f"expected {expected} for {frames} x {ds.Rows} x {ds.Columns} "
                                   f"at {ds.BitsAllocated} bits")
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


def _padding_mask(ds: pydicom.Dataset, stored: np.ndarray) -> np.ndarray | None:
    if ds.get("PixelPaddingValue") is None:
        return None
    bits = int(ds.BitsAllocated)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1

    def as_stored(value: Any) -> int:
        value = int(value)
        # The VR is 'US or SS'; a reader that guessed US gives e.g. 63536 for -2000.
        if signed and value >= 2 ** (bits - 1):
            value -= 2 ** bits
        return value

    first = as_stored(ds.PixelPaddingValue)
    limit = ds.get("PixelPaddingRangeLimit")
    last = as_stored(limit) if limit is not None else first
    low, high = min(first, last), max(first, last)
    return (stored >= low) & (stored <= high)


def read_dicom(path: str | os.PathLike) -> Iterator[Slice]:
    """Yield the HU slices of one CT DICOM file (one per frame).

    Parameters
    ----------
    path : str or os.PathLike
        Classic or enhanced (multi-frame) CT image, any transfer syntax that
        pydicom can decode with the installed plugins.

    Yields
    ------
    Slice
        ``hu`` float32, padding set to -1000 HU, turned to display orientation.

    Raises
    ------
    InputError
        Unreadable, truncated or undecodable files (``MissingCodecError``
        when only the codecs extra is missing); ``RefusedInput`` for objects
        deltaiqa-lite is not for: not CT, localizer, more than 30 degrees off
        axial, non-image objects, RGB, smaller than 64 x 64.
    """
    path = Path(path)
    name = str(path)
    ds = _read_dataset(path)
    try:
        yield from _read_frames(name, ds)
    except InputError as error:
        error.series_uid = str(ds.get("SeriesInstanceUID", "") or "") or None
        error.sop_instance_uid = str(ds.get("SOPInstanceUID", "") or "") or None
        raise


def _read_frames(name: str, ds: pydicom.Dataset) -> Iterator[Slice]:
    _check_object(name, ds)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    geometry = []
    for frame in range(frames):
        _check_frame_type(name, ds, frame, frames)
        iop = _orientation(ds, frame)
        normal = _check_axial(name, iop) if iop is not None else None
        geometry.append((iop, normal))
    stored = _decode(name, ds)
    padding = _padding_mask(ds, stored)
    modality_lut = "ModalityLUTSequence" in ds and "RescaleSlope" not in ds
    multi = frames > 1
    for frame in range(frames):
        iop, normal = geometry[frame]
        if modality_lut:
            from pydicom.pixels import apply_modality_lut
            hu = np.asarray(apply_modality_lut(stored[frame], ds), dtype=np.float32)
        else:
            slope, intercept = _rescale(ds, frame)
            hu = stored[frame].astype(np.float32) * np.float32(slope) + np.float32(intercept)
        if padding is not None:
            hu[padding[frame]] = AIR_HU
        hu, spacing = display_orientation(hu, iop, _spacing(ds, frame))
        position = _position(ds, frame)
        if position is not None and normal is not None:
            location = float(np.dot(normal, position))
        elif ds.get("SliceLocation") not in (None, ""):
            location = float(ds.SliceLocation)
        else:
            location = None
        instance = ds.get("InstanceNumber")
        yield Slice(
            path=name,
            hu=hu,
            frame=frame if multi else None,
            sop_instance_uid=str(ds.SOPInstanceUID) if "SOPInstanceUID" in ds else None,
            series_uid=str(ds.SeriesInstanceUID) if "SeriesInstanceUID" in ds else None,
            study_uid=str(ds.StudyInstanceUID) if "StudyInstanceUID" in ds else None,
            instance_number=int(instance) if instance not in (None, "") else None,
            slice_location=location,
            normal=tuple(float(v) for v in normal) if normal is not None else None,
            pixel_spacing_mm=spacing,
            series_description=str(ds.get("SeriesDescription", "") or "") or None,
            ctdivol_mgy=_ctdivol(ds, frame),
            ctdi_phantom=_ctdi_phantom(ds, frame),
            body_part=str(ds.get("BodyPartExamined", "") or "") or None,
        )
