"""``deltaiqa-lite compare --model-a A --model-b B PATH...``: agreement of two models on the same slices."""

from __future__ import annotations

import argparse
import json
import sys

from deltaiqa_lite.commands._args import (
    PROVIDERS,
    add_inference_arguments,
    warnings_to_stderr,
)

HELP = ("score the same slices with two models (or providers) and report their agreement: mean and "
        "max |score difference|, class agreement, PLCC/SROCC/KROCC")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="DICOM files or folders (recursive), .tif/.tiff (LDCTIQAC), .npy (HU)")
    parser.add_argument("--model-a", default="fp32", metavar="A",
                        help="reference model: 'int8', 'fp32' (default) or an .onnx file")
    parser.add_argument("--model-b", default="int8", metavar="B",
                        help="model compared with A: 'int8' (default), 'fp32' or an .onnx file")
    parser.add_argument("--provider-a", default="auto", choices=PROVIDERS, help="provider of A (auto)")
    parser.add_argument("--provider-b", default="auto", choices=PROVIDERS, help="provider of B (auto)")
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="report on stdout (default table)")
    parser.add_argument("-o", "--output", default=None, metavar="FILE",
                        help="also write the JSON report (with every slice) to FILE")
    add_inference_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from deltaiqa_lite.validate.compare import compare, to_json, write_table
    from deltaiqa_lite.score import Scorer

    with warnings_to_stderr():
        scorers = [Scorer(model, provider=provider, threads=args.threads, batch_size=args.batch_size)
                   for model, provider in ((args.model_a, args.provider_a),
                                           (args.model_b, args.provider_b))]
    comparison = compare(*scorers, args.paths)
    report = to_json(comparison)
    if args.format == "json":
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        write_table(sys.stdout, comparison)
    if args.output is not None:
        with open(args.output, "w", encoding="utf-8") as stream:
            json.dump(report, stream, indent=2)
            stream.write("\n")
    for side, _name, error in comparison.failed:
        print(f"deltaiqa-lite: model {side}: {error}", file=sys.stderr)
    return 1 if comparison.failed else 0
