"""A real browser (Debian's chromium driven by Playwright) through every page of the dashboard.

The log: 10,000 generated slices from 5 stations over 60 days ending today, one
station drifting, hostile strings in station, description, protocol and kernel.
The test clicks the filters, a station, a flagged point (drill-down to its
series), zooms, acknowledges an alarm, and fails on any console error (a CSP
violation is one), any page error, any dialog (an injected alert) or a failed
request. It writes the screenshots that docs/dashboard.md shows; set
DELTAIQA_DOCS_SCREENSHOTS=1 to refresh docs/img/dashboard-*.png.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the dashboard extra is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright (Python) is not installed")

from dashboard_log import DRIFT_STATION, STATIONS, generate
from dashboard_server import REPO, DashboardProcess

from deltaiqa_lite.qa.log import QALog

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.slow
def test_browser_walks_every_page(tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not installed (Debian package chromium)")
    log_path = tmp_path / "qa.sqlite"
    start = (datetime.now() - timedelta(days=60)).replace(hour=7, minute=0, second=0, microsecond=0)
    with QALog(log_path) as log:
        generate(log, n_slices=10_000, per_series=20, days=60, start=start)
        assert sum(log.counts().values()) >= 10_000
    shots = tmp_path / "shots"
    shots.mkdir()
    server = DashboardProcess(str(log_path), tmp_path)
    problems: list[str] = []
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
            page.on("response", lambda r: problems.append(f"HTTP {r.status} {r.url}")
                    if r.status >= 400 else None)

            # Overview: one row per station, hostile names shown as text.
            page.goto(server.url + "/")
            stations = page.locator("#overview a.station").all_inner_texts()
            assert sorted(stations) == sorted(s[0] for s in STATIONS)
            assert page.locator("#overview tbody tr").count() == 5
            drift_row = page.locator("#overview tbody tr", has_text=DRIFT_STATION)
            assert int(drift_row.locator("td").nth(8).inner_text()) > 0  # open alarms
            page.screenshot(path=str(shots / "dashboard-overview.png"), full_page=True)

            # Filters: 7 days, then one station.
            page.select_option("#filter-days", "7")
            page.click("#apply")
            page.wait_for_url("**days=7**")
            assert 0 < page.locator("#overview tbody tr").count() <= 5
            page.select_option("#filter-days", "30")
            page.select_option("#filter-station", DRIFT_STATION)
            page.click("#apply")
            assert page.locator("#overview a.station").all_inner_texts() == [DRIFT_STATION]

            # Trends of the drifting station; zoom; then drill down on a flagged point.
            page.click(f"#overview a.station:text-is('{DRIFT_STATION}')")
            page.wait_for_url("**/trends?**")
            assert page.locator("section.group h2").first.inner_text().startswith(DRIFT_STATION)
            assert page.locator(".status.out-of-control").count() >= 1
            assert page.locator("svg circle.flagged").count() > 0
            rules = " ".join(page.locator("svg text.rule").all_text_contents())
            assert "ewma-low" in rules and "shewhart-low" in rules  # the rule fired, on the point
            page.screenshot(path=str(shots / "dashboard-trends.png"), full_page=False)
            page.click("#zoom-in")
            page.wait_for_url("**until=**")
            page.go_back()
            page.locator("svg circle.flagged").first.click(force=True)
            page.wait_for_url("**/series/**")
            assert page.locator("h1").inner_text().startswith("Series 1.2.826.0.1.3680043.8.498.9")
            assert page.locator("#series-facts").inner_text().count(DRIFT_STATION) == 1
            assert page.locator(".not-kept").count() == 5  # no store: "image not kept"
            assert page.locator("svg.chart").count() == 1
            page.screenshot(path=str(shots / "dashboard-series.png"), full_page=True)

            # A series of the hostile station: description and kernel shown as text.
            page.goto(server.url + "/trends?" + f"station={STATIONS[2][0]}".replace(" ", "+").replace('"', "%22"))
            assert page.locator("section.group h2").first.inner_text().startswith(STATIONS[2][0])
            page.locator("svg circle.point").first.click(force=True)
            page.wait_for_url("**/series/**")
            facts = page.locator("#series-facts").inner_text()
            assert STATIONS[2][2] in facts and STATIONS[2][4] in facts  # kernel and description, verbatim

            # Alarms: acknowledge the first open one with a comment.
            page.goto(server.url + "/alarms")
            before = page.locator("#alarms tbody tr.open").count()
            assert before > 0
            first = page.locator("#alarms tbody tr.open").first
            series_uid = first.locator("a.series-link").inner_text()
            first.locator("input[name=name]").fill("Physicist <QA>")
            first.locator("input[name=comment]").fill('tube replaced; "recalibrated"')
            first.locator("button").click()
            page.wait_for_url("**/alarms?**")
            assert page.locator("#alarms tbody tr.open").count() == before - 1
            page.click("#state-acknowledged")
            acked = page.locator("#alarms tbody tr.acked").first.inner_text()
            assert "Physicist <QA>" in acked and 'tube replaced; "recalibrated"' in acked
            assert series_uid in acked
            page.click("#state-all")
            page.screenshot(path=str(shots / "dashboard-alarms.png"), full_page=False)

            # CSV of the current view downloads.
            with page.expect_download() as download:
                page.click("#csv")
            assert download.value.suggested_filename == "alarms.csv"
            browser.close()
    finally:
        server.stop()
    assert problems == []
    with QALog(log_path) as log:
        (ack,) = log.acknowledgements()
        assert ack.acknowledged_by == "Physicist <QA>" and ack.series_uid == series_uid
    if os.environ.get("DELTAIQA_DOCS_SCREENSHOTS"):
        for shot in shots.glob("*.png"):
            shutil.copy2(shot, REPO / "docs" / "img" / shot.name)


@pytest.mark.slow
def test_browser_over_a_log_written_by_the_node(tmp_path: Path, tiny_model: Path) -> None:
    """The dashboard over a log that `deltaiqa-lite watch` wrote from real CT files."""
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not installed (Debian package chromium)")
    from qa_builders import write_ct

    from deltaiqa_lite.cli import main

    inbox = tmp_path / "inbox"
    series = "1.2.826.0.1.3680043.8.498.81"
    for i in range(4):
        write_ct(inbox / f"{i}.dcm", series_uid=series, study_uid=series + ".1", instance=i + 1, seed=i,
                 station='CT <b>"9"</b>')
    log_path = tmp_path / "qa.sqlite"
    assert main(["watch", str(inbox), "--once", "--settle", "0.1", "--log", str(log_path),
                 "--model", str(tiny_model), "-q"]) == 0
    server = DashboardProcess(str(log_path), tmp_path)
    problems: list[str] = []
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("response", lambda r: problems.append(f"HTTP {r.status} {r.url}")
                    if r.status >= 400 else None)
            page.goto(server.url + "/?since=1990-01-01")  # the builder's acquisition date is old
            assert page.locator("#overview a.station").all_inner_texts() == ['CT <b>"9"</b>']
            assert page.locator("#overview tbody td").nth(3).inner_text() == "4"  # slices
            for path in ("/trends?since=1990-01-01", "/alarms?state=all&since=1990-01-01",
                         f"/series/{series}"):
                page.goto(server.url + path)
            assert page.locator("#series-facts").inner_text().count('CT <b>"9"</b>') == 1
            assert page.locator(".worst figure").count() == 4
            browser.close()
    finally:
        server.stop()
    assert problems == []
