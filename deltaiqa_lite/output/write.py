"""Writers: results to a table for people, JSON / JSON Lines / CSV for programs.

Each writer takes the slice results (input order), the per-series summaries and
a small header about the run, and writes to a text stream. Pick one by name
from :data:`WRITERS`.
"""

from __future__ import annotations

import csv
import json
import math
from typing import Callable, Sequence, TextIO

from deltaiqa_lite.physics import FLAG_SEPARATOR, PHYSICS_FIELDS
from deltaiqa_lite.read.names import display_text
from deltaiqa_lite.score import SeriesResult, SliceResult

__all__ = ["WRITERS", "FORMATS", "CSV_COLUMNS", "SERIES_KEYS", "write_results", "run_header", "slice_record",
           "series_record", "csv_row", "neutralise_cell", "restore_cell"]

#: Physics beside the network (deltaiqa_lite.physics), the same keys in every format.
PHYSICS_KEYS = PHYSICS_FIELDS
CSV_COLUMNS = ["path", "frame", "sop_instance_uid", "series_uid", "slice_location", "instance_number",
               "score", "likert", "label", "p0", "p1", "p2", "p3", "p4", "status", "error",
               "model", "precision", "provider", "policy_override", "policy_note", "refused_kind"] + list(PHYSICS_KEYS)
SERIES_KEYS = ["series_uid", "n_slices", "n_ok", "n_failed", "mean", "median", "minimum", "p10",
               "flag_below", "n_below", "noise_hu_median", "water_equivalent_diameter_mm_middle",
               "ssde_mgy_mean", "n_flagged"]


def run_header(model: str, precision: str, model_version: str | None, model_path: str,
               provider: str, flag_below: float | None) -> dict:
    """What produced the results: written at the top of JSON output."""
    from deltaiqa_lite._version import __version__
    return {"tool": "deltaiqa-lite", "version": __version__, "model": model, "precision": precision,
            "model_version": model_version, "model_path": model_path, "provider": provider,
            "flag_below": flag_below}


def _clean(value):
    # JSON has no NaN; never emit it (a NaN score would be a bug upstream anyway).
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str):
        # A file name that is not UTF-8 (in the path or in an error message): escaped,
        # so every format can hold it and it reads the same in all of them.
        return display_text(value)
    return value


def slice_record(result: SliceResult) -> dict:
    """The JSON record of one slice (``score --format json/jsonl``; NaN becomes None)."""
    return {k: _clean(v) for k, v in result.to_dict().items()}


def series_record(series: SeriesResult) -> dict:
    """The JSON record of one series summary without its slice list."""
    return {k: _clean(v) for k, v in series.to_dict().items()}


def _series_record(series: SeriesResult) -> dict:
    record = series_record(series)
    record["slices"] = [display_text(s.name) for s in series.slices]
    return record


def write_json(stream: TextIO, results: Sequence[SliceResult], series: Sequence[SeriesResult],
               header: dict) -> None:
    document = dict(header)
    document["slices"] = [slice_record(r) for r in results]
    document["series"] = [_series_record(s) for s in series]
    json.dump(document, stream, indent=2)
    stream.write("\n")


def write_jsonl(stream: TextIO, results: Sequence[SliceResult], series: Sequence[SeriesResult],
                header: dict) -> None:
    """One object per line: ``"type": "slice"`` rows, then ``"type": "series"`` rows."""
    for result in results:
        stream.write(json.dumps({"type": "slice", **slice_record(result)}) + "\n")
    for summary in series:
        stream.write(json.dumps({"type": "series", **_series_record(summary)}) + "\n")


def write_csv(stream: TextIO, results: Sequence[SliceResult], series: Sequence[SeriesResult],
              header: dict, *, neutralise: bool = True) -> None:
    """One row per slice (series summaries are in the JSON formats)."""
    writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for result in results:
        writer.writerow(csv_row(result, neutralise=neutralise))


#: First characters that make a spreadsheet read a cell as a formula (OWASP CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def neutralise_cell(text: str) -> str:
    """``text`` made safe for a spreadsheet: a cell that would start a formula gets a ``'``.

    Text from DICOM headers and file names (paths, station names, error messages)
    is untrusted; ``=HYPERLINK(...)`` or ``=cmd|...`` in it would run when a person
    opens the CSV in a spreadsheet. Numbers (``-12.5``) are left alone. A cell that
    already starts with ``'`` gets one more, so :func:`restore_cell` undoes exactly
    this (``--resume`` compares paths read back from the file).
    """
    if text.startswith("'") or (text.startswith(FORMULA_PREFIXES) and not _is_number(text)):
        return "'" + text
    return text


def restore_cell(text: str) -> str:
    """The value :func:`neutralise_cell` was given."""
    return text[1:] if text.startswith("'") else text


def csv_row(result: SliceResult, *, neutralise: bool = True) -> dict:
    """The CSV row of one slice: :data:`CSV_COLUMNS`, empty strings for None, 6 decimals.

    With ``neutralise`` (the default) text cells that a spreadsheet would read as a
    formula are prefixed with ``'`` (:func:`neutralise_cell`).
    """
    row = {k: _clean(v) for k, v in result.to_dict().items() if k in CSV_COLUMNS}
    probabilities = result.probabilities or (None,) * 5
    row.update({f"p{k}": (f"{p:.6f}" if p is not None else "") for k, p in enumerate(probabilities)})
    if result.score is not None:
        row["score"] = f"{result.score:.6f}"
    row["flags"] = FLAG_SEPARATOR.join(result.flags) or None
    cells = {k: ("" if row.get(k) is None else row[k]) for k in CSV_COLUMNS}
    if neutralise:
        cells = {k: neutralise_cell(v) if isinstance(v, str) else v for k, v in cells.items()}
    return cells


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def write_table(stream: TextIO, results: Sequence[SliceResult], series: Sequence[SeriesResult],
                header: dict) -> None:
    """Aligned text for a terminal: slices, then one summary line per series."""
    names = [display_text(r.name) for r in results]
    width = min(max([len("input")] + [len(n) for n in names]), 60)
    # Physics columns carry their output key names, as in JSON and CSV; physics_note
    # goes on an indented line under its slice.
    stream.write(f"{'input':<{width}}  {'score':>5}  likert  {'label':<9}  noise_hu  noise_score  "
                 "water_equivalent_diameter_mm  ctdivol_mgy  ssde_mgy  flags\n")
    for result, name in zip(results, names):
        shown = name if len(name) <= width else "..." + name[-(width - 3):]
        if result.ok:
            accepted = f" (accepted {result.policy_override})" if result.policy_override else ""
            stream.write(f"{shown:<{width}}  {result.score:5.2f}  {result.likert:>6}  {result.label:<9}  "
                         f"{_fmt(result.noise_hu, 1):>8}  {_fmt(result.noise_score):>11}  "
                         f"{_fmt(result.water_equivalent_diameter_mm, 1):>28}  "
                         f"{_fmt(result.ctdivol_mgy):>11}  {_fmt(result.ssde_mgy):>8}  "
                         f"{','.join(result.flags) or '-'}{accepted}\n")
            if result.physics_note:
                stream.write(f"    physics_note: {result.physics_note}\n")
        else:
            stream.write(f"{shown:<{width}}  {'-':>5}  {'-':>6}  error: {display_text(result.error or '')}\n")
    for summary in series:
        if summary.series_uid is None:
            continue
        below = ""
        if summary.flag_below is not None:
            below = f", {summary.n_below} below {summary.flag_below:g}"
        failed = f", {summary.n_failed} failed" if summary.n_failed else ""
        stream.write(f"series {summary.series_uid}: {summary.n_slices} slices{failed}; "
                     f"mean {_fmt(summary.mean)} median {_fmt(summary.median)} "
                     f"min {_fmt(summary.minimum)} p10 {_fmt(summary.p10)}{below}; "
                     f"noise median {_fmt(summary.noise_hu_median, 1)} HU, "
                     f"Dw middle {_fmt(summary.water_equivalent_diameter_mm_middle, 0)} mm, "
                     f"SSDE mean {_fmt(summary.ssde_mgy_mean)} mGy, {summary.n_flagged} flagged\n")
    stream.write(f"model {header['model']} on {header['provider']}\n")


WRITERS: dict[str, Callable[[TextIO, Sequence[SliceResult], Sequence[SeriesResult], dict], None]] = {
    "table": write_table,
    "json": write_json,
    "jsonl": write_jsonl,
    "csv": write_csv,
}
FORMATS = tuple(WRITERS)


def write_results(stream: TextIO, fmt: str, results: Sequence[SliceResult],
                  series: Sequence[SeriesResult], header: dict, *,
                  csv_formulas: bool = False) -> None:
    """Write with the named writer (``table``, ``json``, ``jsonl`` or ``csv``).

    ``csv_formulas`` keeps CSV cells that start like a formula as they are (default:
    neutralised, see :func:`neutralise_cell`).
    """
    try:
        writer = WRITERS[fmt]
    except KeyError:
        raise ValueError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}") from None
    if writer is write_csv:
        write_csv(stream, results, series, header, neutralise=not csv_formulas)
        return
    writer(stream, results, series, header)
