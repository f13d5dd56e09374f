"""Write the example CT slices in examples/: one synthetic phantom at several doses.

The images come from the project's simulator (``convert.sim.simulate``: analytic
parallel-beam projection of an abdominal ellipse phantom, Poisson noise at a
dose fraction, filtered back-projection), so there is no patient data in them.
Headers say so: Manufacturer 'deltaiqa-lite simulator', PatientName
'SYNTHETIC^PHANTOM', Image Type DERIVED\\SECONDARY, no dates, and UIDs derived
deterministically from the example's name (re-running gives identical files).

The acquisition headers are nominal and say so (the simulator is a 2-D
parallel-beam model with no tube, no pitch and no slice thickness): 120 kVp, a
5 mm slice, the ramp-Hann kernel, and a CTDIvol of 12 mGy (32 cm IEC body
phantom) at full dose, scaled by the dose fraction. The same values go into
``examples-dose/dose-report.dcm``, a CT Radiation Dose SR (TID 10011) of the
example exam: one CT Acquisition per example series.

Run from the repository root::

    python -m convert.checks.examples             # rewrites the headers of examples/*.dcm, keeps the pixels
    python -m convert.checks.examples --simulate  # simulates the pixels again (slow)
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
# Nominal acquisition of the examples (see the module docstring).
FULL_DOSE_CTDIVOL_MGY = 12.0
KVP = 120
SLICE_THICKNESS_MM = 5.0
TUBE_CURRENT_MA = 200
EXPOSURE_TIME_MS = 1000


UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/deltaiqa-lite/examples")


def uid(*parts: str) -> str:
    """A deterministic UUID-derived UID (``2.25.<uuid as integer>``, PS3.5 B.2) for one object."""
    return "2.25." + str(uuid.uuid5(UID_NAMESPACE, "/".join([f"seed={SEED}", *parts])).int)


def ct_slice_dataset(hu: np.ndarray, pixel_spacing_mm: float, *, name: str, series_number: int,
                     description: str, comments: str, dose_fraction: float = 1.0) -> Dataset:
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
    ds.DeidentificationMethod = "synthetic: deltaiqa-lite simulator, no patient data"
    ds.BodyPartExamined = "ABDOMEN"
    ds.ConvolutionKernel = "ramp-hann"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid("series", name)
    ds.FrameOfReferenceUID = uid("frame-of-reference")
    ds.StudyID = "SIM"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = 1
    ds.AcquisitionNumber = 1
    ds.KVP = KVP
    ds.SliceThickness = SLICE_THICKNESS_MM
    ds.XRayTubeCurrent = TUBE_CURRENT_MA
    ds.ExposureTime = EXPOSURE_TIME_MS
    ds.Exposure = int(round(TUBE_CURRENT_MA * EXPOSURE_TIME_MS / 1000 * dose_fraction))
    ds.CTDIvol = round(FULL_DOSE_CTDIVOL_MGY * dose_fraction, 4)
    phantom = Dataset()
    phantom.CodeValue, phantom.CodingSchemeDesignator = "113691", "DCM"
    phantom.CodeMeaning = "IEC Body Dosimetry Phantom"
    ds.CTDIPhantomTypeCodeSequence = [phantom]
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


def dose_report(datasets: list[Dataset]) -> Dataset:
    """The CT Radiation Dose SR of the example exam: one CT Acquisition per example slice."""
    from convert.checks.rdsr import Acquisition, ct_dose_report

    acquisitions = [Acquisition(protocol=str(ds.SeriesDescription), target_region=("818981001", "SCT", "Abdomen"),
                                ctdivol_mgy=float(ds.CTDIvol), dlp_mgy_cm=float(ds.CTDIvol) * SLICE_THICKNESS_MM / 10,
                                scanning_length_mm=SLICE_THICKNESS_MM, kvp=KVP, tube_current_ma=TUBE_CURRENT_MA,
                                exposure_time_s=EXPOSURE_TIME_MS / 1000, event_uid=uid("event", str(ds.SeriesNumber)))
                    for ds in datasets]
    first = datasets[0]
    return ct_dose_report(study_uid=first.StudyInstanceUID, series_uid=uid("series", "dose-report"),
                          instance_uid=uid("instance", "dose-report"), acquisitions=acquisitions,
                          patient_name=str(first.PatientName), patient_id=first.PatientID,
                          implementation_uid=uid("implementation"), study_description=first.StudyDescription)


def main(out_dir: Path = REPO / "examples", *, simulate: bool = False) -> list[Path]:
    """Write the examples; without ``simulate`` the pixels (and comments) of the existing files are kept."""
    written = []
    datasets = []
    for number, (stem, dose, views) in enumerate(EXAMPLES, start=1):
        path = out_dir / f"{stem}.dcm"
        description = f"synthetic dose {dose * 100:g}% {views} views"
        if simulate or not path.exists():
            from convert.sim.simulate import simulate_slice

            record = simulate_slice(SEED, dose, n_views=views, phantom_index=PHANTOM)
            comments = (f"SYNTHETIC (deltaiqa-lite simulator): seed {SEED}, phantom {PHANTOM}, dose fraction "
                        f"{dose:g}, {views} views; liver noise SD {record['noise_sd_hu']:.1f} HU, streak RMS "
                        f"{record['streak_rms_hu']:.1f} HU; simulator label {record['label']:.1f}")
            hu, spacing = record["hu"], float(record["pixel_spacing_mm"])
        else:
            old = pydicom.dcmread(path)
            comments = str(old.ImageComments)
            hu = old.pixel_array.astype(np.float64) * float(old.RescaleSlope) + float(old.RescaleIntercept)
            spacing = float(old.PixelSpacing[0])
        ds = ct_slice_dataset(hu, spacing, name=stem, series_number=number, description=description,
                              comments=comments, dose_fraction=dose)
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        datasets.append(ds)
        written.append(path)
        print(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}: {comments}")
    # Beside, not inside, examples/: every command that takes that folder scores its images only.
    report = out_dir.parent / "examples-dose" / "dose-report.dcm"
    report.parent.mkdir(exist_ok=True)
    pydicom.dcmwrite(report, dose_report(datasets), enforce_file_format=True)
    written.append(report)
    print(f"{report.relative_to(REPO) if report.is_relative_to(REPO) else report}: CT Radiation Dose SR of the exam")
    return written


if __name__ == "__main__":
    main(simulate="--simulate" in sys.argv[1:])
