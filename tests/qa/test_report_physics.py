"""Physics in the QA report: noise control chart, noise-vs-Dw fit and scatter, SSDE trend."""

from __future__ import annotations

import io
import json
import math
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deltaiqa_lite.cli import main
from deltaiqa_lite.qa.chart import draw_scatter, draw_trend
from deltaiqa_lite.qa.html import render_html
from deltaiqa_lite.qa.log import QALog, SliceRecord
from deltaiqa_lite.qa.report import ChartRules, build_report, fit_noise_vs_dw, report_to_json

A_HU, B_PER_MM = 2.0, 0.007   # noise = 2 exp(0.007 Dw): 16.3 HU at 300 mm
STEP_SERIES = 60              # noise rises by 30 % from this series on (a tube or filter change)


def _log(path: Path) -> None:
    rng = np.random.default_rng(5)
    start = datetime(2025, 1, 1, 8)
    records = []
    for k in range(100):
        dw = float(rng.uniform(280, 320))   # one protocol, similar patients: size spread small
        noise = A_HU * math.exp(B_PER_MM * dw) * float(np.exp(rng.normal(0, 0.03)))
        if k >= STEP_SERIES:
            noise *= 1.3
        stamp = (start + timedelta(hours=12 * k)).isoformat(timespec="seconds")
        uid = f"1.2.{k}"
        for z in range(3):
            records.append(SliceRecord(
                source="test", status="ok", series_uid=uid, sop_instance_uid=f"{uid}.{z}",
                station_name="CT1", protocol_name="ABDOMEN", kernel="B30f", acquisition_datetime=stamp,
                score=2.5, likert=3, slice_location=float(z), noise_hu=noise + (z - 1) * 0.1,
                water_equivalent_diameter_mm=dw + (z - 1) * 5.0, ctdivol_mgy=10.0,
                ssde_mgy=10.0 * 3.704369 * math.exp(-0.03671937 * dw / 10), flags=""))
    with QALog(path) as log:
        log.record(records)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = tmp_path_factory.mktemp("physics") / "qa.sqlite"
    _log(path)
    with QALog(path) as log:
        return build_report(log, rules=ChartRules(baseline_days=20, min_baseline=30)), path


def test_noise_chart_flags_the_noise_step(report):
    (group,) = report[0].groups
    chart = group.noise_chart
    assert chart is not None and chart.status == "out-of-control"
    flagged = [k for k, p in enumerate(chart.points) if p.flags]
    assert flagged and min(flagged) >= STEP_SERIES and all("high" in f for f in chart.points[flagged[0]].flags)
    # The score did not move: its chart stays quiet.
    assert group.chart.status in ("in-control", "insufficient-baseline") or not group.chart.flagged


def test_noise_vs_dw_fit_recovers_the_exponential():
    rng = np.random.default_rng(1)
    dw = rng.uniform(200, 400, 60)
    noise = A_HU * np.exp(B_PER_MM * dw) * np.exp(rng.normal(0, 0.02, 60))
    fit = fit_noise_vs_dw(dw.tolist(), noise.tolist())
    assert fit.b_per_mm == pytest.approx(B_PER_MM, rel=0.05)
    assert fit.a == pytest.approx(A_HU, rel=0.15)
    assert fit.r > 0.95
    assert fit_noise_vs_dw([300.0, 300.0, 300.0], [10.0, 11.0, 12.0]).a is None   # no spread in Dw
    assert fit_noise_vs_dw([250.0, 300.0], [10.0, 11.0]).a is None                # too few
    # One phantom at several doses: Dw equal but for float noise in the last digits.
    assert fit_noise_vs_dw([300.0, 300.0 + 1e-9, 300.0 - 1e-9], [10.0, 14.0, 20.0]).a is None


def test_group_fit_and_ssde_trend_from_the_log(report):
    (group,) = report[0].groups
    fit = group.noise_vs_dw
    assert len(fit.dw_mm) == 100 and fit.b_per_mm > 0
    assert len(group.ssde_trend) == 100
    # Middle slice of three (z = 1) carries the series Dw; SSDE falls with size.
    dws = np.array(fit.dw_mm)
    ssde = np.array([p.value for p in group.ssde_trend])
    assert np.corrcoef(dws, ssde)[0, 1] < -0.99


def test_report_outputs_carry_physics(report, tmp_path):
    qa_report, path = report
    document = json.loads(report_to_json(qa_report))
    (group,) = document["groups"]
    assert group["noise_chart"]["status"] == "out-of-control"
    assert group["noise_vs_dw"]["b_per_mm"] > 0 and len(group["ssde_trend"]) == 100
    html = render_html(qa_report)
    assert html.count("<img") == 4   # score chart, noise chart, scatter, SSDE trend
    assert "noise vs Dw" in html and "SSDE trend" in html
    folder = tmp_path / "png"
    assert main(["report", "--log", str(path), "--png-dir", str(folder), "--format", "json",
                 "-o", str(tmp_path / "r.json")]) == 0
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["CT1_ABDOMEN_B30f.noise-vs-dw.png", "CT1_ABDOMEN_B30f.noise.png",
                     "CT1_ABDOMEN_B30f.png", "CT1_ABDOMEN_B30f.ssde.png"]


def test_scatter_and_trend_pngs_draw_points():
    fit = fit_noise_vs_dw([220.0, 300.0, 380.0], [10.0, 17.0, 29.0])
    image = Image.open(io.BytesIO(draw_scatter(fit, "CT1"))).convert("RGB")
    assert image.size == (960, 380)
    pixels = np.asarray(image)
    assert ((pixels == (150, 150, 150)).all(axis=2)).sum() > 20   # the dots
    assert ((pixels == (30, 80, 200)).all(axis=2)).sum() > 200    # the fitted curve
    empty = Image.open(io.BytesIO(draw_trend([], "CT1"))).convert("RGB")
    assert empty.size == (960, 300)
