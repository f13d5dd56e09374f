"""Self-contained HTML page of a QA report: tables and charts inline (base64 PNG).

One file, no scripts, no external style sheets or fonts, so it can be mailed
or archived and still opens the same in ten years.
"""

from __future__ import annotations

import base64
from html import escape

from deltaiqa_lite.qa.chart import draw_chart, draw_scatter, draw_trend
from deltaiqa_lite.qa.report import QAReport

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f2f2f2; }
td.text, th.text { text-align: left; }
.bad { color: #c00; font-weight: bold; }
.ok { color: #186a2b; }
.muted { color: #777; }
img { max-width: 100%; border: 1px solid #ddd; }
"""


def _num(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _img(alt: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f"<img alt=\"{escape(alt)}\" src=\"data:image/png;base64,{data}\">"


def _physics_figures(g) -> list[str]:
    """Noise control chart, noise-vs-Dw scatter and SSDE trend of a group (docs/physics.md)."""
    parts: list[str] = []
    if g.noise_chart is not None:
        parts.append(_img(f"noise chart {g.title}",
                          draw_chart(g.noise_chart, f"{g.title}: median noise_hu per series (HU)",
                                     clamp=None)))
    if g.noise_vs_dw is not None:
        parts.append(_img(f"noise vs Dw {g.title}",
                          draw_scatter(g.noise_vs_dw, f"{g.title}: noise vs water-equivalent diameter")))
    if g.ssde_trend:
        parts.append(_img(f"SSDE trend {g.title}", draw_trend(g.ssde_trend, f"{g.title}: mean SSDE per series")))
    return parts


def render_html(report: QAReport) -> str:
    """Render the report as one HTML document (str)."""
    rules = report.rules
    window = f"{report.since or 'start of log'} to {report.until or 'now'}"
    parts = [
        "<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<title>deltaiqa-lite QA report</title>", f"<style>{_STYLE}</style></head><body>",
        "<h1>deltaiqa-lite QA report</h1>",
        (f"<p>Log <code>{escape(report.log_path)}</code>, window {escape(window)}, "
         f"generated {escape(report.generated_at)} (UTC).</p>"),
        ("<p class=\"muted\">Research and QA use only, not diagnosis. Baseline: first "
         f"{escape(rules.baseline_until or f'{rules.baseline_days:g} days')} of each group "
         f"(at least {rules.min_baseline} series). Rules: EWMA lambda {rules.ewma_lambda:g}, "
         f"limits +-{rules.ewma_limit:g} sigma; Shewhart +-{rules.shewhart_limit:g} sigma; "
         f"series listed below score {rules.threshold:g}.</p>"),
        ("<h2>Summary</h2><table><tr><th class=\"text\">station / protocol / kernel</th>"
         "<th>series</th><th>slices</th><th>mean</th><th>SD</th><th>min</th><th>max</th>"
         "<th>centre</th><th>flagged</th><th class=\"text\">status</th>"
         "<th>below threshold</th></tr>"),
    ]
    for g in report.groups:
        css = "bad" if g.chart.status == "out-of-control" else (
            "ok" if g.chart.status == "in-control" else "muted")
        parts.append(
            f"<tr><td class=\"text\">{escape(g.title)}</td><td>{g.n_series}</td>"
            f"<td>{g.n_slices}</td><td>{_num(g.score_mean)}</td><td>{_num(g.score_sd)}</td>"
            f"<td>{_num(g.score_min)}</td><td>{_num(g.score_max)}</td>"
            f"<td>{_num(g.chart.centre)}</td><td>{len(g.chart.flagged)}</td>"
            f"<td class=\"text {css}\">{escape(g.chart.status)}</td>"
            f"<td>{len(g.below_threshold)}</td></tr>")
    parts.append("</table>")
    if not report.groups:
        parts.append("<p>No scored series in this window.</p>")
    for g in report.groups:
        png = draw_chart(g.chart, g.title, threshold=rules.threshold)
        data = base64.b64encode(png).decode("ascii")
        parts.append(f"<h2>{escape(g.title)}</h2>")
        parts.append(f"<img alt=\"control chart {escape(g.title)}\" "
                     f"src=\"data:image/png;base64,{data}\">")
        parts.extend(_physics_figures(g))
        flagged = g.chart.flagged
        if flagged:
            parts.append("<h3>Flagged series</h3><table><tr><th class=\"text\">time</th>"
                         "<th class=\"text\">series UID</th><th>score</th><th>EWMA</th>"
                         "<th class=\"text\">rules</th></tr>")
            for p in flagged:
                parts.append(f"<tr><td class=\"text\">{escape(p.time)}</td>"
                             f"<td class=\"text\">{escape(p.series_uid)}</td>"
                             f"<td>{_num(p.value)}</td><td>{_num(p.ewma)}</td>"
                             f"<td class=\"text\">{escape(', '.join(p.flags))}</td></tr>")
            parts.append("</table>")
        if g.below_threshold:
            parts.append(f"<h3>Series below {rules.threshold:g}</h3><table><tr>"
                         "<th class=\"text\">time</th><th class=\"text\">series</th>"
                         "<th class=\"text\">series UID</th><th>slices</th><th>mean</th>"
                         "<th>min</th></tr>")
            for r in g.below_threshold:
                parts.append(f"<tr><td class=\"text\">{escape(r.acquisition_datetime or '')}</td>"
                             f"<td class=\"text\">{escape(r.series_description or '')}</td>"
                             f"<td class=\"text\">{escape(r.series_uid)}</td>"
                             f"<td>{r.n_slices}</td><td>{_num(r.score_mean)}</td>"
                             f"<td>{_num(r.score_min)}</td></tr>")
            parts.append("</table>")
    if report.refused:
        totals = ", ".join(f"{kind} {n}" for kind, n in report.refused_totals.items())
        parts.append(f"<h2>Refused images (selection policy)</h2><p>{escape(totals)}</p><table><tr>"
                     "<th class=\"text\">time</th><th class=\"text\">series</th>"
                     "<th class=\"text\">series UID</th><th>scored</th>"
                     "<th class=\"text\">refused by kind</th></tr>")
        for r in report.refused:
            kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(r.kinds.items()))
            parts.append(f"<tr><td class=\"text\">{escape(r.time)}</td>"
                         f"<td class=\"text\">{escape(r.series_description or '')}</td>"
                         f"<td class=\"text\">{escape(r.series_uid)}</td><td>{r.n_scored}</td>"
                         f"<td class=\"text\">{escape(kinds)}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
