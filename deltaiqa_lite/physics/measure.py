"""All of physics for one slice, never raising for bad input: what cannot be computed is None."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from deltaiqa_lite.physics.domain import HEAD_BODY_PARTS, TrainingDomain, _normal_body_part
from deltaiqa_lite.physics.dose import ssde_conversion_factor, uses_16cm_phantom
from deltaiqa_lite.physics.flags import PhysicsResult, physics_flags
from deltaiqa_lite.physics.label_rule import continuous_score
from deltaiqa_lite.physics.noise import BRAIN_TISSUE_HU, NOISE_BOX_MM, SOFT_TISSUE_HU, _block_sums, _even, _noise_level
from deltaiqa_lite.physics.size import BODY_THRESHOLD_HU, _water_equivalent_diameter


@dataclass
class SliceMeasurement:
    """Physics of one slice before the network's score is known (flags need the score)."""

    result: PhysicsResult
    truncated: bool = False
    phantom_16cm: bool = False
    body_part: str | None = None
    field_of_view_mm: float | None = None

    def finish(self, score: float | None, domain: TrainingDomain | None = None) -> PhysicsResult:
        """The result with its flags, given the network's score (None when not scored).

        ``domain`` is the model's training domain (:meth:`TrainingDomain.from_card`);
        None is :data:`V1_TRAINING_DOMAIN`.
        """
        result = PhysicsResult(**{**self.result.__dict__, "flags": []})
        result.flags = physics_flags(result, score, truncated=self.truncated, body_part=self.body_part,
                                     phantom_16cm=self.phantom_16cm,
                                     field_of_view_mm=self.field_of_view_mm, domain=domain)
        return result


def measure_slice(hu: np.ndarray | None, pixel_spacing_mm: tuple[float, float] | None, *,
                  ctdivol_mgy: float | None = None, ctdi_phantom: str | None = None,
                  body_part: str | None = None) -> SliceMeasurement:
    """Noise level, Dw, SSDE and noise score of one slice; never raises for bad input.

    Parameters
    ----------
    hu : numpy.ndarray or None
        2-D slice in HU at native resolution.
    pixel_spacing_mm : (row, column) in mm, or None
        Without it nothing spatial can be measured (noise window, areas).
    ctdivol_mgy : float, optional
        (0018,9345) CTDIvol.
    ctdi_phantom : str, optional
        Code value of (0018,9346) CTDI Phantom Type Code Sequence.
    body_part : str, optional
        (0018,0015) Body Part Examined.

    Returns
    -------
    SliceMeasurement
        Call :meth:`SliceMeasurement.finish` with the network's score for the
        final :class:`PhysicsResult` with flags.
    """
    notes: list[str] = []
    result = PhysicsResult()
    if ctdivol_mgy is not None and math.isfinite(ctdivol_mgy) and ctdivol_mgy >= 0:
        result.ctdivol_mgy = float(ctdivol_mgy)
    elif ctdivol_mgy is not None:
        notes.append(f"(0018,9345) CTDIvol is {ctdivol_mgy!r}; expected a non-negative number")
    phantom_16cm = uses_16cm_phantom(ctdi_phantom, body_part)
    measurement = SliceMeasurement(result, phantom_16cm=phantom_16cm, body_part=body_part)
    try:
        plane = None if hu is None else np.asarray(hu, dtype=np.float32)
        spacing_ok = (pixel_spacing_mm is not None and len(pixel_spacing_mm) == 2
                      and all(math.isfinite(float(v)) and float(v) > 0 for v in pixel_spacing_mm))
        if plane is None or plane.ndim != 2:
            notes.append("no 2-D HU plane to measure")
        elif not spacing_ok:
            notes.append(f"(0028,0030) Pixel Spacing is {'missing' if pixel_spacing_mm is None else pixel_spacing_mm}; "
                         "noise level and water-equivalent diameter need it")
        elif not np.isfinite(plane).all():
            notes.append("slice holds NaN or infinite HU; not measured")
        else:
            spacing = (float(pixel_spacing_mm[0]), float(pixel_spacing_mm[1]))
            measurement.field_of_view_mm = spacing[1] * plane.shape[1]
            # One pass of 2 x 2 block sums serves both measures.
            centre_hu = 0.5 * (SOFT_TISSUE_HU[0] + SOFT_TISSUE_HU[1])
            centred = _even(plane) - np.float32(centre_hu)
            blocks = _block_sums(centred)
            # A head (16 cm phantom or a head body part) is measured over brain tissue.
            head = phantom_16cm or _normal_body_part(body_part) in HEAD_BODY_PARTS
            noise = _noise_level(centred, blocks, centre_hu, spacing, box_mm=NOISE_BOX_MM,
                                 soft_tissue_hu=BRAIN_TISSUE_HU if head else SOFT_TISSUE_HU)
            if noise.noise_hu is not None:
                result.noise_hu = noise.noise_hu
                result.noise_score = continuous_score(noise.noise_hu)
            if noise.note:
                notes.append(noise.note)
            means = blocks * np.float32(0.25) + np.float32(centre_hu)
            size = _water_equivalent_diameter(means, (2.0 * spacing[0], 2.0 * spacing[1]),
                                              threshold_hu=BODY_THRESHOLD_HU)
            result.water_equivalent_diameter_mm = size.dw_mm
            measurement.truncated = size.truncated
            if size.note:
                notes.append(size.note)
    except Exception as error:  # a physics bug must never cost the slice its score
        notes.append(f"physics failed: {type(error).__name__}: {error}")
    if result.ctdivol_mgy is None:
        notes.append("no (0018,9345) CTDIvol; no SSDE")
    elif result.water_equivalent_diameter_mm is not None:
        factor = ssde_conversion_factor(result.water_equivalent_diameter_mm, phantom_16cm=phantom_16cm)
        result.ssde_mgy = result.ctdivol_mgy * factor
    result.physics_note = "; ".join(notes) if notes else None
    return measurement
