from __future__ import annotations

import base64
import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from qa_generate import generate_log

from deltaiqa_lite.qa.chart import draw_chart
from deltaiqa_lite.qa.html import render_html
from deltaiqa_lite.qa.log import QALog
from deltaiqa_lite.qa.report import (
    ChartRules,
    build_report,
    control_chart,
    report_to_csv,
    report_to_json,
)

# Documented in docs/qa-node.md (tests/qa/chart_simulation.py): a sustained shift of
# >= 2 sigma of the series-to-series spread is flagged within 14 series (99 % of runs).
DETECTION_SERIES_2SIGMA = 14
DRIFT_DAY = 60


@pytest.fixture(scope="module")
def drift_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("drift") / "qa.sqlite"
    order = generate_log(path, drift_day=DRIFT_DAY, drift=-0.4)
    return path, order


@pytest.fixture(scope="module")
def clean_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clean") / "qa.sqlite"
    generate_log(path, drift_day=None)
    return path


def test_drift_flagged_within_documented_series(drift_log: tuple[Path, dict]) -> None:
    path, order = drift_log
    with QALog(path) as log:
        report = build_report(log)
    by_station = {g.station_name: g for g in report.groups}
    ct1, ct2 = by_station["CT1"], by_station["CT2"]
    assert (ct1.protocol_name, ct1.kernel) == ("ABDOMEN", "B30f")
    onset = DRIFT_DAY * 6  # 6 series a day; the first drifted series of CT1
    uids = [p.series_uid for p in ct1.chart.points]
    assert uids == order["CT1"]
    flagged = [i for i, p in enumerate(ct1.chart.points) if p.flags]
    assert flagged, "drift not flagged"
    assert min(flagged) >= onset, f"false alarm before the drift at series {min(flagged)}"
    delay = min(flagged) - onset + 1
    assert delay <= DETECTION_SERIES_2SIGMA, f"drift flagged only after {delay} series"
    first = ct1.chart.points[min(flagged)]
    assert "ewma-low" in first.flags
    assert ct1.chart.status == "out-of-control"
    # The baseline is the first 28 days: 168 series, centre near the true 3.0.
    assert ct1.chart.n_baseline == 28 * 6
    assert ct1.chart.centre == pytest.approx(3.0, abs=0.03)
    # The station without drift is not flagged.
    assert ct2.chart.status == "in-control" and not ct2.chart.flagged
    assert [g.title for g in report.out_of_control] == ["CT1 / ABDOMEN / B30f"]


def test_no_flags_without_drift(clean_log: Path) -> None:
    with QALog(clean_log) as log:
        report = build_report(log)
    assert len(report.groups) == 2
    for group in report.groups:
        assert group.n_series == 90 * 6
        assert group.chart.status == "in-control", group.title
        assert group.chart.flagged == []
        assert all(r.score_mean < 2.0 for r in group.below_threshold)


def test_window_keeps_baseline_history(drift_log: tuple[Path, dict]) -> None:
    path, _ = drift_log
    with QALog(path) as log:
        full = build_report(log)
        late = build_report(log, since="2024-03-15", until="2024-03-25")
        before = build_report(log, since="2024-02-01", until="2024-02-10", station="CT1")
    ct1_full = next(g for g in full.groups if g.station_name == "CT1")
    ct1_late = next(g for g in late.groups if g.station_name == "CT1")
    # Same centre line as the full report: the baseline comes from before the window.
    assert ct1_late.chart.centre == pytest.approx(ct1_full.chart.centre)
    assert all("2024-03-15" <= p.time < "2024-03-25" for p in ct1_late.chart.points)
    assert ct1_late.n_series == 10 * 6
    assert ct1_late.chart.status == "out-of-control"  # days 74..83 are after the drift
    assert [g.station_name for g in before.groups] == ["CT1"]
    assert before.groups[0].chart.status == "in-control"


def test_below_threshold_listed(tmp_path: Path) -> None:
    path = tmp_path / "qa.sqlite"
    generate_log(path, days=10, drift_day=5, drift=-1.5, series_per_day=1)
    with QALog(path) as log:
        report = build_report(log, rules=ChartRules(threshold=2.0))
    ct1 = next(g for g in report.groups if g.station_name == "CT1")
    assert len(ct1.below_threshold) == 5  # days 5..9, one series a day, true mean 1.5
    assert all(r.score_mean < 2.0 for r in ct1.below_threshold)
    # 10 series is less than the 30 baseline series needed: the chart says so, no guessing.
    assert ct1.chart.status == "insufficient-baseline" and ct1.chart.flagged == []


def test_control_chart_rules_directly() -> None:
    rng = np.random.default_rng(3)
    values = list(3.0 + rng.normal(0, 0.1, 100))
    values[80] = 2.0  # one gross outlier: 10 sigma
    chart = control_chart(values, [i < 50 for i in range(100)], rules=ChartRules())
    assert chart.sigma == pytest.approx(0.1, rel=0.25)
    assert "shewhart-low" in chart.points[80].flags
    assert chart.points[80].value == pytest.approx(2.0)
    # EWMA limits widen towards their asymptote.
    widths = [p.ewma_high - p.ewma_low for p in chart.points]
    assert widths[0] < widths[5] < widths[60]
    assert widths[99] == pytest.approx(2 * 4.3 * chart.sigma * (0.1 / 1.9) ** 0.5, rel=1e-3)
    too_short = control_chart(values[:10], [True] * 10)
    assert too_short.status == "insufficient-baseline"


def test_writers(drift_log: tuple[Path, dict]) -> None:
    path, _ = drift_log
    with QALog(path) as log:
        report = build_report(log)
    data = json.loads(report_to_json(report))
    assert data["out_of_control"] == ["CT1 / ABDOMEN / B30f"]
    assert data["rules"]["ewma_lambda"] == 0.1
    assert len(data["groups"][0]["chart"]["points"]) == 540
    rows = list(csv.DictReader(io.StringIO(report_to_csv(report))))
    assert len(rows) == 2 * 540
    flagged = [r for r in rows if r["flags"]]
    assert flagged and all(r["station_name"] == "CT1" for r in flagged)
    assert float(rows[0]["centre"]) == pytest.approx(report.groups[0].chart.centre, abs=1e-4)

    png = draw_chart(report.groups[0].chart, report.groups[0].title, threshold=2.0)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (960, 380)
    pixels = np.asarray(image.convert("RGB"))
    red = np.all(pixels == (210, 30, 30), axis=-1).sum()
    assert red > 50  # flagged points drawn

    page = render_html(report)
    assert page.startswith("<!DOCTYPE html>") and "out-of-control" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 2
    assert Image.open(io.BytesIO(base64.b64decode(images[0]))).size == (960, 380)


def test_html_escapes_header_text(tmp_path: Path) -> None:
    from deltaiqa_lite.qa.log import SliceRecord

    path = tmp_path / "qa.sqlite"
    with QALog(path) as log:
        log.record([SliceRecord(source="t", status="ok", series_uid="1.2", sop_instance_uid="1.2.1",
                                station_name="<script>alert(1)</script>", score=1.0,
                                acquisition_datetime="2024-01-01T10:00:00")])
        page = render_html(build_report(log))
    assert "<script>" not in page and "&lt;script&gt;" in page
