"""Control chart as a PNG, drawn with Pillow (no plotting library needed).

x: acquisition time; y: series mean score (0..4 Likert scale). Drawn:
baseline period (shaded), centre line, Shewhart limits (dashed red), EWMA
and its limits (blue), series scores (grey dots), flagged series (red),
threshold (dotted orange).
"""

from __future__ import annotations

import io
from datetime import datetime
from itertools import pairwise

from PIL import Image, ImageDraw, ImageFont

from deltaiqa_lite.qa.report import ControlChart

BACKGROUND = (255, 255, 255)
AXIS = (60, 60, 60)
GRID = (225, 225, 225)
BASELINE_FILL = (236, 243, 236)
POINT = (150, 150, 150)
FLAG = (210, 30, 30)
CENTRE = (20, 130, 40)
SHEWHART = (210, 60, 60)
EWMA = (30, 80, 200)
THRESHOLD = (230, 140, 20)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _time(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _dashed(draw: ImageDraw.ImageDraw, points: list[tuple[float, float]], colour: tuple,
            dash: int = 6, width: int = 1) -> None:
    for (x0, y0), (x1, y1) in pairwise(points):
        length = max(abs(x1 - x0), 1.0)
        steps = int(length // dash)
        for s in range(0, steps + 1, 2):
            a = s / max(steps, 1)
            b = min((s + 1) / max(steps, 1), 1.0)
            draw.line([(x0 + (x1 - x0) * a, y0 + (y1 - y0) * a),
                       (x0 + (x1 - x0) * b, y0 + (y1 - y0) * b)], fill=colour, width=width)


def draw_chart(chart: ControlChart, title: str, *, threshold: float | None = None,
               width: int = 960, height: int = 380) -> bytes:
    """Draw one control chart; returns PNG bytes.

    Parameters
    ----------
    chart : ControlChart
    title : str
        Shown above the plot (station / protocol / kernel).
    threshold : float, optional
        Score below which series are listed; drawn as a dotted line.
    width, height : int
        Image size in pixels.
    """
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font, small = _font(14), _font(11)
    left, right, top, bottom = 56, width - 16, 30, height - 40
    draw.text((left, 8), title, fill=AXIS, font=font)

    points = chart.points
    values = [p.value for p in points]
    extra = [v for v in (chart.shewhart_low, chart.shewhart_high, threshold) if v is not None]
    low = min(values + extra, default=0.0)
    high = max(values + extra, default=4.0)
    pad = max((high - low) * 0.08, 0.05)
    low, high = max(low - pad, -0.1), min(high + pad, 4.1)
    if high <= low:
        low, high = 0.0, 4.0
    stamps = [_time(p.time) for p in points]
    t0, t1 = (min(stamps), max(stamps)) if stamps else (0.0, 1.0)
    if t1 <= t0:
        t1 = t0 + 1.0

    def sx(t: float) -> float:
        return left + (t - t0) / (t1 - t0) * (right - left)

    def sy(v: float) -> float:
        return bottom - (v - low) / (high - low) * (bottom - top)

    # Baseline period.
    base = [s for s, p in zip(stamps, points) if p.in_baseline]
    if base:
        draw.rectangle([sx(min(base)), top, sx(max(base)), bottom], fill=BASELINE_FILL)
        draw.text((sx(min(base)) + 4, top + 2), "baseline", fill=CENTRE, font=small)
    # Grid and y labels.
    step = 0.5 if high - low > 1.5 else (0.2 if high - low > 0.6 else 0.1)
    tick = round(low / step) * step
    while tick <= high:
        if tick >= low:
            y = sy(tick)
            draw.line([(left, y), (right, y)], fill=GRID)
            draw.text((6, y - 7), f"{tick:.1f}", fill=AXIS, font=small)
        tick = round(tick + step, 6)
    # x labels: first, middle and last date.
    if stamps:
        for t in (t0, (t0 + t1) / 2, t1):
            label = datetime.fromtimestamp(t).strftime("%Y-%m-%d")
            x = sx(t)
            draw.line([(x, bottom), (x, bottom + 4)], fill=AXIS)
            draw.text((min(max(x - 32, left), right - 70), bottom + 8), label, fill=AXIS,
                      font=small)
    draw.rectangle([left, top, right, bottom], outline=AXIS)

    if threshold is not None and low <= threshold <= high:
        _dashed(draw, [(left, sy(threshold)), (right, sy(threshold))], THRESHOLD, dash=2)
    if chart.centre is not None:
        draw.line([(left, sy(chart.centre)), (right, sy(chart.centre))], fill=CENTRE, width=2)
        for limit in (chart.shewhart_low, chart.shewhart_high):
            if limit is not None and low <= limit <= high:
                _dashed(draw, [(left, sy(limit)), (right, sy(limit))], SHEWHART)
        upper = [(sx(s), sy(p.ewma_high)) for s, p in zip(stamps, points)
                 if p.ewma_high is not None]
        lower = [(sx(s), sy(p.ewma_low)) for s, p in zip(stamps, points)
                 if p.ewma_low is not None]
        _dashed(draw, upper, EWMA, dash=4)
        _dashed(draw, lower, EWMA, dash=4)
        path = [(sx(s), sy(p.ewma)) for s, p in zip(stamps, points)]
        if len(path) > 1:
            draw.line(path, fill=EWMA, width=2)
    for s, p in zip(stamps, points):
        x, y = sx(s), sy(p.value)
        radius = 3 if p.flags else 2
        draw.ellipse([x - radius, y - radius, x + radius, y + radius],
                     fill=FLAG if p.flags else POINT)
    legend = (f"status: {chart.status}   centre {chart.centre:.2f}  sigma {chart.sigma:.3f}"
              if chart.centre is not None and chart.sigma is not None
              else f"status: {chart.status}")
    legend += f"   flagged {len(chart.flagged)} of {len(points)}"
    draw.text((right - draw.textlength(legend, font=small), 12), legend,
              fill=FLAG if chart.flagged else AXIS, font=small)

    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
