"""Choose the Scorer's defaults per CPU count by measuring them: threads, spinning, batch size, reader threads.

``python -m benchmarks.defaults [--cpus 1 2] [--slices 60] [--rounds 3] [--out benchmarks/results]``

For each CPU count a child process pins itself to that many CPUs (the
affinity mask, before onnxruntime starts its threads) and scores the same
generated series (uncompressed, then JPEG Lossless for a subset) with every
configuration, round robin: each round runs every configuration once, so load
from other processes falls on all of them alike. Pure inference at onnxruntime's
own settings (threads = CPUs, spinning on, batch 8) is measured in every round
as the reference. The fastest configuration by median series rate is the
default for that CPU count (``deltaiqa_lite.score.MEASURED_DEFAULTS``).

Writes ``defaults.json`` and ``defaults.md`` with the machine facts.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("dose-*.dcm"))


def _configs(cpus: int, syntax: str) -> list[dict]:
    """Configurations tried: spinning x reader threads at batch 8, other batch sizes and fewer threads.

    Not the full grid: on a 2-core machine each configuration costs seconds
    per round, and batch size and thread count matter less than spinning and
    readers (first runs of this script).
    """
    grid = [{"threads": cpus, "spinning": spinning, "batch": 8, "readers": readers}
            for spinning, readers in itertools.product((True, False), (1, 2, 3))]
    if syntax != "explicit-le":
        return grid
    grid += [{"threads": cpus, "spinning": spinning, "batch": batch, "readers": 2}
             for spinning, batch in itertools.product((True, False), (4, 16))]
    if cpus > 1:
        grid += [{"threads": cpus - 1, "spinning": spinning, "batch": 8, "readers": 2} for spinning in (True, False)]
    return grid


def _label(config: dict) -> str:
    return (f"threads {config['threads']}, spinning {'on' if config['spinning'] else 'off'}, "
            f"batch {config['batch']}, readers {config['readers']}")


def worker(cpus: int, slices: int, rounds: int, model: str) -> dict:
    """Measure every configuration on ``cpus`` CPUs (this process pins itself first)."""
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cpus]))
    from deltaiqa_lite.engine.bench import write_series
    from deltaiqa_lite.score import Scorer

    out: dict = {"cpus": cpus, "slices": slices, "rounds": rounds, "syntaxes": {}}
    with tempfile.TemporaryDirectory(prefix="deltaiqa-defaults-") as work:
        reference = Scorer(model, provider="cpu", threads=cpus, spinning=True, batch_size=8,
                           reader_threads=2)
        planes = np.random.default_rng(0).random((8, 512, 512, 1), dtype=np.float32)
        for syntax in ("explicit-le", "jpeg-lossless"):
            folder = Path(work) / syntax
            write_series(folder, slices, EXAMPLES, syntax=syntax, seed=3)
            configs = _configs(cpus, syntax)
            rates: dict[str, list[float]] = {_label(c): [] for c in configs}
            inference: list[float] = []
            reference.score_series(folder)  # page cache, decoder imports
            for _ in range(rounds):
                for _ in range(2):
                    reference.predict(planes)
                start = time.perf_counter()
                for _ in range(6):
                    reference.predict(planes)
                inference.append(48 / (time.perf_counter() - start))
                for config in configs:
                    scorer = Scorer(model, provider="cpu", threads=config["threads"], spinning=config["spinning"],
                                    batch_size=config["batch"], reader_threads=config["readers"])
                    scorer.predict(planes[:1])
                    start = time.perf_counter()
                    series = scorer.score_series(folder)
                    wall = time.perf_counter() - start
                    if sum(s.n_failed for s in series):
                        raise RuntimeError(f"{folder}: slices failed with {_label(config)}")
                    rates[_label(config)].append(slices / wall)
                    del scorer
            reference_rate = statistics.median(inference)
            rows = [{**config, "label": _label(config), "slices_per_s": statistics.median(rates[_label(config)]),
                     "ratio": statistics.median(rates[_label(config)]) / reference_rate,
                     "runs": rates[_label(config)]} for config in configs]
            rows.sort(key=lambda row: -row["slices_per_s"])
            out["syntaxes"][syntax] = {"inference_slices_per_s": reference_rate, "inference_runs": inference,
                                       "rows": rows}
    return out


def write_report(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "defaults.json").write_text(json.dumps(results, indent=2) + "\n")
    machine = results["machine"]
    lines = ["# Scorer defaults per CPU count, measured", "",
             f"{machine.get('cpu_model')} ({machine.get('logical_cpus')} logical CPUs; "
             f"flags: {', '.join(machine.get('cpu_flags', []))}), {results['date']}. "
             f"Load average at start {results['load_before']}, at end {results['load_after']}: "
             f"{results['note']}", "",
             "Series rates are medians over rounds; ratio is the series rate over pure inference "
             "(threads = CPUs, spinning on, batch 8) measured in the same rounds.", ""]
    for run in results["runs"]:
        for syntax, data in run["syntaxes"].items():
            lines += [f"## {run['cpus']} CPU(s), {syntax}, {run['slices']} slices x {run['rounds']} rounds", "",
                      f"Pure inference: {data['inference_slices_per_s']:.1f} slices/s", "",
                      "| threads | spinning | batch | readers | slices/s | vs inference |",
                      "|---|---|---|---|---|---|"]
            for row in data["rows"]:
                lines.append(f"| {row['threads']} | {'on' if row['spinning'] else 'off'} | {row['batch']} | "
                             f"{row['readers']} | {row['slices_per_s']:.1f} | {row['ratio']:.2f} |")
            lines.append("")
    (out / "defaults.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.defaults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpus", nargs="+", type=int, default=None,
                        help="CPU counts to measure (default: 1 and every CPU of this process)")
    parser.add_argument("--slices", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="int8")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--note", default="the machine was shared with other jobs (contended)")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.slices, args.rounds, args.model)))
        return 0
    from benchmarks.machine import load_average, machine_facts

    available = len(os.sched_getaffinity(0))
    counts = args.cpus or sorted({1, available})
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine_facts(),
               "load_before": load_average(), "note": args.note, "runs": []}
    for cpus in counts:
        done = subprocess.run([sys.executable, "-m", "benchmarks.defaults", "--worker", str(cpus),
                               "--slices", str(args.slices), "--rounds", str(args.rounds), "--model", args.model],
                              capture_output=True, text=True, cwd=str(REPO))
        if done.returncode != 0:
            print(done.stderr[-2000:], file=sys.stderr)
            return 1
        run = json.loads(done.stdout.strip().splitlines()[-1])
        results["runs"].append(run)
        for syntax, data in run["syntaxes"].items():
            best = data["rows"][0]
            print(f"{cpus} CPU(s) {syntax}: best {best['label']}: {best['slices_per_s']:.1f} slices/s "
                  f"({best['ratio']:.2f} of inference {data['inference_slices_per_s']:.1f})", flush=True)
    results["load_after"] = load_average()
    write_report(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
