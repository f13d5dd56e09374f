"""Charts as SVG text, drawn on the server.

Why server-side SVG and not a JavaScript chart library: the page needs no
script at all (the Content-Security-Policy forbids every script, so an
injected string can never run), nothing has to be vendored or kept up to date,
the charts print and save with the page, and a chart of a few thousand points
is a few hundred kilobytes at most. Each point carries a ``<title>`` (the
browser's tooltip: series, time, value, rules fired) and links to its series;
flagged points are red and labelled with the rule. Zooming is a narrower time
window (links on the trend page), so the server never sends more points than
the window holds.

Every text that reaches the SVG goes through :func:`html.escape`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape
from urllib.parse import quote

from deltaiqa_lite.qa.report import ControlChart

WIDTH, HEIGHT = 900, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 22, 34
MAX_LABELS = 25


def _t(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None).timestamp()
    except (ValueError, AttributeError):
        return 0.0


class _Frame:
    """Value-to-pixel scales of one plot."""

    def __init__(self, xs: Sequence[float], ys: Sequence[float], clamp: tuple[float, float] | None):
        x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
        if x1 <= x0:
            x0, x1 = x0 - 1.0, x1 + 1.0
        y0, y1 = (min(ys), max(ys)) if ys else (0.0, 4.0)
        pad = max((y1 - y0) * 0.08, 0.05)
        y0, y1 = y0 - pad, y1 + pad
        if clamp is not None:
            y0, y1 = max(y0, clamp[0]), min(y1, clamp[1])
            if y1 <= y0:
                y0, y1 = clamp
        self.x0, self.x1, self.y0, self.y1 = x0, x1, y0, y1

    def x(self, value: float) -> float:
        return LEFT + (value - self.x0) / (self.x1 - self.x0) * (WIDTH - LEFT - RIGHT)

    def y(self, value: float) -> float:
        return HEIGHT - BOTTOM - (value - self.y0) / (self.y1 - self.y0) * (HEIGHT - TOP - BOTTOM)


def _axes(frame: _Frame, title: str, *, time_axis: bool, digits: int = 1) -> list[str]:
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'class="chart" role="img" aria-label="{escape(title)}">',
             f'<title>{escape(title)}</title>',
             f'<text x="{LEFT}" y="15" class="chart-title">{escape(title)}</text>',
             f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" '
             f'height="{HEIGHT - TOP - BOTTOM}" class="plot"/>']
    for k in range(5):
        value = frame.y0 + (frame.y1 - frame.y0) * k / 4
        y = frame.y(value)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{LEFT - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">'
                     f'{value:.{digits}f}</text>')
    for k in range(3):
        value = frame.x0 + (frame.x1 - frame.x0) * k / 2
        label = datetime.fromtimestamp(value).strftime("%Y-%m-%d") if time_axis else f"{value:.0f}"
        anchor = ("start", "middle", "end")[k]
        parts.append(f'<text x="{frame.x(value):.1f}" y="{HEIGHT - 12}" class="tick" '
                     f'text-anchor="{anchor}">{escape(label)}</text>')
    return parts


def _polyline(points: Sequence[tuple[float, float]], css: str) -> str:
    if len(points) < 2:
        return ""
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return f'<polyline points="{coords}" class="{css}"/>'


def _hline(frame: _Frame, value: float | None, css: str) -> str:
    if value is None or not frame.y0 <= value <= frame.y1:
        return ""
    y = frame.y(value)
    return f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="{css}"/>'


def control_chart(chart: ControlChart, title: str, *, unit: str = "", threshold: float | None = None,
                  clamp: tuple[float, float] | None = (-0.1, 4.1), link: str = "/series/") -> str:
    """One control chart: points, EWMA and its limits, centre, Shewhart limits, rules fired."""
    points = chart.points
    xs = [_t(p.time) for p in points]
    extra = [v for v in (chart.shewhart_low, chart.shewhart_high, threshold) if v is not None]
    frame = _Frame(xs, [p.value for p in points] + extra, clamp)
    parts = _axes(frame, title, time_axis=True, digits=1 if clamp else 0)
    base = [x for x, p in zip(xs, points) if p.in_baseline]
    if base:
        parts.append(f'<rect x="{frame.x(min(base)):.1f}" y="{TOP}" '
                     f'width="{max(frame.x(max(base)) - frame.x(min(base)), 1):.1f}" '
                     f'height="{HEIGHT - TOP - BOTTOM}" class="baseline"><title>baseline</title></rect>')
    parts += [_hline(frame, chart.centre, "centre"), _hline(frame, chart.shewhart_low, "shewhart"),
              _hline(frame, chart.shewhart_high, "shewhart"), _hline(frame, threshold, "threshold")]
    parts.append(_polyline([(frame.x(x), frame.y(p.ewma)) for x, p in zip(xs, points)], "ewma"))
    for side in ("ewma_low", "ewma_high"):
        parts.append(_polyline([(frame.x(x), frame.y(getattr(p, side))) for x, p in zip(xs, points)
                                if getattr(p, side) is not None
                                and frame.y0 <= getattr(p, side) <= frame.y1], "ewma-limit"))
    labels = 0
    previous: tuple[str, ...] = ()
    for x, p in zip(xs, points):
        px, py = frame.x(x), frame.y(min(max(p.value, frame.y0), frame.y1))
        rules = ", ".join(p.flags) or "in control"
        tip = f"{p.series_uid} {p.time}: {p.value:.2f}{unit} ({rules})"
        css = "point flagged" if p.flags else "point"
        parts.append(f'<a href="{escape(link + quote(p.series_uid, safe=""))}">'
                     f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{3.5 if p.flags else 2.2}" class="{css}">'
                     f'<title>{escape(tip)}</title></circle></a>')
        # Named where a rule starts firing (every point names it in its tooltip and colour).
        if p.flags and p.flags != previous and labels < MAX_LABELS:
            labels += 1
            parts.append(f'<text x="{px + 5:.1f}" y="{py - 5:.1f}" class="rule">'
                         f'{escape(", ".join(p.flags))}</text>')
        previous = p.flags
    parts.append("</svg>")
    return "".join(parts)


def trend(points: Sequence[tuple[str, str, float]], title: str, *, unit: str = "",
          link: str = "/series/") -> str:
    """A plain time series: (series UID, time, value) points, no limits."""
    xs = [_t(t) for _, t, _ in points]
    frame = _Frame(xs, [v for _, _, v in points], None)
    parts = _axes(frame, title, time_axis=True)
    parts.append(_polyline([(frame.x(x), frame.y(v)) for x, (_, _, v) in zip(xs, points)], "trend"))
    for x, (uid, stamp, value) in zip(xs, points):
        parts.append(f'<a href="{escape(link + quote(uid, safe=""))}"><circle cx="{frame.x(x):.1f}" '
                     f'cy="{frame.y(value):.1f}" r="2.2" class="point">'
                     f'<title>{escape(f"{uid} {stamp}: {value:.1f}{unit}")}</title></circle></a>')
    parts.append("</svg>")
    return "".join(parts)


def profile(positions: Sequence[float], scores: Sequence[float], noise: Sequence[float | None],
            title: str) -> str:
    """Score (0..4, left axis) and noise level (HU, drawn scaled onto the same plot) along a series."""
    frame = _Frame(list(positions), [0.0, 4.0], (-0.1, 4.1))  # the whole scale: noise shares it
    parts = _axes(frame, title, time_axis=False)
    parts.append(_polyline([(frame.x(x), frame.y(s)) for x, s in zip(positions, scores)], "trend"))
    known = [n for n in noise if n is not None]
    if known:
        top = max(known) * 1.1 or 1.0
        parts.append(_polyline([(frame.x(x), frame.y(n / top * 4.0)) for x, n in zip(positions, noise)
                                if n is not None], "noise"))
        parts.append(f'<text x="{WIDTH - RIGHT}" y="15" class="tick" text-anchor="end">'
                     f'noise (orange): 0..{top:.0f} HU</text>')
    for x, s, n in zip(positions, scores, noise):
        tip = f"position {x:.1f}: score {s:.2f}" + (f", noise {n:.1f} HU" if n is not None else "")
        parts.append(f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(s):.1f}" r="2" class="point">'
                     f'<title>{escape(tip)}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)
