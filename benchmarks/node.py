"""Node ingest: bursts into ``serve`` with DCMTK storescu and a copy into ``watch``, against ``score_series``.

``python -m benchmarks.node [--objects 500] [--syntax explicit-le jpeg-lossless] [--out benchmarks/results]``

For each transfer syntax a 500-object CT series is written from the example
slices (``write_series``: real anatomy, one series). Then, on the same files:

- ``serve``: a fresh ``deltaiqa-lite serve`` on a free loopback port; DCMTK
  ``storescu -v +sd`` sends the whole folder in one association. Each
  ``Received Store Response (Success)`` line is time-stamped as it arrives, so
  every acknowledged object has its Success time. The run ends when the QA log
  holds a row for every object.
- ``watch``: a fresh ``deltaiqa-lite watch`` on an empty folder; the files are
  copied in (``shutil.copy2`` into the folder, the way a PACS export lands);
  the run ends when the QA log holds a row for every file.
- ``Scorer.score_series`` on the same folder in this process, the reference
  rate (same defaults as the node's scorer).

Figures: objects/s acknowledged (storescu wall), objects/s scored (first
Success or first copied file to the last QA-log row), p50/p95 of Success (or
copy) -> QA-log row (``scored_at``), the node's peak RSS (``VmHWM`` of the
node process just before it is stopped), and "lost": acknowledged objects
without a QA-log row (must be 0). Writes ``node.json`` and ``node.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("dose-*.dcm"))


def _peak_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Node:
    """``deltaiqa-lite serve`` or ``watch`` in a child process, with its QA log."""

    def __init__(self, work: Path, command: list[str], model: str) -> None:
        self.log = work / "qa.sqlite"
        self.stderr_path = work / "node.err"
        self._stderr = self.stderr_path.open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "deltaiqa_lite", *command, "--log", str(self.log),
                                      "--model", model], stdout=subprocess.DEVNULL, stderr=self._stderr,
                                     cwd=str(work))

    def wait_for(self, text: str, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            err = self.stderr_path.read_text()
            if text in err:
                return err
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited {self.proc.returncode}: {err[-1500:]}")
            time.sleep(0.05)
        raise RuntimeError(f"'{text}' not seen within {timeout} s: {self.stderr_path.read_text()[-1500:]}")

    def rows(self) -> list:
        from deltaiqa_lite.qa.log import QALog

        if not self.log.exists():
            return []
        with QALog(self.log) as log:
            return log.slices()

    def wait_rows(self, count: int, timeout: float) -> list:
        deadline = time.monotonic() + timeout
        rows: list = []
        while time.monotonic() < deadline:
            rows = self.rows()
            if len(rows) >= count:
                return rows
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited {self.proc.returncode}: {self.stderr_path.read_text()[-1500:]}")
            time.sleep(0.2)
        raise RuntimeError(f"only {len(rows)} of {count} QA-log rows after {timeout} s")

    def stop(self) -> tuple[float | None, str]:
        peak = _peak_rss_mib(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=120)
        self._stderr.close()
        err = self.stderr_path.read_text()
        if code != 0:
            raise RuntimeError(f"node exited {code} on SIGTERM: {err[-1500:]}")
        return peak, err


def _stamp(row) -> float:
    return datetime.fromisoformat(row.scored_at.replace("Z", "+00:00")).timestamp()


def _latency(rows: list, done_at: dict[str, float]) -> dict:
    delays = [_stamp(r) - done_at[r.sop_instance_uid] for r in rows if r.sop_instance_uid in done_at]
    return {"p50_s": float(np.percentile(delays, 50)), "p95_s": float(np.percentile(delays, 95)),
            "max_s": float(np.max(delays))}


def _sop_uids(files: list[Path]) -> dict[str, str]:
    import pydicom

    return {str(f): str(pydicom.dcmread(str(f), stop_before_pixels=True).SOPInstanceUID) for f in files}


def dcmtk_tool(name: str) -> str | None:
    """Path of a DCMTK tool; pynetdicom installs scripts of the same name into the venv."""
    for folder in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin", "/usr/local/bin"]:
        candidate = os.path.join(folder, name)
        if not os.access(candidate, os.X_OK):
            continue
        try:
            out = subprocess.run([candidate, "--version"], capture_output=True, text=True, check=False,
                                 timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if "dcmtk" in (out.stdout + out.stderr).lower():
            return candidate
    return None


# storescu's options per syntax: JPEG Lossless is proposed first (-xs), as a PACS sending its archive does;
# without it storescu picks the uncompressed context and cannot convert.
STORESCU_OPTIONS = {"jpeg-lossless": ["-xs"]}


def run_serve(folder: Path, uids: dict[str, str], model: str, work: Path, syntax: str = "explicit-le",
              extra: tuple[str, ...] = ()) -> dict:
    storescu = dcmtk_tool("storescu")
    if storescu is None:
        raise RuntimeError("DCMTK storescu is not on PATH (pynetdicom's script of that name does not count)")
    node = Node(work, ["serve", "--port", "0", "--allow", "SCANNER", "--queue-size", "1024", *extra], model)
    try:
        err = node.wait_for("listening on ")
        address = err.split("listening on ", 1)[1].split()[0]
        host, port = address.rsplit(":", 1)
        acked: dict[str, float] = {}
        syntaxes = set()
        current = None
        started = time.time()
        sender = subprocess.Popen([storescu, "-v", "-aet", "SCANNER", "-aec", "DELTAIQA", "+sd",
                                   *STORESCU_OPTIONS.get(syntax, []), host, port,
                                   str(folder)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output: list[str] = []
        for line in sender.stdout:
            output.append(line)
            if "Sending file: " in line:
                current = line.split("Sending file: ", 1)[1].strip()
            elif "Converting transfer syntax: " in line:
                syntaxes.add(line.split("Converting transfer syntax: ", 1)[1].strip())
            elif "Received Store Response (Success)" in line and current is not None:
                acked[uids[current]] = time.time()
        sender.wait(timeout=600)
        sent_s = time.time() - started
        if sender.returncode != 0:
            raise RuntimeError(f"storescu exited {sender.returncode}: {''.join(output[-15:])}")
        rows = node.wait_rows(len(acked), timeout=1200)
        peak, err = node.stop()
    finally:
        if node.proc.poll() is None:
            node.proc.kill()
    logged = {r.sop_instance_uid for r in rows}
    first = min(acked.values())
    last_row = max(_stamp(r) for r in rows)
    return {"node": "serve", "objects": len(uids), "acknowledged": len(acked),
            "logged_ok": sum(r.status == "ok" for r in rows), "lost": len(set(acked) - logged),
            "storescu_syntax": sorted(syntaxes), "send_s": sent_s,
            "acknowledged_per_s": len(acked) / sent_s,
            "scored_per_s": len(rows) / (last_row - first + 1e-9),
            "success_to_row": _latency(rows, acked), "peak_rss_mib": peak,
            "summary": err.strip().splitlines()[-1]}


def run_watch(folder: Path, uids: dict[str, str], model: str, work: Path, syntax: str = "explicit-le",
              extra: tuple[str, ...] = ()) -> dict:
    watched = work / "incoming"
    watched.mkdir()
    node = Node(work, ["watch", str(watched), "--settle", "1", "--poll", "0.5", "-q", *extra], model)
    try:
        node.wait_for("watching")
        copied: dict[str, float] = {}
        started = time.time()
        for source in sorted(folder.glob("*.dcm")):
            shutil.copy2(source, watched / source.name)
            copied[uids[str(source)]] = time.time()
        copy_s = time.time() - started
        rows = node.wait_rows(len(copied), timeout=1200)
        peak, _ = node.stop()
    finally:
        if node.proc.poll() is None:
            node.proc.kill()
    logged = {r.sop_instance_uid for r in rows}
    last_row = max(_stamp(r) for r in rows)
    return {"node": "watch", "objects": len(uids), "copied": len(copied), "copy_s": copy_s,
            "logged_ok": sum(r.status == "ok" for r in rows), "lost": len(set(copied) - logged),
            "scored_per_s": len(rows) / (last_row - started),
            "copy_to_row": _latency(rows, copied), "peak_rss_mib": peak,
            "note": "includes the watcher's 1 s settle time and 0.5 s poll"}


def run_reference(folder: Path, model: str) -> dict:
    from deltaiqa_lite.score import Scorer

    scorer = Scorer(model)
    scorer.score_series(folder)  # warm-up: page cache, decoders
    start = time.perf_counter()
    series = scorer.score_series(folder)
    wall = time.perf_counter() - start
    return {"slices": sum(s.n_ok for s in series), "wall_s": wall,
            "slices_per_s": sum(s.n_ok for s in series) / wall}


def write_report(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "node.json").write_text(json.dumps(results, indent=2) + "\n")
    machine = results["machine"]
    lines = ["# Node ingest", "",
             f"{machine.get('cpu_model')} ({machine.get('usable_cpus')} CPUs; flags "
             f"{', '.join(machine.get('cpu_flags', []))}), {results['date']}; load average "
             f"{results['load_before']} -> {results['load_after']}. {results['note']}", "",
             "| syntax | path | objects | acknowledged/s | scored/s | vs score_series | p50 / p95 to QA-log row "
             "| peak RSS | lost |", "|---|---|---|---|---|---|---|---|---|"]
    for run in results["runs"]:
        reference = run["score_series"]["slices_per_s"]
        lines.append(f"| {run['syntax']} | Scorer.score_series | {run['score_series']['slices']} | | "
                     f"{reference:.1f} | 1.00 | | | |")
        for key in ("serve", "watch"):
            node = run.get(key)
            if node is None:
                continue
            latency = node.get("success_to_row") or node.get("copy_to_row")
            acked = f"{node['acknowledged_per_s']:.1f}" if "acknowledged_per_s" in node else ""
            lines.append(f"| {run['syntax']} | {key} | {node['objects']} | {acked} | {node['scored_per_s']:.1f} | "
                         f"{node['scored_per_s'] / reference:.2f} | {latency['p50_s']:.1f} / "
                         f"{latency['p95_s']:.1f} s | {node['peak_rss_mib']:.0f} MiB | {node['lost']} |")
    lines.append("")
    (out / "node.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.node", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=500)
    parser.add_argument("--syntax", nargs="+", default=["explicit-le", "jpeg-lossless"])
    parser.add_argument("--model", default="int8")
    parser.add_argument("--skip", nargs="*", default=[], choices=("serve", "watch"))
    parser.add_argument("--node-arg", action="append", default=[], metavar="ARG",
                        help="extra argument for both nodes, e.g. --node-arg=--batch-size --node-arg=32")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--note", default="The machine was shared with other jobs (contended).")
    args = parser.parse_args(argv)
    from benchmarks.machine import load_average, machine_facts
    from deltaiqa_lite.engine.bench import write_series

    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine_facts(),
               "load_before": load_average(), "note": args.note, "objects": args.objects,
               "node_args": args.node_arg, "runs": []}
    with tempfile.TemporaryDirectory(prefix="deltaiqa-node-") as work:
        for syntax in args.syntax:
            folder = Path(work) / f"series-{syntax}"
            files = write_series(folder, args.objects, EXAMPLES, syntax=syntax, seed=4)
            uids = _sop_uids(files)
            run: dict = {"syntax": syntax, "score_series": run_reference(folder, args.model)}
            print(f"{syntax}: score_series {run['score_series']['slices_per_s']:.1f} slices/s", flush=True)
            for key, body in (("serve", run_serve), ("watch", run_watch)):
                if key in args.skip:
                    continue
                place = Path(work) / f"{key}-{syntax}"
                place.mkdir()
                run[key] = body(folder, uids, args.model, place, syntax, tuple(args.node_arg))
                figures = run[key]
                latency = figures.get("success_to_row") or figures.get("copy_to_row")
                print(f"{syntax}: {key} scored {figures['scored_per_s']:.1f} objects/s "
                      f"({figures['scored_per_s'] / run['score_series']['slices_per_s']:.2f} of score_series), "
                      f"p95 to QA-log row {latency['p95_s']:.1f} s, peak RSS {figures['peak_rss_mib']:.0f} MiB, "
                      f"lost {figures['lost']}", flush=True)
            results["runs"].append(run)
    results["load_after"] = load_average()
    write_report(results, args.out)
    return 0 if all(run.get(k, {}).get("lost", 0) == 0 for run in results["runs"] for k in ("serve", "watch")) else 1


if __name__ == "__main__":
    sys.exit(main())
