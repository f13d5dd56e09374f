"""Per-exam measure from the QA log: CT category, global noise, size, DLP, SAD, out of range.

An exam is a Study Instance UID. Its values (definitions in
``docs/exam-measure.md``):

- the diagnostic axial series: the series of the study with the most scored
  slices that have a noise level (ties: the thinner slices, then the UID);
- global noise: the median of that series' per-slice global noise levels;
- size: Dw at the slice nearest the middle of that series' scan range;
- DLP: the CT Dose Length Product Total of the study's latest dose report
  (RDSR); else the mean CTDIvol of the series times its covered length, marked
  estimated;
- size-adjusted dose: unavailable, with the reason (:mod:`deltaiqa_lite.physics.exam`);
- category: the site's mapping (or the shipped default) over the study's
  descriptions, procedure codes and body parts; no match is "uncategorized";
- out of range: the measure's rule, three-valued.

Per category and per scanner, the share of exams out of range per month, the
measure's statistic with its trend. FHIR export: one Observation per exam with
the category as its value and the two LOINC components.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field

from deltaiqa_lite.physics.exam import (CATEGORIES, LOINC_GLOBAL_NOISE, LOINC_SIZE_ADJUSTED_DOSE, UNCATEGORIZED,
                                        CategoryRule, ExamText, categorize, estimated_dlp, exam_noise,
                                        middle_value, out_of_range, size_adjusted_dose)
from deltaiqa_lite.qa.log import QALog, SliceRecord

DLP_FROM_RDSR = "RDSR"
DLP_ESTIMATED = "estimated: mean CTDIvol x covered length of the diagnostic series"


@dataclass
class ExamRow:
    """The measure's values of one exam (study)."""

    study_uid: str
    acquisition_datetime: str | None
    station_name: str | None
    manufacturer: str | None
    category: str
    description: str | None
    series_uid: str | None
    n_slices: int
    noise_hu: float | None
    dw_middle_mm: float | None
    dlp_mgy_cm: float | None
    dlp_source: str | None
    size_adjusted_dose_mgy_cm: float | None
    out_of_range: bool | None
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return {True: "out", False: "in", None: "unknown"}[self.out_of_range]


@dataclass
class ShareRow:
    """The measure's statistic for one group and month: exams out of range over exams with a result."""

    group_by: str          # "category" or "station"
    group: str
    month: str             # YYYY-MM of the acquisition
    n_exams: int
    n_out: int
    n_unknown: int

    @property
    def share_out(self) -> float | None:
        known = self.n_exams - self.n_unknown
        return self.n_out / known if known else None


def _diagnostic_series(slices: list[SliceRecord]) -> list[SliceRecord]:
    by_series: dict[str, list[SliceRecord]] = defaultdict(list)
    for row in slices:
        by_series[row.series_uid or ""].append(row)

    def key(item: tuple[str, list[SliceRecord]]):
        uid, rows = item
        measured = sum(r.noise_hu is not None for r in rows)
        thickness = min((r.slice_thickness_mm for r in rows if r.slice_thickness_mm), default=1e9)
        return (-measured, -len(rows), thickness, uid)

    return sorted(by_series.items(), key=key)[0][1]


def exam_rows(log: QALog, rules: list[CategoryRule], *, since: str | None = None,
              until: str | None = None) -> list[ExamRow]:
    """One row per study with scored slices in the window (acquisition time), oldest first."""
    scored = [r for r in log.slices(status="ok") if r.study_uid]
    by_study: dict[str, list[SliceRecord]] = defaultdict(list)
    for row in scored:
        by_study[row.study_uid].append(row)
    exams = []
    for study, slices in by_study.items():
        when = min((r.acquisition_datetime or r.scored_at for r in slices), default=None)
        if (since and when and when < since) or (until and when and when >= until):
            continue
        series = _diagnostic_series(slices)
        first = series[0]
        descriptions = sorted({text for r in slices for text in (r.study_description, r.series_description,
                                                                  r.protocol_name, r.procedure_meaning) if text})
        reports = log.dose_reports(study_uid=study)
        for report in reports:
            descriptions += [a["protocol"] for a in log.dose_acquisitions(report.sop_instance_uid) if a["protocol"]] \
                if report.sop_instance_uid else []
        text = ExamText(descriptions=tuple(descriptions),
                        procedure_codes=tuple(sorted({r.procedure_code for r in slices if r.procedure_code})),
                        body_parts=tuple(sorted({r.body_part for r in slices if r.body_part})))
        category = categorize(text, rules)
        ordered = sorted(series, key=lambda r: (r.slice_location is None, r.slice_location or 0.0))
        positions = [r.slice_location for r in ordered if r.slice_location is not None]
        noise = exam_noise([r.noise_hu for r in series])
        dw = middle_value([r.slice_location for r in ordered if r.slice_location is not None],
                          [r.water_equivalent_diameter_mm for r in ordered if r.slice_location is not None])
        notes: list[str] = []
        dlp, dlp_source = None, None
        with_dlp = [r for r in reports if r.total_dlp_mgy_cm is not None]
        if with_dlp:
            dlp, dlp_source = with_dlp[-1].total_dlp_mgy_cm, DLP_FROM_RDSR
        else:
            if reports:
                notes.append("dose report without a total DLP: " + (reports[-1].problems or "no reason given"))
            thickness = min((r.slice_thickness_mm for r in series if r.slice_thickness_mm), default=None)
            dlp = estimated_dlp([r.ctdivol_mgy for r in ordered if r.slice_location is not None], positions,
                                thickness)
            dlp_source = DLP_ESTIMATED if dlp is not None else None
            if dlp is None:
                notes.append("no DLP: no dose report and no CTDIvol with slice positions")
        sad, sad_note = size_adjusted_dose(dlp, dw)
        if sad is None:
            notes.append(sad_note)
        if noise is None:
            notes.append("no global noise: no slice of the diagnostic series has a noise level")
        if category == UNCATEGORIZED:
            result, reasons = None, ["uncategorized: map it in the site's category file"]
        else:
            result, reasons = out_of_range(category, noise, sad)
        exams.append(ExamRow(study_uid=study, acquisition_datetime=when, station_name=first.station_name,
                             manufacturer=first.manufacturer, category=category,
                             description="; ".join(descriptions) or None, series_uid=first.series_uid,
                             n_slices=len(series), noise_hu=noise, dw_middle_mm=dw, dlp_mgy_cm=dlp,
                             dlp_source=dlp_source, size_adjusted_dose_mgy_cm=sad, out_of_range=result,
                             reasons=reasons, notes=notes))
    exams.sort(key=lambda e: (e.acquisition_datetime or "", e.study_uid))
    return exams


def share_rows(exams: list[ExamRow]) -> list[ShareRow]:
    """Per category and per station, per month: exams, out of range, unknown."""
    counts: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for exam in exams:
        month = (exam.acquisition_datetime or "")[:7] or "unknown"
        for group_by, group in (("category", exam.category), ("station", exam.station_name or "unknown")):
            entry = counts[(group_by, group, month)]
            entry[0] += 1
            entry[1] += exam.out_of_range is True
            entry[2] += exam.out_of_range is None
    return [ShareRow(g, name, month, *values) for (g, name, month), values in sorted(counts.items())]


# ----------------------------------------------------------------- writers

EXAM_COLUMNS = ("study_uid", "acquisition_datetime", "station_name", "category", "noise_hu", "dw_middle_mm",
                "dlp_mgy_cm", "dlp_source", "size_adjusted_dose_mgy_cm", "status", "reasons", "notes",
                "series_uid", "n_slices", "description")


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, list):
        return "; ".join(value)
    return str(value)


def _safe_csv(text: str) -> str:
    # Descriptions come from DICOM: a leading =, +, -, @ would run as a formula in a spreadsheet.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def exams_to_csv(exams: list[ExamRow]) -> str:
    """One CSV row per exam (strings from DICOM guarded against spreadsheet formulas)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXAM_COLUMNS)
    for exam in exams:
        writer.writerow([_safe_csv(_cell(exam.status if c == "status" else getattr(exam, c)))
                         for c in EXAM_COLUMNS])
    return out.getvalue()


def exams_to_dict(exams: list[ExamRow]) -> dict:
    """Exams, the uncategorized ones listed apart, and the share out of range per group and month."""
    shares = share_rows(exams)
    return {
        "exams": [asdict(e) | {"status": e.status} for e in exams],
        "uncategorized": sorted({e.description or "(no description)" for e in exams if e.category == UNCATEGORIZED}),
        "share_out_of_range": [asdict(s) | {"share_out": s.share_out} for s in shares],
        "thresholds": {name: {"loinc": c.loinc, "noise_hu": c.noise_hu,
                              "size_adjusted_dose_mgy_cm": c.size_adjusted_dose_mgy_cm}
                       for name, c in CATEGORIES.items()},
    }


def exams_to_table(exams: list[ExamRow]) -> str:
    """A terminal table of the exams, the uncategorized descriptions and the monthly shares."""
    lines = [f"{'acquired':19} {'category':40} {'noise':>6} {'Dw mm':>6} {'DLP':>8} {'SAD':>5} {'':3} "
             f"{'status':7} why"]
    lines.append("-" * len(lines[0]))
    for e in exams:
        dlp = "-" if e.dlp_mgy_cm is None else f"{e.dlp_mgy_cm:.1f}"
        estimated = "est" if e.dlp_source == DLP_ESTIMATED else ""
        lines.append(f"{(e.acquisition_datetime or '-')[:19]:19} {e.category[:40]:40} "
                     f"{'-' if e.noise_hu is None else f'{e.noise_hu:.1f}':>6} "
                     f"{'-' if e.dw_middle_mm is None else f'{e.dw_middle_mm:.0f}':>6} {dlp:>8} "
                     f"{'-' if e.size_adjusted_dose_mgy_cm is None else f'{e.size_adjusted_dose_mgy_cm:.0f}':>5} "
                     f"{estimated:3} {e.status:7} {'; '.join(e.reasons)}")
    unmapped = sorted({e.description or "(no description)" for e in exams if e.category == UNCATEGORIZED})
    if unmapped:
        lines.append(f"uncategorized exams ({len(unmapped)} descriptions; map them in a category file):")
        lines += [f"  {text}" for text in unmapped]
    lines.append("share out of range (out / exams with a result) per month:")
    for s in share_rows(exams):
        share = "-" if s.share_out is None else f"{100 * s.share_out:.0f} %"
        lines.append(f"  {s.group_by} {s.group}: {s.month} {s.n_out}/{s.n_exams - s.n_unknown} {share}"
                     f" ({s.n_unknown} unknown)")
    if any(e.size_adjusted_dose_mgy_cm is None for e in exams):
        lines.append("size-adjusted dose: unavailable (no public definition of the measure's size adjustment; "
                     "see docs/exam-measure.md)")
    return "\n".join(lines) + "\n"


def exams_to_fhir(exams: list[ExamRow]) -> dict:
    """A FHIR R4 Bundle (collection) of one Observation per categorized exam.

    As the measure reads them: value = the CT category (LOINC answer code);
    components 96912-1 global noise in [hnsf'U] and 96913-9 size-adjusted dose
    in mGy.cm, each present only when known (a missing value carries a
    dataAbsentReason instead).
    """
    entries = []
    for exam in exams:
        category = CATEGORIES.get(exam.category)
        if category is None:
            continue
        components = []
        for code, display, value, unit in (
                (LOINC_GLOBAL_NOISE, "Calculated CT global noise", exam.noise_hu, "[hnsf'U]"),
                (LOINC_SIZE_ADJUSTED_DOSE, "Calculated CT size-adjusted dose", exam.size_adjusted_dose_mgy_cm,
                 "mGy.cm")):
            component = {"code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]}}
            if value is None:
                component["dataAbsentReason"] = {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "unknown"}]}
            else:
                component["valueQuantity"] = {"value": round(value, 2), "unit": unit,
                                              "system": "http://unitsofmeasure.org", "code": unit}
            components.append(component)
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{exam.study_uid}"}],
            "code": {"text": "CT exam category, global noise and size-adjusted dose (CMS1074)"},
            "valueCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": category.loinc,
                                                 "display": category.name}]},
            "component": components,
        }
        if exam.acquisition_datetime:
            observation["effectiveDateTime"] = exam.acquisition_datetime
        entries.append({"resource": observation})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def exams_to_json(exams: list[ExamRow]) -> str:
    return json.dumps(exams_to_dict(exams), indent=2)


def share_trend_png(exams: list[ExamRow], group_by: str, group: str) -> bytes:
    """The monthly share out of range (in %) of one category or station, as a PNG trend."""
    from deltaiqa_lite.qa.chart import draw_trend
    from deltaiqa_lite.qa.report import TrendPoint

    points = [TrendPoint(series_uid=s.month, time=f"{s.month}-01", value=100.0 * s.share_out)
              for s in share_rows(exams) if s.group_by == group_by and s.group == group
              and s.share_out is not None and s.month != "unknown"]
    return draw_trend(points, f"{group_by} {group}: exams out of range per month", y_label="out of range (%)")


def render_exams_html(exams: list[ExamRow]) -> str:
    """One self-contained HTML page: the exams, the uncategorized list, the monthly shares and their trends."""
    import base64
    from html import escape

    def cell(value) -> str:
        return escape(_cell(value))

    parts = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
             "<title>deltaiqa-lite exam measure</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px}.out{color:#c00;font-weight:bold}</style></head><body>",
             "<h1>Exam measure (CMS1074 categories)</h1>", "<table><tr>"]
    parts += [f"<th>{escape(c)}</th>" for c in EXAM_COLUMNS] + ["</tr>"]
    for exam in exams:
        css = " class=\"out\"" if exam.out_of_range else ""
        parts.append(f"<tr{css}>" + "".join(
            f"<td>{cell(exam.status if c == 'status' else getattr(exam, c))}</td>" for c in EXAM_COLUMNS) + "</tr>")
    parts.append("</table>")
    unmapped = sorted({e.description or "(no description)" for e in exams if e.category == UNCATEGORIZED})
    if unmapped:
        parts.append("<h2>Uncategorized (map them in the site's category file)</h2><ul>")
        parts += [f"<li>{escape(text)}</li>" for text in unmapped] + ["</ul>"]
    parts.append("<h2>Share out of range per month</h2><table><tr><th>by</th><th>group</th><th>month</th>"
                 "<th>exams</th><th>out</th><th>unknown</th><th>share out</th></tr>")
    for s in share_rows(exams):
        share = "" if s.share_out is None else f"{100 * s.share_out:.0f} %"
        parts.append(f"<tr><td>{escape(s.group_by)}</td><td>{escape(s.group)}</td><td>{escape(s.month)}</td>"
                     f"<td>{s.n_exams}</td><td>{s.n_out}</td><td>{s.n_unknown}</td><td>{share}</td></tr>")
    parts.append("</table>")
    for group_by, group in sorted({(s.group_by, s.group) for s in share_rows(exams)}):
        png = base64.b64encode(share_trend_png(exams, group_by, group)).decode("ascii")
        parts.append(f"<img alt=\"{escape(f'{group_by} {group}')}\" src=\"data:image/png;base64,{png}\">")
    parts.append("<p>Size-adjusted dose: unavailable where empty; see docs/exam-measure.md.</p></body></html>")
    return "\n".join(parts) + "\n"
