"""``deltaiqa-lite bench``: latency and throughput on this machine, with the runtime alone.

Measures inference per model x provider x threads x batch size and,
optionally, end-to-end scoring of a folder of DICOM files (``--series``) or of
a series generated from given templates (``--generate N --template FILE``).
A series prints its rate beside the bound this machine allows (the CPU time
of every stage outside inference, measured; ``docs/benchmarks.md``), and with
``--cli`` the command-line tool's start-up and steady rate.
The fuller suite with the Keras baseline, install sizes and compute ceilings
is ``python -m benchmarks run`` in a source checkout.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile

from deltaiqa_lite.commands._args import positive_int

HELP = "measure latency (p50/p95/p99) and throughput of the models on this machine"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", nargs="+", default=["int8", "fp32"],
                        help="models to measure: 'int8', 'fp32' or .onnx paths (default: int8 fp32)")
    parser.add_argument("--provider", nargs="+", default=["cpu"], choices=("cpu", "openvino", "cuda", "tensorrt"),
                        help="execution providers (default: cpu)")
    parser.add_argument("--batch-size", nargs="+", type=positive_int, default=[1, 4, 16],
                        help="batch sizes (default: 1 4 16)")
    parser.add_argument("--threads", nargs="+", type=positive_int, default=None,
                        help="intra-op thread counts (default: 1 and all CPUs)")
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="minimum seconds per configuration (default 4; at least 20 calls)")
    parser.add_argument("--quick", action="store_true",
                        help="3 calls per configuration: checks that it runs, figures are rough")
    parser.add_argument("--series", default=None, metavar="FOLDER",
                        help="also time Scorer.score_series on this folder against pure inference")
    parser.add_argument("--generate", type=positive_int, default=None, metavar="N",
                        help="also write an N-slice series from --template files and time it")
    parser.add_argument("--template", nargs="+", default=None, metavar="DICOM",
                        help="single-frame CT DICOM files the generated series copies pixels from")
    parser.add_argument("--cli", action="store_true",
                        help="with --series/--generate: also time fresh 'deltaiqa-lite score' processes, "
                             "split into start-up and steady state")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def run(args: argparse.Namespace) -> int:
    from deltaiqa_lite.engine.bench import (
        Budget,
        bench_cli,
        bench_inference,
        bench_series,
        cpu_count,
        make_session,
        write_series,
    )
    from deltaiqa_lite.errors import DeltaIQAError
    from deltaiqa_lite.score import Scorer
    from deltaiqa_lite.model.session import resolve_model

    if args.generate is not None and not args.template:
        raise DeltaIQAError("--generate needs --template DICOM files to copy pixels from")
    budget = Budget.smoke() if args.quick else Budget(min_seconds=args.seconds)
    threads_list = args.threads or sorted({1, cpu_count()})
    runs = []
    for model in args.model:
        path = resolve_model(model)
        for provider in args.provider:
            for threads in threads_list:
                session = make_session(path, provider, threads)  # one session for every batch size
                for batch in args.batch_size:
                    run_ = bench_inference(path, provider=provider, threads=threads, batch=batch,
                                           budget=budget, session=session)
                    runs.append(run_)
                    if not args.json:
                        print(f"{run_.precision:>5} {provider:>8} threads {threads:>2} batch {batch:>3}: "
                              f"p50 {run_.per_slice['p50_ms']:7.1f}  p95 {run_.per_slice['p95_ms']:7.1f}  "
                              f"p99 {run_.per_slice['p99_ms']:7.1f} ms/slice  {run_.slices_per_s:7.1f} slices/s  "
                              f"({run_.timing.calls} calls)", flush=True)
    series_runs = []
    folders = []
    temporary = None
    if args.series:
        folders.append(args.series)
    if args.generate:
        temporary = tempfile.TemporaryDirectory(prefix="deltaiqa-bench-")
        write_series(temporary.name, args.generate, args.template)
        folders.append(temporary.name)
    try:
        for folder in folders:
            scorer = Scorer(args.model[0], provider=args.provider[0])
            series = bench_series(scorer, folder, runs=1 if args.quick else 3, budget=budget)
            record = {"folder": folder, **series.to_dict()}
            if not args.json:
                print(_series_lines(folder, series), flush=True)
            if args.cli:
                cli = bench_cli(folder, model=args.model[0], provider=args.provider[0], runs=1 if args.quick else 2)
                record["cli"] = cli.to_dict()
                if not args.json:
                    print(_cli_line(cli, series.inference_slices_per_s), flush=True)
            series_runs.append(record)
    finally:
        if temporary is not None:
            temporary.cleanup()
    if args.json:
        json.dump({"inference": [r.to_dict() for r in runs], "series": series_runs}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0


def _series_lines(folder: str, series) -> str:
    stages = series.stages
    parts = ", ".join(f"{name} {stages[name + '_ms']:.1f}" for name in
                      ("read", "decode", "preprocess", "physics", "output"))
    return (f"series {folder}: {series.slices} slices, {series.series_slices_per_s:.1f} slices/s end to end vs "
            f"{series.inference_slices_per_s:.1f} inference alone ({series.ratio:.0%}); bound on {series.cpus} "
            f"CPU(s) {series.bound_slices_per_s:.1f} slices/s ({series.bound_ratio:.0%} of inference): "
            f"{series.of_bound:.0%} of the bound; at inference's own CPU share {series.share_bound_ratio:.0%}\n"
            f"  CPU ms per slice outside inference (one thread): {parts} = {stages['total_ms']:.1f}; "
            f"inference {series.inference_cpu_ms:.1f} CPU ms per slice")


def _cli_line(cli, inference_slices_per_s: float) -> str:
    startup = cli.startup
    return (f"  CLI 'deltaiqa-lite score': start-up {cli.one_file_s:.2f} s for one file (in-process: import "
            f"{startup['import_s']:.2f} s, model load {startup['model_load_s']:.2f} s, first call "
            f"{startup['first_call_s']:.2f} s), steady {cli.steady_slices_per_s:.1f} slices/s "
            f"({cli.steady_slices_per_s / inference_slices_per_s:.0%} of inference); whole folder "
            f"{cli.whole_slices_per_s:.1f} slices/s")
