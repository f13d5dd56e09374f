"""Dose: SSDE from CTDIvol and Dw (AAPM Reports 204 and 220), 32 cm or 16 cm phantom."""

from __future__ import annotations

import math

from deltaiqa_lite.physics.domain import HEAD_BODY_PARTS, _normal_body_part

# -- SSDE (AAPM Report 204, 2011; Report 220 for Dw in place of effective diameter) --
SSDE_FIT_32CM = (3.704369, 0.03671937)   # f = a exp(-b Dw[cm])
SSDE_FIT_16CM = (1.874799, 0.03871313)
PHANTOM_16CM_CODES = {"113690"}          # IEC Head Dosimetry Phantom (CID 4052)
PHANTOM_32CM_CODES = {"113691"}          # IEC Body Dosimetry Phantom


# ----------------------------------------------------------------- SSDE

def uses_16cm_phantom(ctdi_phantom: str | None, body_part: str | None) -> bool:
    """Whether CTDIvol refers to the 16 cm (head) phantom.

    (0018,9346) CTDI Phantom Type Code Sequence decides when present
    (113690 IEC Head, 113691 IEC Body); otherwise a head body part
    (0018,0015) means 16 cm, anything else 32 cm.
    """
    if ctdi_phantom in PHANTOM_16CM_CODES:
        return True
    if ctdi_phantom in PHANTOM_32CM_CODES:
        return False
    return _normal_body_part(body_part) in HEAD_BODY_PARTS


def ssde_conversion_factor(dw_mm: float, *, phantom_16cm: bool = False) -> float:
    """AAPM Report 204 conversion factor f from CTDIvol to SSDE at water-equivalent diameter ``dw_mm``.

    32 cm phantom: ``f = 3.704369 exp(-0.03671937 Dw[cm])``;
    16 cm phantom: ``f = 1.874799 exp(-0.03871313 Dw[cm])``
    (Report 204, with Dw for the effective diameter as Report 220 recommends).
    """
    a, b = SSDE_FIT_16CM if phantom_16cm else SSDE_FIT_32CM
    return a * math.exp(-b * dw_mm / 10.0)
