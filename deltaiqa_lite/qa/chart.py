"""Control chart as a PNG, drawn with Pillow (no plotting library needed).

x: acquisition time; y: series mean score (0..4 Likert scale). Drawn:
baseline period (shaded), centre line, Shewhart limits (dashed red), EWMA
and its limits (blue), series scores (grey dots), flagged series (red),
threshold (dotted orange). The same chart serves the median noise level in HU
(``clamp=None``). :func:`draw_scatter` draws noise against water-equivalent
diameter with its fitted exponential, :func:`draw_trend` a plain time series
(mean SSDE).
"""

from __future__ import annotations

import hashlib
import io
import math
from datetime import datetime
from collections.abc import Sequence
from itertools import pairwise

from PIL import Image, ImageDraw, ImageFont

from deltaiqa_lite.qa.report import ControlChart, NoiseSizeFit, TrendPoint

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


def _nice_step(span: float, ticks: int = 6) -> float:
    """A 1, 2 or 5 times a power of ten giving about ``ticks`` grid lines over ``span``."""
    raw = max(span, 1e-9) / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 5.0, 10.0):
        if raw <= factor * power:
            return factor * power
    return 10.0 * power


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def draw_chart(chart: ControlChart, title: str, *, threshold: float | None = None,
               width: int = 960, height: int = 380,
               clamp: tuple[float, float] | None = (-0.1, 4.1), digits: int = 1) -> bytes:
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
    clamp : (low, high) or None
        Limits of the y axis (the Likert range for scores); None for values
        on other scales (noise in HU).
    digits : int
        Decimals of the y labels.
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
    low, high = low - pad, high + pad
    if clamp is not None:
        low, high = max(low, clamp[0]), min(high, clamp[1])
    if high <= low:
        low, high = (0.0, 4.0) if clamp is not None else (low - 1.0, low + 1.0)
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
    if clamp is not None:
        step = 0.5 if high - low > 1.5 else (0.2 if high - low > 0.6 else 0.1)
    else:
        step = _nice_step(high - low)
    tick = round(low / step) * step
    while tick <= high:
        if tick >= low:
            y = sy(tick)
            draw.line([(left, y), (right, y)], fill=GRID)
            draw.text((6, y - 7), f"{tick:.{digits}f}", fill=AXIS, font=small)
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
    return _png(image)


def _axes(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], x_range: tuple[float, float],
          y_range: tuple[float, float], x_label: str, y_label: str, small: ImageFont.ImageFont):
    """Grid, tick labels and frame of a plain x-y plot; returns the x and y scale functions."""
    left, right, top, bottom = box
    (x0, x1), (y0, y1) = x_range, y_range

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (right - left)

    def sy(y: float) -> float:
        return bottom - (y - y0) / (y1 - y0) * (bottom - top)

    step = _nice_step(y1 - y0)
    tick = math.ceil(y0 / step) * step
    while tick <= y1:
        draw.line([(left, sy(tick)), (right, sy(tick))], fill=GRID)
        draw.text((6, sy(tick) - 7), f"{tick:g}", fill=AXIS, font=small)
        tick = round(tick + step, 9)
    step = _nice_step(x1 - x0)
    tick = math.ceil(x0 / step) * step
    while tick <= x1:
        draw.line([(sx(tick), bottom), (sx(tick), bottom + 4)], fill=AXIS)
        draw.text((sx(tick) - 10, bottom + 6), f"{tick:g}", fill=AXIS, font=small)
        tick = round(tick + step, 9)
    draw.rectangle([left, top, right, bottom], outline=AXIS)
    draw.text((right - draw.textlength(x_label, font=small), bottom + 22), x_label, fill=AXIS, font=small)
    draw.text((left + 4, top + 2), y_label, fill=AXIS, font=small)
    return sx, sy


def _padded(values: list[float], fraction: float = 0.08) -> tuple[float, float]:
    low, high = min(values), max(values)
    pad = max((high - low) * fraction, 1e-3 * max(abs(high), 1.0))
    return low - pad, high + pad


def draw_scatter(fit: NoiseSizeFit, title: str, *, width: int = 960, height: int = 380) -> bytes:
    """Noise level against water-equivalent diameter, one dot per series, with ``a exp(b Dw)``."""
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font, small = _font(14), _font(11)
    box = (56, width - 16, 30, height - 44)
    draw.text((box[0], 8), title, fill=AXIS, font=font)
    if not fit.dw_mm:
        draw.text((box[0], height // 2), "no series with both noise level and Dw", fill=AXIS, font=font)
        return _png(image)
    x_range = _padded(fit.dw_mm)
    y_range = _padded(fit.noise_hu)
    y_range = (max(0.0, y_range[0]), y_range[1])
    sx, sy = _axes(draw, box, x_range, y_range, "water-equivalent diameter (mm)", "noise (HU)", small)
    if fit.a is not None and fit.b_per_mm is not None:
        steps = 100
        curve = []
        for k in range(steps + 1):
            x = x_range[0] + (x_range[1] - x_range[0]) * k / steps
            y = fit.a * math.exp(fit.b_per_mm * x)
            if y_range[0] <= y <= y_range[1]:
                curve.append((sx(x), sy(y)))
        if len(curve) > 1:
            draw.line(curve, fill=EWMA, width=2)
        legend = (f"noise = {fit.a:.3g} exp({10 * fit.b_per_mm:.4f} Dw[cm])   r = "
                  f"{fit.r:.2f}   n = {len(fit.dw_mm)}" if fit.r is not None
                  else f"noise = {fit.a:.3g} exp({10 * fit.b_per_mm:.4f} Dw[cm])   n = {len(fit.dw_mm)}")
    else:
        legend = f"n = {len(fit.dw_mm)} (a fit needs 3 series with different Dw)"
    for x, y in zip(fit.dw_mm, fit.noise_hu):
        draw.ellipse([sx(x) - 3, sy(y) - 3, sx(x) + 3, sy(y) + 3], fill=POINT)
    draw.text((box[1] - draw.textlength(legend, font=small), 12), legend, fill=AXIS, font=small)
    return _png(image)


def draw_trend(points: list[TrendPoint], title: str, *, y_label: str = "SSDE (mGy)",
               width: int = 960, height: int = 300) -> bytes:
    """A plain trend over acquisition time (e.g. mean SSDE per series), no control rules."""
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font, small = _font(14), _font(11)
    box = (56, width - 16, 30, height - 44)
    draw.text((box[0], 8), title, fill=AXIS, font=font)
    if not points:
        draw.text((box[0], height // 2), "no series with a value", fill=AXIS, font=font)
        return _png(image)
    stamps = [_time(p.time) for p in points]
    t0, t1 = min(stamps), max(stamps)
    if t1 <= t0:
        t1 = t0 + 1.0
    y_range = _padded([p.value for p in points])
    y_range = (max(0.0, y_range[0]), y_range[1])
    left, right, top, bottom = box

    def sx(t: float) -> float:
        return left + (t - t0) / (t1 - t0) * (right - left)

    _, sy = _axes(draw, box, (0.0, 1.0), y_range, "", y_label, small)
    # The x ticks of _axes are fractions; cover them with dates like the control chart.
    draw.rectangle([left - 20, bottom + 1, right, height - 1], fill=BACKGROUND)
    for t in (t0, (t0 + t1) / 2, t1):
        draw.line([(sx(t), bottom), (sx(t), bottom + 4)], fill=AXIS)
        draw.text((min(max(sx(t) - 32, left), right - 70), bottom + 8),
                  datetime.fromtimestamp(t).strftime("%Y-%m-%d"), fill=AXIS, font=small)
    path = [(sx(t), sy(p.value)) for t, p in zip(stamps, points)]
    if len(path) > 1:
        draw.line(path, fill=GRID, width=1)
    for x, y in path:
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=EWMA)
    values = [p.value for p in points]
    legend = f"mean {sum(values) / len(values):.2f}  min {min(values):.2f}  max {max(values):.2f}  n = {len(values)}"
    draw.text((right - draw.textlength(legend, font=small), 12), legend, fill=AXIS, font=small)
    return _png(image)


#: Longest file stem of a chart PNG, in UTF-8 bytes (file systems allow 255 for the whole
#: name; the longest suffix added is ".noise-vs-dw.png").
MAX_STEM_BYTES = 120


def chart_file_stems(names: Sequence[str]) -> list[str]:
    """File stems for chart PNGs of groups named ``names``: safe, bounded, unique.

    Letters and digits of any script (CJK included) and ``-_.`` are kept, anything
    else becomes ``-``; a leading dot is dropped (no hidden files). A stem longer
    than :data:`MAX_STEM_BYTES` UTF-8 bytes is cut on a character boundary, and a
    stem that was cut or that equals another one (ignoring case, for file systems
    that do) gets ``-`` and 10 hex digits of the SHA-256 of the full name, so two
    groups never overwrite each other's PNGs.
    """
    cleaned = []
    for name in names:
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).lstrip(".") or "-"
        encoded = safe.encode("utf-8")
        cut = len(encoded) > MAX_STEM_BYTES
        if cut:
            safe = encoded[:MAX_STEM_BYTES].decode("utf-8", "ignore")
        cleaned.append((safe, cut))
    counts: dict[str, int] = {}
    for safe, _ in cleaned:
        counts[safe.casefold()] = counts.get(safe.casefold(), 0) + 1
    stems = []
    for name, (safe, cut) in zip(names, cleaned):
        if cut or counts[safe.casefold()] > 1:
            digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:10]
            safe = f"{safe}-{digest}"
        stems.append(safe)
    return stems
