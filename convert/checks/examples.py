"""Write the example CT slices in examples/: one synthetic phantom at several doses.

The images come from the project's simulator (``convert.sim.simulate``: analytic
parallel-beam projection of an abdominal ellipse phantom, Poisson noise at a
dose fraction, filtered back-projection), so there is no patient data in them.
Headers say so: Manufacturer 'deltaiqa-lite simulator', PatientName
'SYNTHETIC^PHANTOM', Image Type DERIVED\\SECONDARY, no dates, and UIDs derived
deterministically from the example's name (re-running gives identical files).

Run from the repository root::

    python -m convert.checks.examples             # writes examples/*.dcm
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

SEED = 7
PHANTOM = 0
# (file stem, dose fraction, views over 360 degrees)
EXAMPLES = [
    ("dose-100", 1.00, 1000),
    ("dose-050", 0.50, 1000),
    ("dose-025", 0.25, 1000),
    ("dose-010", 0.10, 1000),
    ("views-180", 1.00, 180),
]
RESCALE_INTERCEPT = -1024.0


UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/deltaiqa-lite/examples")


def uid(*parts: str) -> str:
    """A deterministic UUID-derived UID (``2.25.<uuid as integer>``, PS3.5 B.2) for one object."""
    return "2.25." + str(uuid.uuid5(UID_NAMESPACE, "/".join([f"seed={SEED}", *parts])).int)


def ct_slice_dataset(hu: np.ndarray, pixel_spacing_mm: float, *, name: str, series_number: int,
                     description: str, comments: str) -> Dataset:
    """A CT Image Storage dataset (int16, Rescale Intercept -1024) holding ``hu``.

    Parameters
    ----------
    hu : numpy.ndarray
        float 2-D slice in HU, display orientation (anterior up, patient's right on the left).
    pixel_spacing_mm : float
        Square pixel size.
    name : str
        Stable name from which the SOP Instance and Series UIDs are derived.
    """
    from deltaiqa_lite._version import __version__

    stored = np.clip(np.round(np.asarray(hu, dtype=np.float64) - RESCALE_INTERCEPT), -32768, 32767).astype(np.int16)
    rows, columns = stored.shape
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = uid("instance", name)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = uid("implementation")
    meta.ImplementationVersionName = f"DELTAIQA_{__version__}"[:16]

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyDate = ds.StudyTime = ds.AccessionNumber = ds.ReferringPhysicianName = ""
    ds.Modality = "CT"
    ds.Manufacturer = "deltaiqa-lite simulator"
    ds.ManufacturerModelName = "convert.sim.simulate parallel-beam FBP"
    ds.SoftwareVersions = f"deltaiqa-lite {__version__}"
    ds.StudyDescription = "deltaiqa-lite synthetic examples"
    ds.SeriesDescription = description
    ds.BurnedInAnnotation = "NO"
    ds.PatientName = "SYNTHETIC^PHANTOM"
    ds.PatientID = f"DELTAIQA-SIM-{SEED}"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.PatientIdentityRemoved = "YES"  # there never was one: the phantom is procedural
    ds.BodyPartExamined = "ABDOMEN"
    ds.ConvolutionKernel = "ramp-hann"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid("series", name)
    ds.FrameOfReferenceUID = uid("frame-of-reference")
    ds.StudyID = "SIM"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = 1
    half = (columns - 1) / 2.0 * pixel_spacing_mm
    ds.ImagePositionPatient = [f"{-half:.4f}", f"{-half:.4f}", "0"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = "0"
    ds.ImageComments = comments
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.PixelSpacing = [f"{pixel_spacing_mm:.6f}", f"{pixel_spacing_mm:.6f}"]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.RescaleIntercept = RESCALE_INTERCEPT
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.PixelData = stored.tobytes()
    return ds


def main(out_dir: Path = REPO / "examples") -> list[Path]:
    from convert.sim.simulate import simulate_slice

    written = []
    for number, (stem, dose, views) in enumerate(EXAMPLES, start=1):
        record = simulate_slice(SEED, dose, n_views=views, phantom_index=PHANTOM)
        description = f"synthetic dose {dose * 100:g}% {views} views"
        comments = (f"SYNTHETIC (deltaiqa-lite simulator): seed {SEED}, phantom {PHANTOM}, dose fraction "
                    f"{dose:g}, {views} views; liver noise SD {record['noise_sd_hu']:.1f} HU, streak RMS "
                    f"{record['streak_rms_hu']:.1f} HU; simulator label {record['label']:.1f}")
        ds = ct_slice_dataset(record["hu"], float(record["pixel_spacing_mm"]), name=stem,
                              series_number=number, description=description, comments=comments)
        path = out_dir / f"{stem}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        written.append(path)
        print(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}: {comments}")
    return written


if __name__ == "__main__":
    main()
