"""Selection policy: which CT images get a score, decided from the header alone.

Delta-IQA was trained on axial attenuation images that radiologists rated
(LDCTIQAC 2023). A QA node also receives localizers, reformats, MIP/MinIP and
thick-slab averages, perfusion and other parametric maps, dual-energy maps and
dose screens. Scoring those pollutes the QA log and the control charts of a
protocol, so the reader refuses them here, one rule per kind of image, each
with a one-line reason naming the element and the value.

The policy is a table (:data:`RULES`) of pure checks over a pydicom Dataset
and, for enhanced (multi-frame) objects, the frame's functional groups. What
is *scored*: axial CT reconstructions, ORIGINAL or DERIVED, PRIMARY or
SECONDARY, including iterative and deep-learning reconstructions. Nothing is
refused for being DERIVED or SECONDARY alone. Where the header cannot tell,
the image is scored and a note says so (:attr:`Decision.note`).

``accept`` (``--accept`` on the command line) names values or kinds to score
on purpose; the result then records what was overridden
(:attr:`Decision.override`). The table, the values each rule covers and how
sure we are of vendor values are in ``docs/selection-policy.md``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from deltaiqa_lite.errors import RefusedInput

__all__ = ["RULES", "Rule", "Match", "Decision", "PolicyRefusal", "MAX_TILT_DEGREES",
           "decide", "matches", "normalise_accept", "header_refusal_kind", "tilt_degrees"]

MAX_TILT_DEGREES = 30.0

SECONDARY_CAPTURE_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.7",      # Secondary Capture Image Storage
    "1.2.840.10008.5.1.4.1.1.7.1",    # Multi-frame Single Bit Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.2",    # Multi-frame Grayscale Byte Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.3",    # Multi-frame Grayscale Word Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.4",    # Multi-frame True Color Secondary Capture
}
PARAMETRIC_MAP_CLASSES = {"1.2.840.10008.5.1.4.1.1.30"}  # Parametric Map Storage


class PolicyRefusal(RefusedInput):
    """An image of a kind the selection policy does not score (localizer, MIP, perfusion map ...).

    Attributes
    ----------
    kind : str
        The rule's kind (``"localizer"``, ``"MIP"``, ``"perfusion map"`` ...), what the QA log counts.
    key : str
        The value that matched; ``accept`` takes it (or ``kind``) to score such images anyway.
    """

    def __init__(self, path: str, reason: str, *, kind: str, key: str) -> None:
        super().__init__(path, reason)
        self.kind = kind
        self.key = key


@dataclass(frozen=True)
class Rule:
    """One row of the policy table: what is looked at, which values, and why they are refused.

    ``element`` is the keyword of the element looked at (``ImageType`` stands for
    Image Type of classic objects and Frame Type of enhanced frames); ``values`` the
    values that make the rule match (upper case); ``reason`` the text after
    "<element> is '<value>'; ".
    """

    kind: str
    element: str
    values: frozenset[str]
    reason: str


def _rule(kind: str, element: str, values: Iterable[str], reason: str) -> Rule:
    return Rule(kind, element, frozenset(values), reason)


# Image Type / Frame Type values from Value 3 on. Standard terms: PS3.3 C.8.2.1.1.1 (CT Value 3),
# C.8.16.1.4 and C.8.15.2.1.1.4 (Derived Pixel Contrast, Value 4), the multi-energy Value 4/5
# terms of C.8.2.1.1.1; the rest are vendor or MR-style tokens (see docs/selection-policy.md
# for which is which and how sure we are).
RULES: tuple[Rule, ...] = (
    _rule("secondary capture", "SOPClassUID", SECONDARY_CAPTURE_CLASSES,
          "a secondary capture (screen shot, dose screen), not a reconstructed slice"),
    _rule("parametric map", "SOPClassUID", PARAMETRIC_MAP_CLASSES,
          "a parametric map, not an attenuation image"),
    _rule("secondary capture", "ImageType", {"SCREEN SAVE"},
          "a screen capture, not a reconstructed slice"),
    _rule("localizer", "ImageType", {"LOCALIZER"},
          "a localizer (scout) is not an axial slice"),
    _rule("projection", "ImageType", {"PROJECTION", "PROJECTION IMAGE", "VOLUME_RENDER",
                                      "SURFACE_RENDER"},
          "a projection or rendering, not a slice"),
    _rule("MIP", "ImageType", {"MIP", "MAXIP", "MAX_IP", "MAXIMUM"},
          "a maximum intensity projection, not a slice"),
    _rule("MinIP", "ImageType", {"MINIP", "MNIP", "MIN_IP", "MINIMUM"},
          "a minimum intensity projection, not a slice"),
    _rule("thick-slab average", "ImageType", {"AVERAGE", "MEAN", "ADDITION"},
          "a slab average or sum of slices, not a reconstructed slice"),
    _rule("perfusion map", "ImageType", {"RCBF", "RCBV", "CBF", "CBV", "MTT", "TTP", "TMAX"},
          "a perfusion map, not an attenuation image"),
    _rule("parametric map", "ImageType", {"SUBTRACTION", "DIVISION", "MULTIPLICATION",
                                          "STD_DEVIATION", "T_TEST", "Z_SCORE"},
          "a computed (parametric) map, not an attenuation image"),
    _rule("virtual monoenergetic", "ImageType", {"VMI", "MONOENERGETIC", "MONOCHROMATIC"},
          "a dual-energy virtual monoenergetic image, unlike the images the readers rated"),
    _rule("material map", "ImageType", {"MAT_SPECIFIC", "MAT_REMOVED", "MAT_FRACTIONAL",
                                        "EFF_ATOMIC_NUM", "ELECTRON_DENSITY", "MAT_MODIFIED",
                                        "MAT_VALUE_BASED", "VNC", "IODINE"},
          "a dual-energy material map (iodine, virtual non-contrast, effective Z ...), "
          "not an attenuation image"),
    _rule("colour map", "PixelPresentation", {"COLOR", "MIXED", "TRUE_COLOR"},
          "meant to be shown in colour (a map), not a greyscale attenuation image"),
    _rule("projection", "VolumetricProperties", {"DISTORTED"},
          "pixels are a projection or rendering of the volume, not a slice of it"),
    _rule("MIP", "VolumeBasedCalculationTechnique", {"MAX_IP"},
          "a maximum intensity projection, not a slice"),
    _rule("MinIP", "VolumeBasedCalculationTechnique", {"MIN_IP"},
          "a minimum intensity projection, not a slice"),
    _rule("projection", "VolumeBasedCalculationTechnique", {"VOLUME_RENDER", "SURFACE_RENDER"},
          "a rendering of the volume, not a slice"),
    _rule("curved reformat", "VolumeBasedCalculationTechnique", {"CURVED_MPR"},
          "a curved reformat, not a planar slice"),
    # CID 7203 Image Derivation (DCM codes, as in pydicom's concept dictionary).
    _rule("MIP", "DerivationCodeSequence", {"113078", "113048"},
          "derived by maximum intensity projection"),
    _rule("MinIP", "DerivationCodeSequence", {"113079", "113051"},
          "derived by minimum intensity projection"),
    _rule("projection", "DerivationCodeSequence", {"113074", "113075"},
          "a volume or surface rendering, not a slice"),
    _rule("curved reformat", "DerivationCodeSequence", {"113073"},
          "a curved reformat, not a planar slice"),
    _rule("thick-slab average", "DerivationCodeSequence", {"113049", "113042"},
          "derived by pixel-by-pixel mean or addition of images"),
    _rule("parametric map", "DerivationCodeSequence", {"113062", "113046", "113053"},
          "derived by pixel-by-pixel subtraction, division or multiplication"),
    _rule("perfusion map", "DerivationCodeSequence", {"129104"},
          "derived by perfusion image analysis"),
    _rule("off-axial", "ImageOrientationPatient", {"OFF-AXIAL"},
          "deltaiqa-lite scores axial slices only"),
)

# Image Type Value 3 terms that need no note (an axial slice, or a CT acquisition flavour
# of one, PS3.3 C.8.16.1.3 and C.8.15.2.1.1.3).
AXIAL_FLAVOURS = {"AXIAL", "ANGIO", "CARDIAC", "CARDIAC_GATED", "CARDRESP_GATED", "CARDIAC_CTA",
                  "CARDIAC_CASCORE", "DYNAMIC", "HELICAL", "MOTION", "PRE_CONTRAST",
                  "POST_CONTRAST", "RESP_GATED", "REST", "STATIC", "STRESS", "VOLUME",
                  "ATTENUATION", "REFERENCE", "NON_PARALLEL", "PARALLEL", "WHOLE_BODY"}


@dataclass(frozen=True)
class Match:
    """A rule that matched one image (or frame)."""

    rule: Rule
    element: str   # "(0008,0008) Image Type" or "(0008,9007) Frame Type"
    shown: str     # the whole value as in the header, e.g. 'DERIVED\\PRIMARY\\PERFUSION\\RCBF'
    key: str       # the value that matched, what accept names

    def reason(self, where: str = "") -> str:
        """``<element><where> is '<value>'; <reason> (--accept <key> scores it anyway)``."""
        return (f"{self.element}{where} is {self.shown}; {self.rule.reason} "
                f"(--accept {self.key} scores it anyway)")


@dataclass(frozen=True)
class Decision:
    """What the policy decided for an image it lets through.

    ``override`` names the accepted values (comma-separated) when a refused kind was
    scored on purpose; ``note`` says what the header could not tell.
    """

    override: str | None = None
    note: str | None = None


def _tag(keyword: str) -> str:
    tag = pydicom.datadict.tag_for_keyword(keyword)
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {pydicom.datadict.dictionary_description(tag)}"


def _values(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        value = [value]
    return [str(v).strip().upper() for v in value]


def functional_item(ds: Dataset, frame: int | None, sequence: str) -> Dataset | None:
    """The item of ``sequence`` for one frame: per-frame functional groups first, then shared."""
    if frame is None:
        return None
    for groups_keyword, index in (("PerFrameFunctionalGroupsSequence", frame),
                                  ("SharedFunctionalGroupsSequence", 0)):
        groups = ds.get(groups_keyword)
        if groups and len(groups) > index:
            item = groups[index]
            if sequence in item and len(item[sequence].value) > 0:
                return item[sequence][0]
    return None


def _image_type(ds: Dataset, frame: int | None) -> tuple[str, list[str]]:
    """(element text, values): Frame Type of an enhanced frame where present, else Image Type."""
    item = functional_item(ds, frame, "CTImageFrameTypeSequence")
    if item is not None and item.get("FrameType") not in (None, ""):
        return _tag("FrameType"), _values(item.FrameType)
    return _tag("ImageType"), _values(ds.get("ImageType"))


def _frame_value(ds: Dataset, frame: int | None, keyword: str) -> tuple[str, str | None]:
    """A CT Image Frame Type attribute (Pixel Presentation ...) of a frame, else top level."""
    item = functional_item(ds, frame, "CTImageFrameTypeSequence")
    value = item.get(keyword) if item is not None else None
    if value in (None, ""):
        value = ds.get(keyword)
    values = _values(value)
    return _tag(keyword), (values[0] if values else None)


def _derivation_codes(ds: Dataset, frame: int | None) -> list[tuple[str, str]]:
    """(code value, meaning) of DCM derivation codes, top level and in the frame's Derivation Image items."""
    items = list(ds.get("DerivationCodeSequence") or [])
    derivation = functional_item(ds, frame, "DerivationImageSequence")
    if derivation is not None:
        items += list(derivation.get("DerivationCodeSequence") or [])
    codes = []
    for item in items:
        if str(item.get("CodingSchemeDesignator", "") or "").upper() == "DCM":
            codes.append((str(item.get("CodeValue", "") or ""), str(item.get("CodeMeaning", "") or "")))
    return codes


def tilt_degrees(normal: np.ndarray | None) -> float | None:
    """Angle in degrees between a unit slice normal and the patient z axis (None without one)."""
    if normal is None:
        return None
    return math.degrees(math.acos(min(1.0, abs(float(normal[2])))))


def _fmt(values: Iterable[float]) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in values) + "]"


def matches(ds: Dataset, frame: int | None = None, *, iop: list[float] | None = None,
            normal: np.ndarray | None = None) -> list[Match]:
    """Every rule of :data:`RULES` that matches this image (or frame), in table order.

    Parameters
    ----------
    ds : pydicom.Dataset
        The object's header (pixel data not needed).
    frame : int, optional
        0-based frame of an enhanced object: its Frame Type and CT Image Frame Type
        attributes are looked at instead of the top-level ones.
    iop, normal : optional
        Image Orientation (Patient) of the frame and its unit normal, for the
        off-axial rule (the reader computes them once for both uses).
    """
    found: list[Match] = []
    image_type_element, image_type = _image_type(ds, frame)
    image_type_shown = "'" + "\\".join(image_type) + "'"
    sop_class = str(ds.get("SOPClassUID", "") or "")
    tilt = tilt_degrees(normal)
    codes = _derivation_codes(ds, frame)
    single: dict[str, tuple[str, str | None]] = {}
    for rule in RULES:
        if rule.element == "ImageType":
            # Values 1 and 2 (ORIGINAL/DERIVED, PRIMARY/SECONDARY) never refuse.
            for value in image_type[2:]:
                if value in rule.values:
                    found.append(Match(rule, image_type_element, image_type_shown, value))
                    break
        elif rule.element == "SOPClassUID":
            if sop_class in rule.values:
                name = pydicom.uid.UID(sop_class).name or sop_class
                found.append(Match(rule, _tag("SOPClassUID"), f"'{name}'", _canonical(rule.kind)))
        elif rule.element == "DerivationCodeSequence":
            for code, meaning in codes:
                if code in rule.values:
                    found.append(Match(rule, _tag("DerivationCodeSequence"),
                                       f"(DCM {code}, '{meaning}')", code))
                    break
        elif rule.element == "ImageOrientationPatient":
            if tilt is not None and tilt > MAX_TILT_DEGREES:
                shown = (f"{_fmt(iop or [])}: slice normal {tilt:.1f} degrees from the patient z axis "
                         f"(limit {MAX_TILT_DEGREES:g})")
                found.append(Match(rule, _tag("ImageOrientationPatient"), shown, "OFF-AXIAL"))
        else:
            if rule.element not in single:
                single[rule.element] = _frame_value(ds, frame, rule.element)
            element, value = single[rule.element]
            if value is not None and value in rule.values:
                found.append(Match(rule, element, f"'{value}'", value))
    return found


def _notes(ds: Dataset, frame: int | None, found: list[Match]) -> list[str]:
    """What the header leaves open for an image the rules let through (``found``: accepted matches)."""
    element, image_type = _image_type(ds, frame)
    if any(match.rule.element == "ImageType" for match in found):
        return []  # the image type said what the image is, and it was accepted on purpose
    if not image_type:
        return [f"{element} is missing; scored as an axial CT image because nothing says otherwise"]
    notes = []
    flavour = image_type[2] if len(image_type) > 2 else ""
    if flavour == "PERFUSION":
        notes.append(f"{element} value 3 is PERFUSION without a map value: scored as a dynamic "
                     "(perfusion source) attenuation image")
    elif not flavour:
        notes.append(f"{element} has no value 3 (AXIAL or LOCALIZER); scored as an axial CT image")
    elif flavour not in AXIAL_FLAVOURS:
        notes.append(f"{element} value 3 is '{flavour}', not AXIAL; scored because the orientation "
                     "is within the axial limit")
    if (str(ds.get("MultienergyCTAcquisition", "") or "").upper() == "YES"
            and "ENERGY_PROP_WT" not in image_type):
        notes.append("(0018,9361) Multi-energy CT Acquisition is YES but the image type does not "
                     "say which kind of multi-energy image this is; scored")
    return notes


def _canonical(text: str) -> str:
    return str(text).strip().upper().replace(" ", "_").replace("-", "_")


def normalise_accept(accept: Iterable[str] | None) -> frozenset[str]:
    """``accept`` values in one spelling: ``mip``, ``MIP``; ``off-axial``, ``OFF_AXIAL``; ``screen save``."""
    return frozenset(_canonical(v) for v in (accept or ()) if str(v).strip())


def decide(name: str, ds: Dataset, frame: int | None = None, frames: int = 1, *,
           iop: list[float] | None = None, normal: np.ndarray | None = None,
           accept: Collection[str] = frozenset()) -> Decision:
    """Apply the policy to one image (or frame): refuse it, or say how it is scored.

    Parameters
    ----------
    name : str
        File name, leads the refusal message.
    ds : pydicom.Dataset
    frame, frames : int
        0-based frame of an enhanced object and the number of frames (for the message);
        ``frame=None`` for classic objects.
    iop, normal : optional
        Orientation of the image and its unit normal (off-axial rule).
    accept : collection of str
        Values or kinds to score on purpose, as :func:`normalise_accept` gives them.

    Returns
    -------
    Decision

    Raises
    ------
    PolicyRefusal
        The first matching rule that ``accept`` does not name.
    """
    found = matches(ds, frame, iop=iop, normal=normal)
    overridden = []
    for match in found:
        if _canonical(match.key) in accept or _canonical(match.rule.kind) in accept:
            if match.key not in overridden:
                overridden.append(match.key)
            continue
        where = f" of frame {frame + 1}/{frames}" if frame is not None and frames > 1 else ""
        raise PolicyRefusal(name, match.reason(where), kind=match.rule.kind, key=match.key)
    notes = _notes(ds, frame, found)
    return Decision(override=",".join(overridden) or None, note="; ".join(notes) or None)


def header_refusal_kind(sop_class_uid: str | None, modality: str | None) -> str:
    """The kind the QA log counts for an object refused before reading (SOP Class, Modality)."""
    if sop_class_uid in SECONDARY_CAPTURE_CLASSES:
        return "secondary capture"
    if sop_class_uid in PARAMETRIC_MAP_CLASSES:
        return "parametric map"
    return "not CT"

