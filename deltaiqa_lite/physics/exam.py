"""The per-exam measure of CMS1074 / CMS1056: categories, thresholds, out-of-range; pure stdlib.

"Excessive Radiation Dose or Inadequate Image Quality for Diagnostic CT in
Adults" (steward Alara Imaging). Its logic library ``AlaraCommonFunctions``
1.5.000 gives, per CT category, a global-noise threshold (HU) and a
size-adjusted-dose threshold (mGy.cm); an exam is out of range when either
value is at or above its threshold. See ``docs/exam-measure.md``.

The size-adjusted dose itself is computed by the steward's translation
software; no public formula was found, so :func:`size_adjusted_dose` returns
None with that reason rather than an invented factor.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from deltaiqa_lite.errors import CategoryMapError

#: LOINC codes of the measure's observation components.
LOINC_GLOBAL_NOISE = "96912-1"          # Calculated CT global noise, unit [hnsf'U]
LOINC_SIZE_ADJUSTED_DOSE = "96913-9"    # Calculated CT size-adjusted dose, unit mGy.cm
UNCATEGORIZED = "uncategorized"


@dataclass(frozen=True)
class Category:
    """One CT category of the measure: its LOINC answer code and the two thresholds."""

    name: str
    loinc: str
    noise_hu: float
    size_adjusted_dose_mgy_cm: float


# AlaraCommonFunctions 1.5.000, define "CT Scan Qualifies": (category, noise, SAD).
CATEGORIES: dict[str, Category] = {c.name: c for c in (
    Category("Abdomen and Pelvis Low Dose", "LA31752-1", 64, 598),
    Category("Abdomen and Pelvis Routine Dose", "LA31753-9", 29, 644),
    Category("Abdomen and Pelvis High Dose", "LA31754-7", 29, 1260),
    Category("Cardiac Low Dose", "LA31755-4", 55, 93),
    Category("Cardiac Routine Dose", "LA31756-2", 32, 576),
    Category("Chest Low Dose", "LA31758-8", 55, 377),
    Category("Chest Routine Dose", "LA31759-6", 49, 377),
    Category("Cardiac High Dose or Chest High Dose", "LA31761-2", 49, 1282),
    Category("Head Low Dose", "LA31762-0", 115, 582),
    Category("Head Routine Dose", "LA31763-8", 115, 1025),
    Category("Head High Dose", "LA31764-6", 115, 1832),
    Category("Extremity", "LA31765-3", 73, 320),
    Category("Neck or Cervical Spine", "LA31766-1", 25, 1260),
    Category("Thoracic or Lumbar Spine", "LA31767-9", 25, 1260),
    Category("Simultaneous Chest and Abdomen and Pelvis", "LA31768-7", 29, 1637),
    Category("Simultaneous Thoracic and Lumbar Spine", "LA31851-1", 25, 2520),
    Category("Simultaneous Head and Neck Routine Dose", "LA31769-5", 25, 2285),
    Category("Simultaneous Head and Neck High Dose", "LA31770-3", 25, 3092),
)}

DEFAULT_CATEGORY_FILE = Path(__file__).with_name("exam_categories.toml")

SAD_UNAVAILABLE = ("size-adjusted dose unavailable: the measure takes it as an input computed by the "
                   "steward's software, and no public definition of its size adjustment was found "
                   "(see docs/exam-measure.md)")


# ----------------------------------------------------------------- category mapping

@dataclass(frozen=True)
class CategoryRule:
    """Exams whose descriptions contain one of ``words`` (or carry one of ``codes``) are ``category``."""

    category: str
    words: tuple[str, ...] = ()
    codes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExamText:
    """What an exam says about itself: descriptions, procedure codes, body parts (all untrusted)."""

    descriptions: tuple[str, ...] = ()
    procedure_codes: tuple[str, ...] = ()
    body_parts: tuple[str, ...] = ()


def load_category_rules(path: str | Path | None = None) -> list[CategoryRule]:
    """The rules of a site's category file (TOML), or the shipped default when ``path`` is None.

    The file holds ``[[rule]]`` tables with ``category`` (one of the measure's
    18 names), ``words`` (case-insensitive whole words or phrases matched in
    study, series and protocol descriptions, requested-procedure code
    meanings and body part) and ``codes`` (procedure code values). The first
    rule that matches wins, so put the combined exams first.
    """
    source = Path(path) if path is not None else DEFAULT_CATEGORY_FILE
    try:
        import tomllib
    except ImportError as error:  # Python 3.10
        raise CategoryMapError(f"{source}: reading a category file needs Python 3.11 or later (tomllib); "
                               "this is Python 3.10") from error
    try:
        document = tomllib.loads(source.read_text(encoding="utf-8"))
    except OSError as error:
        raise CategoryMapError(f"{source}: cannot read the category file: {error.strerror or error}") from error
    except tomllib.TOMLDecodeError as error:
        raise CategoryMapError(f"{source}: not valid TOML: {error}") from error
    rules = []
    for number, table in enumerate(document.get("rule", []), 1):
        name = table.get("category") if isinstance(table, dict) else None
        if name not in CATEGORIES:
            raise CategoryMapError(f"{source}: rule {number} has category {name!r}; expected one of the "
                                   f"measure's: {', '.join(CATEGORIES)}")
        words = table.get("words", [])
        codes = table.get("codes", [])
        if not all(isinstance(w, str) for w in words) or not all(isinstance(c, str) for c in codes):
            raise CategoryMapError(f"{source}: rule {number}: 'words' and 'codes' must be lists of strings")
        if not words and not codes:
            raise CategoryMapError(f"{source}: rule {number} ({name}) has neither 'words' nor 'codes'")
        rules.append(CategoryRule(name, tuple(w.lower() for w in words), tuple(codes)))
    if not rules:
        raise CategoryMapError(f"{source}: no [[rule]] tables")
    return rules


def _normal_text(text: str) -> str:
    """Lower case, every run of non-alphanumerics one space, padded: whole-word matching by ``in``."""
    return " " + re.sub(r"[^0-9a-z]+", " ", text.lower()).strip() + " "


def categorize(exam: ExamText, rules: list[CategoryRule]) -> str:
    """The exam's CT category by the first matching rule, else :data:`UNCATEGORIZED`."""
    text = _normal_text(" | ".join(exam.descriptions + exam.body_parts))
    codes = set(exam.procedure_codes)
    for rule in rules:
        if codes.intersection(rule.codes):
            return rule.category
        if any(_normal_text(word) in text for word in rule.words):
            return rule.category
    return UNCATEGORIZED


# ----------------------------------------------------------------- per-exam values

@dataclass
class ExamMeasure:
    """The measure's values of one exam, each with where it came from."""

    category: str = UNCATEGORIZED
    noise_hu: float | None = None
    noise_source: str | None = None
    dw_middle_mm: float | None = None
    dlp_mgy_cm: float | None = None
    dlp_source: str | None = None
    size_adjusted_dose_mgy_cm: float | None = None
    out_of_range: bool | None = None
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def exam_noise(slice_noise_hu: list[float | None]) -> float | None:
    """The exam's global noise: the median of the per-slice global noise levels that exist.

    Applied to the slices of the exam's diagnostic axial series (the caller
    picks it). The median ignores the few slices (vertex, shoulders) where a
    slice value is still off.
    """
    values = [v for v in slice_noise_hu if v is not None and math.isfinite(v)]
    return float(statistics.median(values)) if values else None


def middle_value(positions_mm: list[float], values: list[float | None]) -> float | None:
    """The value at the slice nearest the middle of the scan range (positions along z), skipping gaps."""
    known = [(p, v) for p, v in zip(positions_mm, values) if v is not None and math.isfinite(v)]
    if not known:
        return None
    middle = 0.5 * (min(p for p, _ in known) + max(p for p, _ in known))
    return float(min(known, key=lambda item: (abs(item[0] - middle), item[0]))[1])


def estimated_dlp(ctdivol_mgy: list[float | None], positions_mm: list[float],
                  slice_thickness_mm: float | None) -> float | None:
    """CTDIvol x covered length in cm: mean CTDIvol of the slices times (z range + one slice thickness).

    An estimate from the images only (no overranging, no scout, one series);
    the RDSR's accumulated DLP replaces it when present.
    """
    doses = [v for v in ctdivol_mgy if v is not None and math.isfinite(v)]
    if not doses or not positions_mm:
        return None
    length_mm = max(positions_mm) - min(positions_mm) + (slice_thickness_mm or 0.0)
    if length_mm <= 0:
        return None
    return statistics.fmean(doses) * length_mm / 10.0


def size_adjusted_dose(dlp_mgy_cm: float | None, dw_mm: float | None) -> tuple[float | None, str]:
    """The measure's size-adjusted dose, or None with the reason.

    Always None for now: see :data:`SAD_UNAVAILABLE`.
    """
    return None, SAD_UNAVAILABLE


def out_of_range(category: str, noise_hu: float | None,
                 sad_mgy_cm: float | None) -> tuple[bool | None, list[str]]:
    """Whether the exam is out of range for its category, and why.

    As the measure's CQL: ``noise >= threshold or SAD >= threshold``, with
    three-valued logic: a missing value is unknown, so the result is True
    when a known value is at or above its threshold, False when both are
    known and below, and None otherwise (and for an uncategorized exam).
    """
    limits = CATEGORIES.get(category)
    if limits is None:
        return None, [f"category {category!r} has no thresholds"]
    reasons: list[str] = []
    unknown: list[str] = []
    for label, value, threshold, unit in (("noise", noise_hu, limits.noise_hu, "HU"),
                                          ("size-adjusted dose", sad_mgy_cm, limits.size_adjusted_dose_mgy_cm,
                                           "mGy.cm")):
        if value is None:
            unknown.append(label)
        elif value >= threshold:
            reasons.append(f"{label} {value:.1f} {unit} >= {threshold:g} {unit}")
    if reasons:
        return True, reasons
    if unknown:
        return None, [f"{' and '.join(unknown)} unknown; the other below its threshold" if len(unknown) == 1
                      else "noise and size-adjusted dose unknown"]
    return False, []
