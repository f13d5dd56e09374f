"""Shared builders for the QA tests: small but real DICOM files made with pydicom."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's example root, fine for test objects


def ct_dataset(*, size: int = 64, seed: int = 0, series_uid: str | None = None,
               study_uid: str | None = None, sop_uid: str | None = None,
               modality: str = "CT", sop_class: str = CT_IMAGE_STORAGE,
               station: str = "CT1", protocol: str = "ABDOMEN", kernel: str = "B30f",
               instance: int = 1, noise_hu: float = 20.0) -> Dataset:
    """A single-frame CT image: a water disc in air with Gaussian noise, int16 stored values."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    hu = np.where(r < size * 0.4, 0.0, -1000.0) + rng.normal(0.0, noise_hu, (size, size))
    stored = np.round(hu + 1024.0).astype(np.int16)  # intercept -1024

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid(prefix=ROOT)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid(prefix=ROOT)
    ds.SeriesInstanceUID = series_uid or generate_uid(prefix=ROOT)
    ds.Modality = modality
    ds.PatientName = "DOE^JANE"
    ds.PatientID = "PID-12345"
    ds.PatientBirthDate = "19700101"
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = "20240305"
    ds.AcquisitionTime = "101530.250"
    ds.StationName = station
    ds.Manufacturer = "ACME"
    ds.ManufacturerModelName = "Scan 9000"
    ds.ProtocolName = protocol
    ds.SeriesDescription = f"{protocol} 3mm"
    ds.BodyPartExamined = "ABDOMEN"
    ds.KVP = "120"
    ds.XRayTubeCurrent = 250
    ds.Exposure = 180
    ds.CTDIvol = 9.5
    ds.ConvolutionKernel = kernel
    ds.SliceThickness = "3.0"
    ds.ReconstructionDiameter = "380"
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [-190.0, -190.0, -3.0 * instance]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [380.0 / size, 380.0 / size]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.PixelData = stored.tobytes()
    return ds


def write_ct(path: Path, **kwargs) -> Dataset:
    """Write :func:`ct_dataset` to ``path`` (DICOM Part 10) and return the dataset."""
    ds = ct_dataset(**kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return ds


class Clock:
    """A hand-driven monotonic clock, so settle times need no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fill_disk(folder: Path) -> Path:
    """Write zeros into ``folder/filler`` until the disk is full; the filler's path."""
    filler = folder / "filler"
    # Unbuffered: a buffered file would still hold the tail of the last, partial write
    # and raise ENOSPC again on close (whether it does depends on the free space left).
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    return filler


class StorageSCP:
    """A pynetdicom Storage SCP for SRs on a free loopback port, answering ``status`` to every C-STORE.

    With ``ssl_context`` it speaks only TLS (the context decides whether client
    certificates are required). Needs the 'net' extra (imported here, not at module level).
    """

    def __init__(self, status: int = 0x0000, port: int = 0, ssl_context=None) -> None:
        import threading

        from pynetdicom import AE, evt

        from deltaiqa_lite.qa.outbox import COMPREHENSIVE_3D_SR, Destination

        self.status = status
        self.received: list = []
        self.calling: list[str] = []
        self.lock = threading.Lock()
        ae = AE(ae_title="PACS")
        ae.add_supported_context(COMPREHENSIVE_3D_SR)
        self.server = ae.start_server(("127.0.0.1", port), block=False, ssl_context=ssl_context,
                                      evt_handlers=[(evt.EVT_C_STORE, self._on_store)])
        self.port = self.server.server_address[1]
        self.destination = Destination("PACS", "127.0.0.1", self.port)

    def _on_store(self, event) -> int:
        with self.lock:
            self.calling.append(event.assoc.requestor.ae_title)
            if self.status == 0x0000:
                self.received.append(event.dataset)
        return self.status

    def stop(self) -> None:
        self.server.shutdown()
