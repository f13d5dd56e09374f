"""What each dashboard page shows, read from the QA log (no web framework here).

Every page reads the ``series`` summary table (one row per series, kept up to
date by :meth:`QALog.record` on every write, indexed by station, group and
time by migration 7); only the series page reads slices, and only those of
its own series (indexed by ``series_uid``). Control limits and rules are the
report's own (:func:`deltaiqa_lite.qa.report.build_report`), so the dashboard
and ``deltaiqa-lite report`` can never disagree.

Overview figures per station over the window:

- exams: distinct Study Instance UIDs; series; slices scored;
- mean score: slice-weighted mean of the series means (= the mean of every
  scored slice); p10: 10th percentile of the series mean scores;
- median noise: median of the series' median noise levels (HU);
- flagged: physics-flagged slices / scored slices;
- open alarms: unacknowledged control-chart violations (score and noise charts);
- last image: the latest scoring time of the station's series.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from deltaiqa_lite.output.write import neutralise_cell
from deltaiqa_lite.qa.log import QALog, SeriesRow, SliceRecord, SREvent
from deltaiqa_lite.qa.report import ChartRules, GroupReport, QAReport, build_report

FILTER_FIELDS = ("station", "protocol", "kernel", "body_part")
DISAGREE_FLAG = "score-noise-disagree"


@dataclass(frozen=True)
class Filters:
    """The filters of a page (query string): exact station/protocol/kernel/body part, a window."""

    station: str | None = None
    protocol: str | None = None
    kernel: str | None = None
    body_part: str | None = None
    since: str | None = None
    until: str | None = None
    days: int = 30

    @classmethod
    def from_query(cls, query: dict[str, str], *, today: datetime | None = None) -> Filters:
        """Read the query string; empty values mean 'any'; a bad date or day count is ignored."""
        def text(name: str) -> str | None:
            value = (query.get(name) or "").strip()
            return value or None

        days = 30
        try:
            days = max(1, min(int(query.get("days") or 30), 3660))
        except ValueError:
            pass
        since, until = text("since"), text("until")
        for value in (since, until):
            if value is not None:
                try:
                    datetime.fromisoformat(value)
                except ValueError:
                    since = until = None
        if since is None:
            now = today or datetime.now(timezone.utc).replace(tzinfo=None)
            since = (now - timedelta(days=days)).date().isoformat()
        return cls(text("station"), text("protocol"), text("kernel"), text("body_part"), since, until,
                   days)

    def query(self, **override: str | int | None) -> dict[str, str]:
        """These filters (with overrides) as a query-string dict, empty values left out."""
        values = {"station": self.station, "protocol": self.protocol, "kernel": self.kernel,
                  "body_part": self.body_part, "since": self.since, "until": self.until,
                  "days": self.days} | override
        return {k: str(v) for k, v in values.items() if v not in (None, "")}


@dataclass(frozen=True)
class Alarm:
    """A control-chart violation (score or noise chart) or a series where score and physics disagree."""

    key: str
    kind: str  # "score" | "noise" | "disagree"
    series_uid: str
    time: str
    station_name: str | None
    protocol_name: str | None
    kernel: str | None
    value: float | None
    rules: tuple[str, ...]
    acknowledged_by: str | None = None
    acknowledged_at: str | None = None
    comment: str | None = None

    @property
    def open(self) -> bool:
        return self.acknowledged_by is None


@dataclass(frozen=True)
class StationRow:
    station_name: str | None
    exams: int
    series: int
    slices: int
    score_mean: float | None
    score_p10: float | None
    noise_median: float | None
    flagged_share: float | None
    open_alarms: int
    last_image: str | None


@dataclass
class SeriesPage:
    series: SeriesRow
    slices: list[SliceRecord]
    refused: list[SliceRecord]
    worst: list[SliceRecord]
    sr_events: list[SREvent]
    alarms: list[Alarm] = field(default_factory=list)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100) of ``values``; None when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _matches(row: SeriesRow, f: Filters) -> bool:
    return f.body_part is None or (row.body_part or "") == f.body_part


def report(log: QALog, f: Filters, rules: ChartRules = ChartRules(),
           cache: ReportCache | None = None) -> QAReport:
    """The report's groups for the filters (history before ``since`` still forms the baseline)."""
    if cache is not None:
        return cache.get(log, f, rules)
    return build_report(log, since=f.since, until=f.until, rules=rules, station=f.station,
                        protocol=f.protocol, kernel=f.kernel)


class ReportCache:
    """Reports of recent filter choices, kept until the log changes.

    A control chart needs each group's whole history (baseline, EWMA), so a
    report reads every series summary of its groups. Several people looking at
    the dashboard between two arrivals of images get the same report from
    here. The log's state is read in one scan of the series table (a few
    milliseconds): number of series, the latest scoring time and the sums of
    slice counts and mean scores; any write of a node changes at least one.
    """

    def __init__(self, size: int = 32) -> None:
        import threading
        from collections import OrderedDict

        self.size = size
        self._reports: OrderedDict[tuple, QAReport] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def state(log: QALog) -> tuple:
        return tuple(log.execute(
            "SELECT count(*), max(last_scored_at), sum(n_slices), sum(n_refused), sum(n_error), "
            "sum(score_mean), sum(noise_hu_median) FROM series")[0])

    def get(self, log: QALog, f: Filters, rules: ChartRules) -> QAReport:
        key = (f.since, f.until, f.station, f.protocol, f.kernel, rules, self.state(log))
        with self._lock:
            if key in self._reports:
                self._reports.move_to_end(key)
                return self._reports[key]
        made = build_report(log, since=f.since, until=f.until, rules=rules, station=f.station,
                            protocol=f.protocol, kernel=f.kernel)
        with self._lock:
            self._reports[key] = made
            while len(self._reports) > self.size:
                self._reports.popitem(last=False)
        return made


def alarms(log: QALog, f: Filters, qa_report: QAReport | None = None, *,
           with_disagreements: bool = True, cache: ReportCache | None = None) -> list[Alarm]:
    """Alarms of the window, newest first, each with its latest acknowledgement (if any)."""
    qa_report = qa_report if qa_report is not None else report(log, f, cache=cache)
    found: list[Alarm] = []
    for group in qa_report.groups:
        for kind, chart in (("score", group.chart), ("noise", group.noise_chart)):
            if chart is None:
                continue
            for point in chart.flagged:
                found.append(Alarm(f"{kind}:{point.series_uid}", kind, point.series_uid, point.time,
                                   group.station_name, group.protocol_name, group.kernel,
                                   point.value, point.flags))
    if with_disagreements:
        for row in log.series(since=f.since, until=f.until, station=f.station, protocol=f.protocol,
                              kernel=f.kernel):
            if row.n_flagged and _matches(row, f):
                n = log.execute("SELECT count(*) FROM slices WHERE series_uid = ? AND status = 'ok' "
                                "AND flags LIKE ?", [row.series_uid, f"%{DISAGREE_FLAG}%"])[0][0]
                if n:
                    found.append(Alarm(f"disagree:{row.series_uid}", "disagree", row.series_uid,
                                       row.acquisition_datetime or row.first_scored_at or "",
                                       row.station_name, row.protocol_name, row.kernel, float(n),
                                       (f"{n} slices {DISAGREE_FLAG}",)))
    acks = {}
    for ack in log.acknowledgements():
        acks[ack.alarm_key] = ack  # oldest first: the last one wins
    out = []
    for alarm in found:
        ack = acks.get(alarm.key)
        if ack is not None:
            alarm = Alarm(**{**alarm.__dict__, "acknowledged_by": ack.acknowledged_by,
                             "acknowledged_at": ack.acknowledged_at, "comment": ack.comment})
        out.append(alarm)
    return sorted(out, key=lambda a: (a.time, a.key), reverse=True)


def overview(log: QALog, f: Filters, cache: ReportCache | None = None
             ) -> tuple[list[StationRow], list[Alarm]]:
    """One row per station over the window, and the window's control-chart alarms."""
    # Only the columns the table needs, from the series summaries of the window (indexed).
    where, params = _series_where(f)
    rows = log.execute(
        "SELECT station_name, study_uid, n_slices, score_mean, noise_hu_median, n_flagged, "
        f"last_scored_at FROM series{where}", params)
    chart_alarms = alarms(log, f, with_disagreements=False, cache=cache)
    open_by_station: dict[str | None, int] = {}
    for alarm in chart_alarms:
        if alarm.open:
            open_by_station[alarm.station_name] = open_by_station.get(alarm.station_name, 0) + 1
    by_station: dict[str | None, list[tuple]] = {}
    for row in rows:
        by_station.setdefault(row[0], []).append(row)
    table = []
    for station in sorted(set(by_station) | set(open_by_station), key=lambda s: s or ""):
        members = by_station.get(station, [])
        scored = [r for r in members if r[2] and r[3] is not None]
        n_slices = sum(r[2] for r in scored)
        mean = (math.fsum(r[3] * r[2] for r in scored) / n_slices) if n_slices else None
        table.append(StationRow(
            station, len({r[1] for r in members if r[1]}), len(members), n_slices, mean,
            percentile([r[3] for r in scored], 10),
            percentile([r[4] for r in scored if r[4] is not None], 50),
            (sum(r[5] for r in scored) / n_slices) if n_slices else None,
            open_by_station.get(station, 0), max((r[6] for r in members if r[6]), default=None)))
    return table, chart_alarms


def _series_where(f: Filters) -> tuple[str, list]:
    """WHERE clause on the series table for the filters (the same as QALog.series, plus body part)."""
    clauses, params = [], []
    for column, value in (("station_name", f.station), ("protocol_name", f.protocol),
                          ("kernel", f.kernel), ("body_part", f.body_part)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    when = "coalesce(acquisition_datetime, first_scored_at)"
    if f.since:
        clauses.append(f"{when} >= ?")
        params.append(f.since)
    if f.until:
        clauses.append(f"{when} < ?")
        params.append(f.until)
    return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), params


def filter_choices(log: QALog) -> dict[str, list[str]]:
    """Values offered in the filter lists (distinct values of the series table)."""
    choices = {}
    for name, column in (("station", "station_name"), ("protocol", "protocol_name"),
                         ("kernel", "kernel"), ("body_part", "body_part")):
        choices[name] = [r[0] for r in log.execute(
            f"SELECT DISTINCT {column} FROM series WHERE {column} IS NOT NULL ORDER BY {column}")]
    return choices


def dw_trend(log: QALog, group: GroupReport, f: Filters) -> list[tuple[str, str, float]]:
    """(series UID, time, Dw of the middle slice) of one group's series in the window."""
    # Three columns through the group index, not whole summaries; a missing value is its own
    # group (IS NULL, as the report groups None with None).
    where, params = _series_where(Filters(since=f.since, until=f.until))
    clauses = [where[len(" WHERE "):]] if where else []
    for column, value in (("station_name", group.station_name), ("protocol_name", group.protocol_name),
                          ("kernel", group.kernel)):
        if value is None:
            clauses.append(f"{column} IS NULL")
        else:
            clauses.append(f"{column} = ?")
            params.append(value)
    rows = log.execute(
        "SELECT series_uid, coalesce(acquisition_datetime, first_scored_at), "
        "water_equivalent_diameter_mm_middle FROM series WHERE "
        + " AND ".join(clauses) + " AND water_equivalent_diameter_mm_middle IS NOT NULL "
        "ORDER BY coalesce(acquisition_datetime, first_scored_at), first_scored_at, series_uid", params)
    return [(uid, when or "", dw) for uid, when, dw in rows]


def series_page(log: QALog, series_uid: str, *, worst: int = 5) -> SeriesPage | None:
    """Everything the series page shows, or None for an unknown series."""
    rows = [r for r in log.execute("SELECT series_uid FROM series WHERE series_uid = ?", [series_uid])]
    if not rows:
        return None
    (summary,) = [s for s in _series_by_uid(log, series_uid)]
    slices = log.slices(series_uid=series_uid)
    scored = [s for s in slices if s.status == "ok" and s.score is not None]
    scored.sort(key=lambda s: (s.slice_location is None, s.slice_location or 0.0, s.frame))
    worst_slices = sorted(scored, key=lambda s: (s.score, s.sop_instance_uid or ""))[:worst]
    return SeriesPage(summary, scored, [s for s in slices if s.status != "ok"], worst_slices,
                      log.sr_events(series_uid=series_uid))


def _series_by_uid(log: QALog, series_uid: str) -> list[SeriesRow]:
    from dataclasses import fields

    columns = [f.name for f in fields(SeriesRow)]
    return [SeriesRow(**dict(zip(columns, row))) for row in log.execute(
        f"SELECT {', '.join(columns)} FROM series WHERE series_uid = ?", [series_uid])]


# ---------------------------------------------------------------- CSV of each view

def _csv(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    """CSV text; cells that a spreadsheet would run as a formula are prefixed with a quote."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return out.getvalue()


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    # DICOM strings are untrusted: '=HYPERLINK(...)' in a station name must stay text.
    return neutralise_cell(str(value))


def overview_csv(rows: list[StationRow]) -> str:
    return _csv(("station_name", "exams", "series", "slices", "score_mean", "score_p10",
                 "noise_hu_median", "flagged_share", "open_alarms", "last_image"),
                ((r.station_name, r.exams, r.series, r.slices, r.score_mean, r.score_p10,
                  r.noise_median, r.flagged_share, r.open_alarms, r.last_image) for r in rows))


def alarms_csv(rows: list[Alarm]) -> str:
    return _csv(("kind", "series_uid", "time", "station_name", "protocol_name", "kernel", "value",
                 "rules", "acknowledged_by", "acknowledged_at", "comment"),
                ((a.kind, a.series_uid, a.time, a.station_name, a.protocol_name, a.kernel, a.value,
                  ";".join(a.rules), a.acknowledged_by, a.acknowledged_at, a.comment) for a in rows))


def series_csv(page: SeriesPage) -> str:
    return _csv(("sop_instance_uid", "frame", "slice_location", "status", "score", "likert",
                 "noise_hu", "noise_score", "flags", "reason"),
                ((s.sop_instance_uid, s.frame, s.slice_location, s.status, s.score, s.likert, s.noise_hu,
                  s.noise_score, s.flags, s.reason) for s in page.slices + page.refused))


def trends_csv(qa_report: QAReport) -> str:
    """The trend page's points: the report's CSV columns, cells neutralised as in every view."""
    from deltaiqa_lite.qa.report import CSV_COLUMNS

    rows = []
    for g in qa_report.groups:
        chart = g.chart
        for p in chart.points:
            rows.append((g.station_name, g.protocol_name, g.kernel, p.series_uid, p.time, p.value, p.ewma,
                         p.ewma_low, p.ewma_high, chart.centre, chart.shewhart_low, chart.shewhart_high,
                         int(p.in_baseline), ";".join(p.flags),
                         int(p.value < qa_report.rules.threshold)))
    return _csv(CSV_COLUMNS, rows)


def zoom_links(f: Filters, *, today: datetime | None = None) -> dict[str, dict[str, str]]:
    """Query strings that zoom the time window in (middle half), out (double), earlier and later."""
    now = today or datetime.now(timezone.utc).replace(tzinfo=None)
    start = datetime.fromisoformat(f.since) if f.since else now - timedelta(days=f.days)
    end = datetime.fromisoformat(f.until) if f.until else now
    span = max(end - start, timedelta(hours=2))

    def window(a: datetime, b: datetime) -> dict[str, str]:
        return f.query(since=a.isoformat(timespec="minutes"), until=b.isoformat(timespec="minutes"))

    return {"in": window(start + span / 4, end - span / 4),
            "out": window(start - span / 2, end + span / 2),
            "earlier": window(start - span / 2, end - span / 2),
            "later": window(start + span / 2, end + span / 2)}
