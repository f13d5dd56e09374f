"""The dashboard's pieces without a server: filters, percentiles, CSV cells, SVG escaping, zoom."""

from __future__ import annotations

from datetime import datetime
from xml.etree import ElementTree

import pytest

from deltaiqa_lite.dashboard import svg, views
from deltaiqa_lite.qa.report import ChartRules, control_chart


def test_filters_from_query_ignore_bad_values() -> None:
    today = datetime(2026, 3, 10, 12, 0)
    f = views.Filters.from_query({"station": " CT1 ", "kernel": "", "days": "seven"}, today=today)
    assert (f.station, f.kernel, f.days, f.since, f.until) == ("CT1", None, 30, "2026-02-08", None)
    f = views.Filters.from_query({"days": "7", "since": "not a date", "until": "2026-03-01"}, today=today)
    assert (f.since, f.until) == ("2026-03-03", None)  # a bad date drops the range, days apply
    f = views.Filters.from_query({"since": "2026-01-01", "until": "2026-02-01"}, today=today)
    assert f.query() == {"since": "2026-01-01", "until": "2026-02-01", "days": "30"}


def test_zoom_links_halve_and_double_the_window() -> None:
    f = views.Filters(since="2026-01-01T00:00", until="2026-01-09T00:00")
    links = views.zoom_links(f)
    assert (links["in"]["since"], links["in"]["until"]) == ("2026-01-03T00:00", "2026-01-07T00:00")
    assert (links["out"]["since"], links["out"]["until"]) == ("2025-12-28T00:00", "2026-01-13T00:00")
    assert links["later"]["since"] == "2026-01-05T00:00"


def test_percentile() -> None:
    assert views.percentile([], 10) is None
    assert views.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert views.percentile([0.0, 10.0], 10) == pytest.approx(1.0)


@pytest.mark.parametrize("cell, shown", [("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"), ("+1+1", "'+1+1"),
                                         ("-2.5", "-2.5"), ("@SUM(A1)", "'@SUM(A1)"), ("CT1", "CT1"),
                                         (None, ""), (2.0, "2.0000")])
def test_csv_cells_neutralised(cell, shown) -> None:
    assert views._cell(cell) == shown


def test_svg_escapes_titles_and_uids_and_is_well_formed() -> None:
    values = [2.8 + 0.01 * (k % 5) for k in range(40)] + [1.5]
    chart = control_chart(values, [k < 35 for k in range(41)], rules=ChartRules(min_baseline=30),
                          series_uids=[f'1.2.{k}"><script>x</script>' for k in range(41)],
                          times=[f"2026-01-{1 + k // 2:02d}T08:00" for k in range(41)])
    text = svg.control_chart(chart, "<script>alert(1)</script> / B30f\"'")
    assert "<script" not in text
    root = ElementTree.fromstring(text)  # well-formed XML: nothing broke out of an attribute
    assert root.tag.endswith("svg")
    assert "shewhart-low" in text and text.count('class="point flagged"') == len(chart.flagged)


def test_dw_trend_of_a_group_with_missing_kernel(log_target: str) -> None:
    """The group query treats a missing kernel as its own group on both backends."""
    from deltaiqa_lite.qa.log import QALog, SliceRecord

    with QALog(log_target) as log:
        for k, kernel in enumerate((None, "B30f", None)):
            log.record([SliceRecord(source="t", status="ok", series_uid=f"1.{k}", sop_instance_uid=f"1.{k}.1",
                                    score=2.5, station_name="CT1", protocol_name="P", kernel=kernel,
                                    acquisition_datetime=f"2026-01-0{k + 1}T08:00",
                                    water_equivalent_diameter_mm=250.0 + k)])
        f = views.Filters(since="2025-12-01", until="2026-02-01")
        groups = {g.kernel: g for g in views.report(log, f).groups}
        assert [uid for uid, _, _ in views.dw_trend(log, groups[None], f)] == ["1.0", "1.2"]
        assert views.dw_trend(log, groups["B30f"], f) == [("1.1", "2026-01-02T08:00", 251.0)]
