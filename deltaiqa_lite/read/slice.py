"""The :class:`Slice`: one axial plane ready for preprocessing, with its identity."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Slice:
    """One axial plane ready for preprocessing, with its identity.

    Attributes
    ----------
    path : str
        File it came from.
    frame : int or None
        Frame (DICOM multi-frame) or page (TIFF) or index (3-D ``.npy``);
        None for a single-frame file.
    hu : numpy.ndarray
        float32 2-D plane in Hounsfield units, in display orientation
        (anterior up, patient's right on the image's left). For LDCTIQAC
        TIFF it is the inverse of the LDCTIQAC window, see ``unit``.
    unit : numpy.ndarray or None
        The plane as stored when it is already windowed to [0, 1]
        (LDCTIQAC TIFF); preprocessing uses it directly so no HU round trip
        can change a value.
    sop_instance_uid, series_uid, study_uid : str or None
        DICOM identity.
    instance_number : int or None
        (0020,0013), the fallback sort key within a series.
    slice_location : float or None
        Position along the slice normal in mm (Image Position (Patient)
        projected on the normal), else (0020,1041) Slice Location.
    normal : tuple of float or None
        Unit slice normal (row x column direction) in patient coordinates.
    pixel_spacing_mm : tuple of float or None
        (row spacing, column spacing) after orientation normalisation.
    series_description : str or None
        (0008,103E).
    policy_override : str or None
        Values of kinds the selection policy refuses that were scored on purpose
        (``accept``), comma-separated; None when nothing was overridden.
    policy_note : str or None
        What the header could not tell the selection policy (scored anyway).
    ctdivol_mgy : float or None
        (0018,9345) CTDIvol (per frame for enhanced CT: CT Exposure Sequence).
    ctdi_phantom : str or None
        Code value of (0018,9346) CTDI Phantom Type Code Sequence
        (113690 IEC head 16 cm, 113691 IEC body 32 cm).
    body_part : str or None
        (0018,0015) Body Part Examined.
    padding : numpy.ndarray or None
        bool plane, in display orientation, of the pixels the scanner did not
        reconstruct ((0028,0120) Pixel Padding Value; ``hu`` holds -1000 there).
        None when the file declares no padding.
    """

    path: str
    hu: np.ndarray
    frame: int | None = None
    unit: np.ndarray | None = None
    sop_instance_uid: str | None = None
    series_uid: str | None = None
    study_uid: str | None = None
    instance_number: int | None = None
    slice_location: float | None = None
    normal: tuple[float, float, float] | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    series_description: str | None = None
    policy_override: str | None = None
    policy_note: str | None = None
    ctdivol_mgy: float | None = None
    ctdi_phantom: str | None = None
    body_part: str | None = None
    padding: np.ndarray | None = None

    @property
    def name(self) -> str:
        """``path`` or ``path[frame]`` for multi-frame inputs."""
        return self.path if self.frame is None else f"{self.path}[{self.frame}]"
