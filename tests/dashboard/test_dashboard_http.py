"""The dashboard over real HTTP (uvicorn in a subprocess) on both QA-log backends.

Escaping, security headers, authentication, the acknowledgement form and its
CSRF check, CSV neutralisation and Grad-CAM on demand.
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime, timedelta
from html import unescape
from pathlib import Path
from urllib.parse import quote

import pytest

pytest.importorskip("starlette", reason="the dashboard extra is not installed")
pytest.importorskip("uvicorn", reason="the dashboard extra is not installed")

from dashboard_log import DRIFT_STATION, STATIONS, generate
from dashboard_server import REPO, DashboardProcess, fetch

from deltaiqa_lite.cli import main
from deltaiqa_lite.qa.log import QALog

HOSTILE = ("<script>", "<img src=x", '"><b>', "<b>k</b>", "<b>localizer")


def _start(days: int = 60) -> datetime:
    return (datetime.now() - timedelta(days=days)).replace(hour=7, minute=0, second=0, microsecond=0)


@pytest.fixture
def small_log(log_target: str) -> str:
    with QALog(log_target) as log:
        generate(log, n_slices=2000, per_series=5, days=60, start=_start())
    return log_target


def _assert_escaped(text: str) -> None:
    for raw in HOSTILE:
        assert raw not in text, f"unescaped {raw!r}"


def test_every_page_escaped_with_security_headers(small_log: str, tmp_path: Path) -> None:
    server = DashboardProcess(small_log, tmp_path)
    try:
        pages = {path: fetch(server.url + path) for path in (
            "/", "/?days=7", "/trends", "/alarms?state=all", "/alarms",
            f"/trends?station={quote(STATIONS[1][0])}")}
        with QALog(small_log) as log:
            hostile_series = [s.series_uid for s in log.series() if s.station_name == STATIONS[1][0]][0]
        pages["series"] = fetch(f"{server.url}/series/{hostile_series}")
        for name, reply in pages.items():
            assert reply.status == 200, (name, reply.text[:300])
            csp = reply.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "unsafe-inline" not in csp and "script-src" not in csp
            assert reply.headers["x-content-type-options"] == "nosniff"
            assert "<script" not in reply.text.replace("&lt;script", "")  # no script tag at all
            assert ' style="' not in reply.text  # inline styles would be blocked by the CSP
            _assert_escaped(reply.text)
        overview = pages["/"].text
        assert "&lt;script&gt;alert(&#39;st&#39;)&lt;/script&gt;" in overview
        assert "CT &#34;Room&#34; 3" in overview
        assert unescape(re.sub(r"<[^>]+>", " ", overview)).count("CT5 drifting") >= 1
        series = pages["series"].text
        assert "&lt;img src=x onerror=alert(1)&gt;" in series and "B70f" in series
        assert "&lt;b&gt;localizer&lt;/b&gt;" in series or "No scored" not in series
        assert "image not kept" in series  # no --store: nothing kept
        assert "<svg" in pages["/trends"].text and "ewma-low" in pages["/alarms?state=all"].text
        # Static files and errors carry the headers too.
        css = fetch(server.url + "/static/dashboard.css")
        assert css.status == 200 and css.headers["x-content-type-options"] == "nosniff"
        missing = fetch(server.url + "/series/1.2.3.4")
        assert missing.status == 404 and "content-security-policy" in missing.headers
    finally:
        server.stop()


def test_csv_of_each_view_neutralises_formulas(small_log: str, tmp_path: Path) -> None:
    server = DashboardProcess(small_log, tmp_path)
    try:
        overview = fetch(server.url + "/?format=csv")
        assert overview.status == 200 and overview.headers["content-type"].startswith("text/csv")
        lines = overview.text.splitlines()
        assert lines[0].startswith("station_name,exams,series,slices")
        assert len(lines) == 1 + len(STATIONS)
        trends = fetch(server.url + "/trends?format=csv").text
        assert "'=HYPERLINK" in trends and ',=HYPERLINK' not in trends and '"=HYPERLINK' not in trends
        alarms = fetch(server.url + f"/alarms?state=all&station={quote(DRIFT_STATION)}&format=csv").text
        rows = alarms.splitlines()[1:]
        assert rows and all(DRIFT_STATION in r for r in rows)
    finally:
        server.stop()


def test_acknowledge_alarm_needs_form_token_and_is_stored(small_log: str, tmp_path: Path) -> None:
    server = DashboardProcess(small_log, tmp_path)
    try:
        page = fetch(server.url + "/alarms").text
        key = unescape(re.search(r'name="key" value="([^"]+)"', page).group(1))
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        forged = fetch(server.url + "/alarms/ack", data={"key": key, "name": "x", "csrf": "0" * 64})
        assert forged.status == 403
        done = fetch(server.url + "/alarms/ack", data={
            "key": key, "name": 'Dr "Q" <b>', "comment": "new tube <script>", "csrf": csrf,
            "back": "https://evil.example/"})
        assert done.status == 303 and done.headers["location"] == "/alarms"
        acked = fetch(server.url + "/alarms?state=acknowledged").text
        assert "Dr &#34;Q&#34; &lt;b&gt;" in acked and "new tube &lt;script&gt;" in acked
        assert key not in [unescape(k) for k in re.findall(r'name="key" value="([^"]+)"',
                                                            fetch(server.url + "/alarms").text)]
    finally:
        server.stop()
    with QALog(small_log) as log:
        (ack,) = log.acknowledgements()
        assert (ack.alarm_key, ack.acknowledged_by, ack.comment) == (key, 'Dr "Q" <b>', "new tube <script>")
        assert ack.acknowledged_at and ack.series_uid == key.split(":", 1)[1]


def test_token_and_password_file(tmp_path: Path) -> None:
    import bcrypt

    log_path = tmp_path / "qa.sqlite"
    with QALog(log_path) as log:
        generate(log, n_slices=200, per_series=5, days=20, start=_start(20))
    token = "t0ken-" + "x" * 20
    users = tmp_path / "users"
    users.write_text("physicist:" + bcrypt.hashpw(b"correct horse", bcrypt.gensalt(4)).decode() + "\n")
    server = DashboardProcess(str(log_path), tmp_path, "--password-file", str(users),
                              env={"DELTAIQA_DASHBOARD_TOKEN": token})
    try:
        assert fetch(server.url + "/").status == 401
        browser = fetch(server.url + "/", headers={"accept": "text/html"})
        assert browser.status == 303 and browser.headers["location"] == "/login"
        assert fetch(server.url + "/", headers={"authorization": "Bearer wrong"}).status == 401
        assert fetch(server.url + "/", headers={"authorization": f"Bearer {token}"}).status == 200
        assert fetch(server.url + "/login", data={"user": "physicist", "password": "wrong"}).status == 401
        login = fetch(server.url + "/login", data={"user": "physicist", "password": "correct horse"})
        assert login.status == 303
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        session = cookie.split(";", 1)[0]
        page = fetch(server.url + "/alarms?state=all", headers={"cookie": session})
        assert page.status == 200 and "Sign out physicist" in page.text
        assert 'name="name"' not in page.text  # the signed-in user is who acknowledges
    finally:
        server.stop()


def test_beyond_loopback_needs_credentials_and_plain_passwords_refused(tmp_path: Path, capsys) -> None:
    log_path = tmp_path / "qa.sqlite"
    QALog(log_path).close()
    assert main(["dashboard", "--log", str(log_path), "--host", "0.0.0.0"]) == 2
    assert "give --token or --password-file" in capsys.readouterr().err
    plain = tmp_path / "users"
    plain.write_text("physicist:secret\n")
    assert main(["dashboard", "--log", str(log_path), "--host", "0.0.0.0", "--password-file",
                 str(plain)]) == 2
    assert "plain passwords are refused" in capsys.readouterr().err
    hashed = subprocess.run([sys.executable, "-m", "deltaiqa_lite", "dashboard", "--hash-password"],
                            input="pw\n", capture_output=True, text=True, timeout=60,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert hashed.returncode == 0 and hashed.stdout.startswith("$2b$")


def test_gradcam_on_demand_for_kept_images(tmp_path: Path) -> None:
    import tiny_delta_model
    from qa_builders import write_ct

    from deltaiqa_lite.qa.log import SliceRecord

    model = tiny_delta_model.build(tmp_path / "tiny-fp32.onnx", seed=3)
    study, series = "1.2.826.0.1.3680043.8.498.71", "1.2.826.0.1.3680043.8.498.72"
    store = tmp_path / "store"
    kept = write_ct(store / study / series / f"{series}.1.dcm", series_uid=series, study_uid=study,
                    sop_uid=f"{series}.1", size=64)
    log_path = tmp_path / "qa.sqlite"
    with QALog(log_path) as log:
        log.record([SliceRecord(source="serve", status="ok", study_uid=study, series_uid=series,
                                sop_instance_uid=f"{series}.{i}", score=1.0 + i, station_name="CT1",
                                slice_location=float(i)) for i in (1, 2)])
    server = DashboardProcess(str(log_path), tmp_path, "--store", str(store), "--model", str(model))
    try:
        page = fetch(f"{server.url}/series/{series}").text
        assert page.count("image not kept") == 1  # slice 2 was never stored
        src = re.search(r'<img src="([^"]+gradcam[^"]+)"', page).group(1)
        png = fetch(server.url + unescape(src))
        assert png.status == 200 and png.headers["content-type"] == "image/png"
        assert png.body[:8] == b"\x89PNG\r\n\x1a\n"
        assert fetch(f"{server.url}/series/{series}/gradcam/{series}.2/0.png").status == 404
        assert kept.SOPInstanceUID == f"{series}.1"
    finally:
        server.stop()
