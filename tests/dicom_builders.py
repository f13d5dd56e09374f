"""Build small CT DICOM datasets in code for reader tests (no files from elsewhere)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (CTImageStorage, EnhancedCTImageStorage, ExplicitVRLittleEndian,
                         generate_uid)

ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root, as generate_uid uses


def phantom_hu(rows: int = 96, columns: int = 96, seed: int = 0) -> np.ndarray:
    """An asymmetric HU test image: air, a water disc, a bone marker top-left of centre."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:columns]
    hu = np.full((rows, columns), -1000.0, dtype=np.float32)
    disc = (y - rows / 2) ** 2 + (x - columns / 2) ** 2 < (0.4 * min(rows, columns)) ** 2
    hu[disc] = 40.0
    hu[rows // 4: rows // 4 + 6, columns // 4: columns // 4 + 4] = 900.0  # marker: orientation check
    hu += rng.normal(0, 5, size=hu.shape).astype(np.float32)
    return np.round(hu).astype(np.float32)


def _file_meta(sop_class: str, sop_instance: str, transfer_syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = transfer_syntax
    return meta


def stored_from_hu(hu: np.ndarray, slope: float, intercept: float, signed: bool) -> np.ndarray:
    stored = np.round((np.asarray(hu, dtype=np.float64) - intercept) / slope)
    dtype = np.int16 if signed else np.uint16
    info = np.iinfo(dtype)
    return np.clip(stored, info.min, info.max).astype(dtype)


def ct_dataset(hu: np.ndarray | None = None, *, slope: float = 1.0, intercept: float = -1024.0,
               signed: bool = True, photometric: str = "MONOCHROME2", modality: str | None = "CT",
               image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
               iop: Sequence[float] | None = (1, 0, 0, 0, 1, 0),
               ipp: Sequence[float] | None = (-48.0, -48.0, 0.0), series_uid: str | None = None,
               instance_number: int | None = 1, stored: np.ndarray | None = None,
               padding: int | None = None, padding_limit: int | None = None,
               sop_class: str = CTImageStorage, seed: int = 0) -> Dataset:
    """A classic CT Image Storage dataset whose Pixel Data encodes ``hu``."""
    hu = phantom_hu(seed=seed) if hu is None and stored is None else hu
    if stored is None:
        stored = stored_from_hu(hu, slope, intercept, signed)
    sop_instance = generate_uid()
    ds = Dataset()
    ds.file_meta = _file_meta(sop_class, sop_instance, ExplicitVRLittleEndian)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    if modality is not None:
        ds.Modality = modality
    ds.ImageType = list(image_type)
    ds.PatientName = "SYNTHETIC^TEST"
    ds.PatientID = "TEST"
    if instance_number is not None:
        ds.InstanceNumber = instance_number
    if iop is not None:
        ds.ImageOrientationPatient = [float(v) for v in iop]
    if ipp is not None:
        ds.ImagePositionPatient = [float(v) for v in ipp]
    ds.PixelSpacing = [1.0, 1.0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if stored.dtype.kind == "i" else 0
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    ds.RescaleType = "HU"
    if padding is not None:
        ds.PixelPaddingValue = int(padding)
    if padding_limit is not None:
        ds.PixelPaddingRangeLimit = int(padding_limit)
    ds.PixelData = stored.tobytes()
    # VR of Pixel Padding Value is 'US or SS': set it from Pixel Representation.
    for keyword in ("PixelPaddingValue", "PixelPaddingRangeLimit"):
        if keyword in ds:
            ds[keyword].VR = "SS" if ds.PixelRepresentation == 1 else "US"
    return ds


def enhanced_ct_dataset(frames_hu: Sequence[np.ndarray], *, rescales: Sequence[tuple[float, float]] | None = None,
                        shared_rescale: tuple[float, float] | None = None,
                        positions: Sequence[Sequence[float]] | None = None,
                        iop: Sequence[float] = (1, 0, 0, 0, 1, 0), series_uid: str | None = None,
                        top_level_rescale: tuple[float, float] | None = None) -> Dataset:
    """Enhanced CT with rescale only in the functional groups (per frame, or shared)."""
    count = len(frames_hu)
    if rescales is None:
        rescales = [shared_rescale or (1.0, -1024.0)] * count
    stored = np.stack([stored_from_hu(h, s, i, True) for h, (s, i) in zip(frames_hu, rescales)])
    sop_instance = generate_uid()
    ds = Dataset()
    ds.file_meta = _file_meta(EnhancedCTImageStorage, sop_instance, ExplicitVRLittleEndian)
    ds.SOPClassUID = EnhancedCTImageStorage
    ds.SOPInstanceUID = sop_instance
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.PatientName = "SYNTHETIC^TEST"
    ds.InstanceNumber = 1
    ds.NumberOfFrames = count
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape[1:]
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    if top_level_rescale is not None:  # a decoy: functional groups must win
        ds.RescaleSlope, ds.RescaleIntercept = top_level_rescale

    shared = Dataset()
    orientation = Dataset()
    orientation.ImageOrientationPatient = [float(v) for v in iop]
    shared.PlaneOrientationSequence = DicomSequence([orientation])
    measures = Dataset()
    measures.PixelSpacing = [0.8, 0.8]
    measures.SliceThickness = 1.0
    shared.PixelMeasuresSequence = DicomSequence([measures])
    if shared_rescale is not None:
        transform = Dataset()
        transform.RescaleSlope, transform.RescaleIntercept = shared_rescale
        transform.RescaleType = "HU"
        shared.PixelValueTransformationSequence = DicomSequence([transform])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])

    per_frame = []
    for index in range(count):
        item = Dataset()
        position = Dataset()
        position.ImagePositionPatient = list(positions[index]) if positions else [0.0, 0.0, float(index)]
        item.PlanePositionSequence = DicomSequence([position])
        if shared_rescale is None:
            transform = Dataset()
            transform.RescaleSlope, transform.RescaleIntercept = rescales[index]
            transform.RescaleType = "HU"
            item.PixelValueTransformationSequence = DicomSequence([transform])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    ds.PixelData = stored.tobytes()
    return ds


def save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path
