"""``python -m benchmarks run [--smoke] [--out DIR] [--models DIR] [--weights FILE] [--skip SECTION ...]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.suite import REPO, SECTIONS, Config, run_suite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the suite and write results.json, results.md, latency.png")
    run.add_argument("--smoke", action="store_true",
                     help="a few calls of everything (CI proves the suite works; figures mean little)")
    run.add_argument("--out", type=Path, default=None,
                     help="results folder (default benchmarks/results, or build/bench-smoke with --smoke)")
    run.add_argument("--models", type=Path, default=None,
                     help="folder with deltaiqa-int8.onnx and deltaiqa-fp32.onnx (default models/)")
    run.add_argument("--weights", type=Path, default=None,
                     help="Keras .weights.h5 for the baseline (default models/deltaiqa.weights.h5 "
                          "with the shipped models; random weights otherwise)")
    run.add_argument("--skip", nargs="+", choices=SECTIONS, default=[], metavar="SECTION",
                     help=f"sections to leave out: {', '.join(SECTIONS)}")
    run.add_argument("--build-python", default=sys.executable,
                     help="Python of the build environment (TensorFlow) for the Keras baseline")
    run.add_argument("--no-create-venvs", action="store_true",
                     help="do not create the OpenVINO venv when it is missing (skip that section)")
    run.add_argument("--extra-model", action="append", default=[], metavar="LABEL=PATH",
                     help="also time this ONNX model (inference, OpenVINO, profile) under LABEL")
    run.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                     help="before each section wait up to SECONDS for other processes to go quiet "
                          "(< 0.15 CPUs over 5 s); each section records what others used anyway")
    run.add_argument("--series-slices", type=int, default=240, metavar="N",
                     help="files in each generated series of the series section (default 240)")
    run.add_argument("--note", action="append", default=[], help="a note written into the results")
    args = parser.parse_args(argv)
    extra = {}
    for item in args.extra_model:
        label, sep, path = item.partition("=")
        if not sep or not Path(path).is_file() or label in ("int8", "fp32"):
            parser.error(f"--extra-model {item}: expected LABEL=PATH to an existing .onnx file, LABEL not int8/fp32")
        extra[label] = Path(path)
    out = args.out or (REPO / "build" / "bench-smoke" if args.smoke else REPO / "benchmarks" / "results")
    config = Config(out=out, smoke=args.smoke, models_dir=args.models, weights=args.weights, skip=set(args.skip),
                    build_python=args.build_python, create_venvs=not args.no_create_venvs,
                    extra_models=extra, wait_quiet_s=args.wait_quiet, series_slices=args.series_slices)
    results = run_suite(config, notes=args.note)
    failed = [name for name, section in results.items() if isinstance(section, dict) and "error" in section]
    print(f"results in {out}: results.json, results.md, latency.png; wall {results['wall_s']} s", file=sys.stderr)
    for row in results["targets"]:
        value = "n/a" if row["value"] is None else f"{row['value']:.2f}"
        met = {True: "met", False: "MISSED", None: "not measured"}[row["met"]]
        print(f"{row['what']}: {value} (target {row['target']}) {met}")
    if failed:
        print(f"benchmarks: sections failed: {', '.join(failed)} (see results.json)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
