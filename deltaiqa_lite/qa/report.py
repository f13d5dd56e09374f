"""Trend reports from the QA log: series statistics, control charts, drift flags.

The unit of the charts is a *series*: its mean slice score is one point.
Series are grouped by station, protocol and kernel (a change of any of these
changes image quality on purpose, so they must not share a centre line), and
ordered by acquisition time.

Control chart rules (documented in docs/qa-node.md, figures from
``tests/qa/chart_simulation.py`` which runs this module's code):

- Baseline: the series of the first ``baseline_days`` calendar days of each
  group's history (or before ``baseline_until``). Centre line = mean of the baseline
  series scores; sigma = mean moving range / 1.128 (the individuals-chart
  estimate, robust to a slow trend inside the baseline). Fewer than
  ``min_baseline`` baseline series: the group is reported as
  ``insufficient-baseline`` and nothing is flagged.
- EWMA (lambda 0.1, limits +-4.3 sigma_z with the exact time-varying width):
  catches sustained shifts; flags ``ewma-low`` / ``ewma-high``.
- Shewhart individuals rule (+-5 sigma): catches a single grossly deviating
  series; flags ``shewhart-low`` / ``shewhart-high``.

Physics beside the score (docs/physics.md): each group also gets a control
chart of the series' median ``noise_hu`` (same baseline and rules, in HU), the
noise-versus-Dw scatter of its series with the fitted exponential
``noise = a exp(b Dw)`` (least squares on ln noise; the usual plot for protocol
optimisation) and the trend of mean SSDE.

Both are wider than the textbook (lambda 0.2, L 3; 3 sigma) on purpose: a QA
node watches many groups continuously, the baseline is estimated from a few
hundred series, and patient images have heavier tails (motion, metal) than a
phantom. With the textbook limits 86 % of simulated 90-day in-control logs
raised a false alarm; with these 3 %, and a step of 2 sigma is still flagged
within 14 series in 99 % of runs (figures in docs/qa-node.md).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise

from deltaiqa_lite.qa.log import QALog, SeriesRow, utc_now

D2_MOVING_RANGE = 1.128  # d2 for n = 2: E[|x_i - x_{i-1}|] = 1.128 sigma
GROUP_FIELDS = ("station_name", "protocol_name", "kernel")


@dataclass(frozen=True)
class ChartRules:
    """Baseline and control rules of the charts (see module docstring)."""

    baseline_days: float = 28.0
    baseline_until: str | None = None
    min_baseline: int = 30
    ewma_lambda: float = 0.1
    ewma_limit: float = 4.3
    shewhart_limit: float = 5.0
    threshold: float = 2.0


@dataclass(frozen=True)
class ChartPoint:
    """One series on a control chart."""

    series_uid: str
    time: str
    value: float
    ewma: float
    ewma_low: float | None
    ewma_high: float | None
    in_baseline: bool
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class ControlChart:
    """Centre line, limits and flagged points of one group."""

    status: str  # "in-control" | "out-of-control" | "insufficient-baseline"
    centre: float | None
    sigma: float | None
    shewhart_low: float | None
    shewhart_high: float | None
    n_baseline: int
    baseline_end: str | None
    points: list[ChartPoint] = field(default_factory=list)

    @property
    def flagged(self) -> list[ChartPoint]:
        """Points with at least one rule violated."""
        return [p for p in self.points if p.flags]


@dataclass(frozen=True)
class NoiseSizeFit:
    """Noise against patient size of one group: series points and ``noise = a exp(b Dw)``.

    ``a`` (HU) and ``b`` (per mm) are None with fewer than three series or no
    spread in Dw; ``r`` is the correlation of ln(noise) with Dw.
    """

    dw_mm: list[float]
    noise_hu: list[float]
    a: float | None = None
    b_per_mm: float | None = None
    r: float | None = None


@dataclass(frozen=True)
class TrendPoint:
    """One series on a plain trend (no control rules): time and value."""

    series_uid: str
    time: str
    value: float


@dataclass(frozen=True)
class GroupReport:
    """Statistics, chart and low-scoring series of one station/protocol/kernel group."""

    station_name: str | None
    protocol_name: str | None
    kernel: str | None
    n_series: int
    n_slices: int
    score_mean: float | None
    score_sd: float | None
    score_min: float | None
    score_max: float | None
    first: str | None
    last: str | None
    chart: ControlChart
    below_threshold: list[SeriesRow] = field(default_factory=list)
    noise_chart: ControlChart | None = None
    noise_vs_dw: NoiseSizeFit | None = None
    ssde_trend: list[TrendPoint] = field(default_factory=list)

    @property
    def title(self) -> str:
        """'station / protocol / kernel' with '(none)' for missing values."""
        return " / ".join(v or "(none)" for v in (self.station_name, self.protocol_name,
                                                   self.kernel))


@dataclass(frozen=True)
class RefusedSeries:
    """How many images of each kind the selection policy refused in one series."""

    series_uid: str
    time: str
    station_name: str | None
    protocol_name: str | None
    series_description: str | None
    n_scored: int
    kinds: dict[str, int]


@dataclass(frozen=True)
class QAReport:
    """The whole report (``refused``: series with refused images, in time order)."""

    generated_at: str
    log_path: str
    since: str | None
    until: str | None
    rules: ChartRules
    groups: list[GroupReport]
    refused: list[RefusedSeries] = field(default_factory=list)

    @property
    def refused_totals(self) -> dict[str, int]:
        """Refused images per kind over all series of the window, largest first."""
        totals: dict[str, int] = {}
        for series in self.refused:
            for kind, n in series.kinds.items():
                totals[kind] = totals.get(kind, 0) + n
        return dict(sorted(totals.items(), key=lambda item: (-item[1], item[0])))

    @property
    def out_of_control(self) -> list[GroupReport]:
        """Groups with a flagged point in the report window."""
        return [g for g in self.groups if g.chart.status == "out-of-control"]


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)


def control_chart(values: Sequence[float], baseline: Sequence[bool], *,
                  rules: ChartRules = ChartRules(), series_uids: Sequence[str] | None = None,
                  times: Sequence[str] | None = None) -> ControlChart:
    """Run the EWMA and Shewhart rules over one ordered sequence of series scores.

    Parameters
    ----------
    values : sequence of float
        Series mean scores in time order.
    baseline : sequence of bool
        True for the series that form the baseline period.
    rules : ChartRules
        Rule parameters.
    series_uids, times : sequences of str, optional
        Identity of each point, carried into the result.

    Returns
    -------
    ControlChart
    """
    n = len(values)
    uids = list(series_uids) if series_uids is not None else [str(i) for i in range(n)]
    stamps = list(times) if times is not None else [""] * n
    base = [v for v, b in zip(values, baseline) if b]
    baseline_end = max((t for t, b in zip(stamps, baseline) if b), default=None) or None
    if len(base) < max(2, rules.min_baseline):
        points = [ChartPoint(uids[i], stamps[i], float(values[i]), float(values[i]), None, None,
                             bool(baseline[i])) for i in range(n)]
        return ControlChart("insufficient-baseline", None, None, None, None, len(base),
                            baseline_end, points)
    centre = math.fsum(base) / len(base)
    moving = [abs(b - a) for a, b in pairwise(base)]
    sigma = math.fsum(moving) / len(moving) / D2_MOVING_RANGE
    if sigma <= 0.0:
        # A constant baseline (e.g. a phantom-like test feed): any change is a change.
        sigma = 1e-6
    lam, big_l, k = rules.ewma_lambda, rules.ewma_limit, rules.shewhart_limit
    z = centre
    points: list[ChartPoint] = []
    any_flag = False
    for i, x in enumerate(values):
        z = lam * x + (1.0 - lam) * z
        half = big_l * sigma * math.sqrt(lam / (2.0 - lam) * (1.0 - (1.0 - lam) ** (2 * (i + 1))))
        flags = []
        if z < centre - half:
            flags.append("ewma-low")
        elif z > centre + half:
            flags.append("ewma-high")
        if x < centre - k * sigma:
            flags.append("shewhart-low")
        elif x > centre + k * sigma:
            flags.append("shewhart-high")
        any_flag = any_flag or bool(flags)
        points.append(ChartPoint(uids[i], stamps[i], float(x), z, centre - half, centre + half,
                                 bool(baseline[i]), tuple(flags)))
    return ControlChart("out-of-control" if any_flag else "in-control", centre, sigma,
                        centre - k * sigma, centre + k * sigma, len(base), baseline_end, points)


# Below this spread of patient sizes an exponential in Dw is not determined (one
# phantom scanned at several doses has one Dw): the points are shown without a fit.
MIN_DW_SPREAD_MM = 20.0


def fit_noise_vs_dw(dw_mm: Sequence[float], noise_hu: Sequence[float]) -> NoiseSizeFit:
    """Fit ``noise = a exp(b Dw)`` by least squares on ln(noise) (points with noise > 0).

    No fit (``a`` and ``b_per_mm`` None) for fewer than 3 points or sizes spread
    over less than ``MIN_DW_SPREAD_MM``.
    """
    pairs = [(float(d), float(n)) for d, n in zip(dw_mm, noise_hu) if n > 0]
    fit = NoiseSizeFit([d for d, _ in pairs], [n for _, n in pairs])
    if len(pairs) < 3 or max(d for d, _ in pairs) - min(d for d, _ in pairs) < MIN_DW_SPREAD_MM:
        return fit
    xs = [d for d, _ in pairs]
    ys = [math.log(n) for _, n in pairs]
    mx, my = math.fsum(xs) / len(xs), math.fsum(ys) / len(ys)
    sxx = math.fsum((x - mx) ** 2 for x in xs)
    syy = math.fsum((y - my) ** 2 for y in ys)
    if sxx <= 0:
        return fit
    sxy = math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys))
    b = sxy / sxx
    r = sxy / math.sqrt(sxx * syy) if syy > 0 else None
    return NoiseSizeFit(fit.dw_mm, fit.noise_hu, math.exp(my - b * mx), b, r)


def _physics_of_group(members: list[SeriesRow], stamps: list[str], baseline: list[bool],
                      shown: list[bool], rules: ChartRules
                      ) -> tuple[ControlChart | None, NoiseSizeFit | None, list[TrendPoint]]:
    """Noise chart (median noise_hu per series), noise-vs-Dw fit and SSDE trend of one group."""
    noisy = [k for k, r in enumerate(members) if r.noise_hu_median is not None]
    noise_chart = None
    if noisy:
        # Noise is charted on the same baseline as the score, in HU; no score threshold applies.
        chart = control_chart([members[k].noise_hu_median for k in noisy], [baseline[k] for k in noisy],
                              rules=rules, series_uids=[members[k].series_uid for k in noisy],
                              times=[stamps[k] for k in noisy])
        points = [p for p, k in zip(chart.points, noisy) if shown[k]]
        status = chart.status
        if status != "insufficient-baseline":
            status = "out-of-control" if any(p.flags for p in points) else "in-control"
        if points:
            noise_chart = ControlChart(status, chart.centre, chart.sigma, chart.shewhart_low,
                                       chart.shewhart_high, chart.n_baseline, chart.baseline_end, points)
    sized = [r for r, keep in zip(members, shown) if keep and r.noise_hu_median is not None
             and r.water_equivalent_diameter_mm_middle is not None]
    fit = (fit_noise_vs_dw([r.water_equivalent_diameter_mm_middle for r in sized],
                           [r.noise_hu_median for r in sized]) if sized else None)
    ssde = [TrendPoint(r.series_uid, s, r.ssde_mgy_mean) for r, s, keep in zip(members, stamps, shown)
            if keep and r.ssde_mgy_mean is not None]
    return noise_chart, fit, ssde


def _series_time(row: SeriesRow) -> str:
    return row.acquisition_datetime or row.first_scored_at or ""


def _in_window(stamp: str, since: str | None, until: str | None) -> bool:
    return (since is None or stamp >= since) and (until is None or stamp < until)


def build_report(log: QALog, *, since: str | None = None, until: str | None = None,
                 rules: ChartRules = ChartRules(), station: str | None = None,
                 protocol: str | None = None, kernel: str | None = None) -> QAReport:
    """Build the report of a time window from the QA log.

    Series before ``since`` are still read: they form the baseline and the
    EWMA history, so a window never starts its chart blind. Only points
    inside ``[since, until)`` are shown, counted and flagged.

    Parameters
    ----------
    log : QALog
    since, until : str, optional
        ISO dates or datetimes (acquisition time, scanner local); ``until`` exclusive.
    rules : ChartRules
    station, protocol, kernel : str, optional
        Keep only groups with exactly this value.

    Returns
    -------
    QAReport
    """
    every = log.series(until=until, station=station, protocol=protocol, kernel=kernel)
    rows = [r for r in every if r.n_slices > 0 and r.score_mean is not None]
    groups: dict[tuple, list[SeriesRow]] = {}
    for row in rows:
        key = tuple(getattr(row, f) for f in GROUP_FIELDS)
        groups.setdefault(key, []).append(row)
    wanted = (station, protocol, kernel)
    reports: list[GroupReport] = []
    for key in sorted(groups, key=lambda k: tuple(v or "" for v in k)):
        if any(w is not None and w != v for w, v in zip(wanted, key)):
            continue
        members = groups[key]
        stamps = [_series_time(r) for r in members]
        if rules.baseline_until:
            limit = rules.baseline_until
        else:
            start = _parse_time(stamps[0]).replace(hour=0, minute=0, second=0, microsecond=0)
            limit = (start + timedelta(days=rules.baseline_days)).isoformat(timespec="seconds")
        baseline = [s < limit for s in stamps]
        chart = control_chart([r.score_mean for r in members], baseline, rules=rules,
                              series_uids=[r.series_uid for r in members], times=stamps)
        shown = [_in_window(s, since, until) for s in stamps]
        points = [p for p, keep in zip(chart.points, shown) if keep]
        status = chart.status
        if status != "insufficient-baseline":
            status = "out-of-control" if any(p.flags for p in points) else "in-control"
        chart = ControlChart(status, chart.centre, chart.sigma, chart.shewhart_low,
                             chart.shewhart_high, chart.n_baseline, chart.baseline_end, points)
        in_window = [r for r, keep in zip(members, shown) if keep]
        if not in_window:
            continue
        noise_chart, noise_fit, ssde_trend = _physics_of_group(members, stamps, baseline, shown, rules)
        scores = [r.score_mean for r in in_window]
        mean = math.fsum(scores) / len(scores)
        sd = (math.sqrt(math.fsum((s - mean) ** 2 for s in scores) / (len(scores) - 1))
              if len(scores) > 1 else 0.0)
        reports.append(GroupReport(
            station_name=key[0], protocol_name=key[1], kernel=key[2], n_series=len(in_window),
            n_slices=sum(r.n_slices for r in in_window), score_mean=mean, score_sd=sd,
            score_min=min(scores), score_max=max(scores), first=_series_time(in_window[0]),
            last=_series_time(in_window[-1]), chart=chart,
            below_threshold=[r for r in in_window if r.score_mean < rules.threshold],
            noise_chart=noise_chart, noise_vs_dw=noise_fit, ssde_trend=ssde_trend))
    # What a site routes to the node but is not scored (selection policy), per series.
    refused = [RefusedSeries(r.series_uid, _series_time(r), r.station_name, r.protocol_name,
                             r.series_description, r.n_slices, r.refused_counts)
               for r in every if _in_window(_series_time(r), since, until)
               and r.refused_counts and all(w is None or w == v for w, v in zip(wanted, (r.station_name, r.protocol_name,
                                                                    r.kernel)))]
    return QAReport(utc_now(), log.path, since, until, rules, reports, refused)


# ---------------------------------------------------------------- writers


def report_to_dict(report: QAReport) -> dict:
    """The report as plain JSON-ready data."""
    groups = []
    for g in report.groups:
        chart = g.chart
        groups.append({
            "station_name": g.station_name, "protocol_name": g.protocol_name, "kernel": g.kernel,
            "n_series": g.n_series, "n_slices": g.n_slices, "score_mean": g.score_mean,
            "score_sd": g.score_sd, "score_min": g.score_min, "score_max": g.score_max,
            "first": g.first, "last": g.last,
            "chart": {
                "status": chart.status, "centre": chart.centre, "sigma": chart.sigma,
                "shewhart_low": chart.shewhart_low, "shewhart_high": chart.shewhart_high,
                "n_baseline": chart.n_baseline, "baseline_end": chart.baseline_end,
                "points": [asdict(p) | {"flags": list(p.flags)} for p in chart.points],
            },
            "below_threshold": [asdict(r) for r in g.below_threshold],
            "noise_chart": _chart_dict(g.noise_chart) if g.noise_chart is not None else None,
            "noise_vs_dw": asdict(g.noise_vs_dw) if g.noise_vs_dw is not None else None,
            "ssde_trend": [asdict(p) for p in g.ssde_trend],
        })
    return {"generated_at": report.generated_at, "log": report.log_path, "since": report.since,
            "until": report.until, "rules": asdict(report.rules),
            "out_of_control": [g.title for g in report.out_of_control], "groups": groups,
            "refused_totals": report.refused_totals,
            "refused": [asdict(r) for r in report.refused]}


def _chart_dict(chart: ControlChart) -> dict:
    return {"status": chart.status, "centre": chart.centre, "sigma": chart.sigma,
            "shewhart_low": chart.shewhart_low, "shewhart_high": chart.shewhart_high,
            "n_baseline": chart.n_baseline, "baseline_end": chart.baseline_end,
            "points": [asdict(p) | {"flags": list(p.flags)} for p in chart.points]}


def report_to_json(report: QAReport) -> str:
    """JSON text of :func:`report_to_dict`."""
    return json.dumps(report_to_dict(report), indent=2)


CSV_COLUMNS = ("station_name", "protocol_name", "kernel", "series_uid", "time", "score_mean",
               "ewma", "ewma_low", "ewma_high", "centre", "shewhart_low", "shewhart_high",
               "in_baseline", "flags", "below_threshold")


def report_to_csv(report: QAReport, *, neutralise: bool = True) -> str:
    """One CSV row per charted series (group, score, EWMA, limits, flags).

    Station, protocol and kernel names come from DICOM headers: with ``neutralise``
    (the default) a cell that a spreadsheet would run as a formula gets a leading
    ``'`` (:func:`deltaiqa_lite.output.write.neutralise_cell`).
    """
    from deltaiqa_lite.output.write import neutralise_cell

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for g in report.groups:
        chart = g.chart
        for p in chart.points:
            if neutralise:
                writer.writerow([neutralise_cell(cell) for cell in _report_row(report, g, chart, p)])
            else:
                writer.writerow(_report_row(report, g, chart, p))
    return out.getvalue()


def _report_row(report: QAReport, g, chart, p) -> list[str]:
    return [g.station_name or "", g.protocol_name or "", g.kernel or "", p.series_uid or "",
            p.time or "", f"{p.value:.4f}", f"{p.ewma:.4f}", _fmt(p.ewma_low), _fmt(p.ewma_high),
            _fmt(chart.centre), _fmt(chart.shewhart_low), _fmt(chart.shewhart_high),
            str(int(p.in_baseline)), ";".join(p.flags), str(int(p.value < report.rules.threshold))]


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"
