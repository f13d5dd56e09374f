"""Dashboard pages over a generated 1,000,000-slice QA log, on SQLite and on PostgreSQL.

``python -m benchmarks.dashboard [--slices 1000000] [--backend sqlite,postgresql] [--out benchmarks/results]``

The log is written through :meth:`QALog.record` (the node's own write path,
which keeps the series summaries up to date), by the generator of the
dashboard tests (``tests/dashboard/dashboard_log.py``: 5 stations, one
drifting, 200 slices per series over 365 days ending today). PostgreSQL is a
cluster started for the run with initdb/pg_ctl on a free loopback port
(``tests/pg_server.py``). The dashboard runs as ``deltaiqa-lite dashboard`` in
its own process (uvicorn); each page is requested over HTTP once to warm up,
then ``--repeat`` times with the log unchanged (warm) and ``--repeat`` times
with one slice written before each request (cold); the figures are the median
and the worst wall time of the request as the client sees it. Issue 23's target: overview and trend
pages <= 500 ms.

Writes ``dashboard.json`` and ``dashboard.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from benchmarks.machine import load_average, machine_facts

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "dashboard")]

from dashboard_log import DRIFT_STATION, generate  # noqa: E402
from dashboard_server import DashboardProcess, fetch  # noqa: E402

from deltaiqa_lite.qa.log import QALog  # noqa: E402

TARGET_MS = 500.0
PER_SERIES = 200
DAYS = 365


def pages() -> dict[str, str]:
    station = quote(DRIFT_STATION)
    return {
        "overview, 30 days": "/",
        "overview, 7 days": "/?days=7",
        "overview, 365 days": "/?days=365",
        "trends, one station, 30 days": f"/trends?station={station}",
        "trends, one station, 365 days": f"/trends?station={station}&days=365",
        "trends, all stations, 30 days": "/trends",
        "alarms, 30 days": "/alarms",
    }


def _touch(log: QALog, k: int) -> None:
    """A node's write: one new scored slice (new series, station CT1) so the log's state changes."""
    from deltaiqa_lite.qa.log import SliceRecord

    uid = f"1.2.826.0.1.3680043.8.498.7{k:07d}"
    log.record([SliceRecord(source="serve", status="ok", series_uid=uid, sop_instance_uid=uid + ".1",
                            study_uid=uid + ".0", station_name="CT1", protocol_name="ABDOMEN", kernel="B30f",
                            acquisition_datetime=datetime.now().isoformat(timespec="seconds"), score=2.9,
                            likert=3, noise_hu=14.0)])


def time_pages(url: str, repeat: int, log: QALog) -> dict[str, dict]:
    """Median and worst request time per page: warm (log unchanged), cold (a slice written before each)."""
    out = {}
    touched = 0
    for name, path in pages().items():
        first = fetch(url + path)
        assert first.status == 200, (name, first.status, first.text[:200])
        out[name] = {"path": path, "bytes": len(first.body), "repeat": repeat}
        for mode in ("warm", "cold"):
            times = []
            for _ in range(repeat):
                if mode == "cold":
                    touched += 1
                    _touch(log, touched)
                t0 = time.perf_counter()
                reply = fetch(url + path)
                times.append((time.perf_counter() - t0) * 1000.0)
                assert reply.status == 200
            out[name][f"{mode}_median_ms"] = round(statistics.median(times), 1)
            out[name][f"{mode}_max_ms"] = round(max(times), 1)
    return out


def run_backend(backend: str, slices: int, repeat: int, folder: Path) -> dict:
    server = None
    if backend == "postgresql":
        from pg_server import start_postgres

        server = start_postgres()
        target = server.create_database("bench")
    else:
        target = str(folder / "qa.sqlite")
    try:
        start = (datetime.now() - timedelta(days=DAYS)).replace(hour=7, minute=0, second=0, microsecond=0)
        t0 = time.perf_counter()
        with QALog(target) as log:
            generate(log, n_slices=slices, per_series=PER_SERIES, days=DAYS, start=start, sr_every=50)
            counts = log.counts()
            n_series = log.execute("SELECT count(*) FROM series")[0][0]
        write_s = time.perf_counter() - t0
        print(f"{backend}: {sum(counts.values())} slice rows, {n_series} series written in {write_s:.0f} s",
              file=sys.stderr, flush=True)
        dashboard = DashboardProcess(target, folder)
        try:
            with QALog(target) as log:
                timings = time_pages(dashboard.url, repeat, log)
        finally:
            dashboard.stop()
        return {"backend": backend, "slice_rows": sum(counts.values()), "series": n_series,
                "write_s": round(write_s, 1), "write_slices_per_s": round(sum(counts.values()) / write_s),
                "pages": timings}
    finally:
        if server is not None:
            server.stop()


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = ["# Dashboard pages over a 1,000,000-slice QA log (issue 23)", "",
             f"CPU: {m.get('cpu_model')} ({m.get('usable_cpus')} usable CPUs, flags "
             f"{', '.join(m.get('cpu_flags', []))}); load average before / after: "
             f"{result['load_before']} / {result['load_after']}.", "",
             "Contended machine: the lead, other helpers and a training job shared the 2 cores during "
             "the run (see the load averages), so these are upper bounds.", "",
             f"Log: {result['slices']:,} generated scored slices (+ refusals), {PER_SERIES} per series, "
             f"5 stations, {DAYS} days, written through `QALog.record`. Each page: one warm-up request, "
             f"then {result['repeat']} timed HTTP requests to `deltaiqa-lite dashboard` (uvicorn, own process) "
             "with the log unchanged (warm: the control charts come from the dashboard's report cache) and "
             f"{result['repeat']} with one slice written by the benchmark before each request (cold: a node "
             "wrote, so every chart is computed again from the series summaries). "
             f"Target: overview and trend pages <= {TARGET_MS:.0f} ms.", ""]
    for run in result["runs"]:
        lines += [f"## {run['backend']}", "",
                  f"{run['slice_rows']:,} slice rows, {run['series']:,} series; written in {run['write_s']} s "
                  f"({run['write_slices_per_s']:,} slices/s).", "",
                  "| page | warm median ms | warm worst ms | cold median ms | cold worst ms | bytes | "
                  "target (warm / cold median) |", "|---|---|---|---|---|---|---|"]
        for name, t in run["pages"].items():
            target = " / ".join("met" if t[f"{m}_median_ms"] <= TARGET_MS else "MISSED"
                                for m in ("warm", "cold")) \
                if name.startswith(("overview", "trends")) else "-"
            lines.append(f"| {name} (`{t['path']}`) | {t['warm_median_ms']} | {t['warm_max_ms']} | "
                         f"{t['cold_median_ms']} | {t['cold_max_ms']} | {t['bytes']:,} | {target} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=1_000_000)
    parser.add_argument("--backend", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    result = {"tool": "benchmarks.dashboard", "slices": args.slices, "repeat": args.repeat,
              "machine": machine_facts(), "load_before": load_average(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="diqa-dash-bench-") as tmp:
        for backend in args.backend.split(","):
            result["runs"].append(run_backend(backend, args.slices, args.repeat, Path(tmp)))
    result["load_after"] = load_average()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "dashboard.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "dashboard.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
