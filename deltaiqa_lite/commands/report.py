"""``deltaiqa-lite report``: series statistics, control charts and drift flags from the QA log."""

from __future__ import annotations

import argparse
import sys
from datetime import date, timedelta
from pathlib import Path

from deltaiqa_lite.commands._args import positive_float, positive_int

HELP = ("trend report from the QA log: per station / protocol / kernel, control charts with "
        "drift flags, low-scoring series (table, CSV, JSON, PNG charts, HTML)")
FORMATS = ("table", "csv", "json", "html", "fhir")


def _iso(text: str) -> str:
    from datetime import datetime

    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO date or date-time (2024-03-01 or "
                                         f"2024-03-01T08:00), got '{text}'") from None
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from deltaiqa_lite.qa.log import DEFAULT_LOG
    from deltaiqa_lite.qa.report import ChartRules

    rules = ChartRules()
    parser.add_argument("--log", default=DEFAULT_LOG, metavar="FILE|URL",
                        help=f"QA log to read: SQLite file (default ./{DEFAULT_LOG}) or "
                             "postgresql:// URL")
    parser.add_argument("--since", type=_iso, default=None, metavar="DATE",
                        help="first acquisition date shown (history before it still forms the "
                             "baseline)")
    parser.add_argument("--until", type=_iso, default=None, metavar="DATE",
                        help="show acquisitions before this date (exclusive)")
    parser.add_argument("--days", type=positive_int, default=None,
                        help="shortcut: --since N days before today")
    parser.add_argument("--station", default=None, help="only this station name")
    parser.add_argument("--protocol", default=None, help="only this protocol name")
    parser.add_argument("--kernel", default=None, help="only this convolution kernel")
    parser.add_argument("--baseline-days", type=positive_float, default=rules.baseline_days,
                        help=f"baseline = first N days of each group (default {rules.baseline_days:g})")
    parser.add_argument("--baseline-until", type=_iso, default=None, metavar="DATE",
                        help="baseline = every series before DATE (overrides --baseline-days)")
    parser.add_argument("--threshold", type=float, default=rules.threshold, metavar="SCORE",
                        help=f"list series whose mean score is below SCORE ({rules.threshold:g})")
    parser.add_argument("--format", choices=FORMATS, default="table",
                        help="table (default, terminal), csv (one row per series), json, html; "
                             "fhir (with --exams: a Bundle of FHIR Observations with the measure's LOINC codes)")
    parser.add_argument("--exams", action="store_true",
                        help="per exam (study): CT category, global noise, Dw, DLP, size-adjusted dose, "
                             "in or out of range (CMS1074 thresholds), share out of range per category and "
                             "scanner per month")
    parser.add_argument("--categories", default=None, metavar="FILE",
                        help="with --exams: the site's CT category mapping (TOML; default: the shipped one)")
    parser.add_argument("-o", "--output", default=None, metavar="FILE",
                        help="write the report to FILE instead of stdout")
    parser.add_argument("--csv-formulas", action="store_true",
                        help="csv: keep text cells that start with = + - @ as they are (default: "
                             "prefixed with ' so that a spreadsheet does not run them as formulas)")
    parser.add_argument("--png-dir", default=None, metavar="DIR",
                        help="also write PNGs per group into DIR: score and noise control charts, "
                             "noise vs Dw, SSDE trend")


def _table(report) -> str:
    window = f"{report.since or 'start'} .. {report.until or 'now'}"
    lines = [f"QA log {report.log_path}; window {window}; {len(report.groups)} groups"]
    head = (f"{'station / protocol / kernel':40} {'series':>6} {'mean':>5} {'sd':>5} "
            f"{'centre':>6} {'flags':>5} {'low':>4}  status")
    lines += [head, "-" * len(head)]
    for g in report.groups:
        centre = f"{g.chart.centre:.2f}" if g.chart.centre is not None else "-"
        lines.append(f"{g.title[:40]:40} {g.n_series:6d} {g.score_mean:5.2f} {g.score_sd:5.2f} "
                     f"{centre:>6} {len(g.chart.flagged):5d} {len(g.below_threshold):4d}  "
                     f"{g.chart.status}")
    for g in report.out_of_control:
        first = g.chart.flagged[0]
        lines.append(f"OUT OF CONTROL {g.title}: first flag {first.time} series "
                     f"{first.series_uid} ({', '.join(first.flags)}), {len(g.chart.flagged)} "
                     "flagged series")
    if report.refused:
        totals = ", ".join(f"{kind} {n}" for kind, n in report.refused_totals.items())
        lines.append(f"refused images (selection policy) in {len(report.refused)} series: {totals}")
        for r in report.refused:
            kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(r.kinds.items()))
            lines.append(f"  {r.time or '-'} {r.series_uid} {r.series_description or ''} "
                         f"({r.n_scored} scored): {kinds}")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from deltaiqa_lite.qa.log import QALog
    from deltaiqa_lite.qa.log_postgres import is_postgres_url
    from deltaiqa_lite.qa.report import (
        ChartRules,
        build_report,
        report_to_csv,
        report_to_json,
    )

    if not is_postgres_url(args.log) and not Path(args.log).is_file():
        print(f"deltaiqa-lite report: error: {args.log}: no such QA log", file=sys.stderr)
        return 2
    since = args.since
    if args.days is not None:
        since = (date.today() - timedelta(days=args.days)).isoformat()
    if args.exams:
        return _run_exams(args, since)
    if args.format == "fhir" or args.categories:
        print("deltaiqa-lite report: error: --format fhir and --categories need --exams", file=sys.stderr)
        return 2
    rules = ChartRules(baseline_days=args.baseline_days, baseline_until=args.baseline_until,
                       threshold=args.threshold)
    with QALog(args.log) as log:
        report = build_report(log, since=since, until=args.until, rules=rules,
                              station=args.station, protocol=args.protocol, kernel=args.kernel)
    if args.format == "csv":
        text = report_to_csv(report, neutralise=not args.csv_formulas)
    elif args.format == "json":
        text = report_to_json(report) + "\n"
    elif args.format == "html":
        from deltaiqa_lite.qa.html import render_html

        text = render_html(report)
    else:
        text = _table(report)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    if args.png_dir:
        from deltaiqa_lite.qa.chart import chart_file_stems, draw_chart, draw_scatter, draw_trend

        folder = Path(args.png_dir)
        folder.mkdir(parents=True, exist_ok=True)
        names = ["_".join((v or "none") for v in (g.station_name, g.protocol_name, g.kernel))
                 for g in report.groups]
        for g, safe in zip(report.groups, chart_file_stems(names)):
            (folder / f"{safe}.png").write_bytes(draw_chart(g.chart, g.title,
                                                            threshold=rules.threshold))
            # Physics beside the score: noise chart, noise vs Dw, SSDE trend (docs/physics.md).
            if g.noise_chart is not None:
                (folder / f"{safe}.noise.png").write_bytes(
                    draw_chart(g.noise_chart, f"{g.title}: median noise_hu (HU)", clamp=None))
            if g.noise_vs_dw is not None:
                (folder / f"{safe}.noise-vs-dw.png").write_bytes(
                    draw_scatter(g.noise_vs_dw, f"{g.title}: noise vs water-equivalent diameter"))
            if g.ssde_trend:
                (folder / f"{safe}.ssde.png").write_bytes(
                    draw_trend(g.ssde_trend, f"{g.title}: mean SSDE per series"))
    return 0


def _run_exams(args: argparse.Namespace, since: str | None) -> int:
    """``report --exams``: the per-exam measure (deltaiqa_lite.qa.exams)."""
    import json

    from deltaiqa_lite.physics.exam import load_category_rules
    from deltaiqa_lite.qa import exams as measure
    from deltaiqa_lite.qa.log import QALog

    rules = load_category_rules(args.categories)
    with QALog(args.log) as log:
        exams = measure.exam_rows(log, rules, since=since, until=args.until)
    if args.station:
        exams = [e for e in exams if e.station_name == args.station]
    writers = {"csv": measure.exams_to_csv, "json": lambda e: measure.exams_to_json(e) + "\n",
               "html": measure.render_exams_html,
               "fhir": lambda e: json.dumps(measure.exams_to_fhir(e), indent=2) + "\n"}
    text = writers.get(args.format, measure.exams_to_table)(exams)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    if args.png_dir:
        from deltaiqa_lite.qa.chart import chart_file_stems

        folder = Path(args.png_dir)
        folder.mkdir(parents=True, exist_ok=True)
        shares = sorted({(s.group_by, s.group) for s in measure.share_rows(exams)})
        # The same safe, bounded, unique names as the group charts (scanner names are strangers' text).
        for share, safe in zip(shares, chart_file_stems([f"exams_{by}_{group}" for by, group in shares])):
            (folder / f"{safe}.png").write_bytes(measure.share_trend_png(exams, *share))
    return 0
