"""``deltaiqa-lite evaluate --labels FILE PATH...``: validate the model on a site's scored images."""

from __future__ import annotations

import argparse
import json
import sys

from deltaiqa_lite.commands._args import (
    add_model_arguments,
    non_negative_int,
    warnings_to_stderr,
)

HELP = ("score images and compare with reference scores (LDCTIQAC JSON or CSV file,score): PLCC, "
        "SROCC, KROCC, accuracy, MAE, per-class precision/recall, confusion matrix, bootstrap CIs")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from deltaiqa_lite.validate.metrics import (
        DEFAULT_BOOTSTRAP_RESAMPLES,
        DEFAULT_BOOTSTRAP_SEED,
    )

    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="DICOM files or folders (recursive), .tif/.tiff (LDCTIQAC), .npy (HU)")
    parser.add_argument("--labels", required=True, metavar="FILE",
                        help="reference scores: LDCTIQAC JSON ({\"0000.tif\": 2.8} or "
                             "{\"valid_0.tif\": {\"scores\": [...]}}) or CSV with header file,score "
                             "(or file,frame,score); matched to inputs by file name")
    add_model_arguments(parser)
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="report on stdout (default table)")
    parser.add_argument("-o", "--output", default=None, metavar="DIR",
                        help="also write evaluation.json, evaluation.txt, slices.csv and "
                             "confusion-matrix.png to DIR")
    parser.add_argument("--bootstrap", type=non_negative_int, default=DEFAULT_BOOTSTRAP_RESAMPLES,
                        metavar="N", help=f"bootstrap resamples for the 95%% intervals "
                                          f"(default {DEFAULT_BOOTSTRAP_RESAMPLES}; 0: none)")
    parser.add_argument("--seed", type=int, default=DEFAULT_BOOTSTRAP_SEED,
                        help=f"bootstrap seed (default {DEFAULT_BOOTSTRAP_SEED})")


def run(args: argparse.Namespace) -> int:
    from deltaiqa_lite.validate.evaluate import evaluate, to_json, write_outputs, write_table
    from deltaiqa_lite.validate.labels import read_labels
    from deltaiqa_lite.score import Scorer

    labels = read_labels(args.labels)  # before the model: a bad label file fails fast
    with warnings_to_stderr():
        scorer = Scorer(args.model, provider=args.provider, threads=args.threads,
                        batch_size=args.batch_size)
    evaluation = evaluate(scorer, args.paths, labels, resamples=args.bootstrap, seed=args.seed)
    if args.format == "json":
        json.dump(to_json(evaluation), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        write_table(sys.stdout, evaluation)
    if args.output is not None:
        for path in write_outputs(evaluation, args.output):
            print(f"deltaiqa-lite: wrote {path}", file=sys.stderr)
    for _name, error in evaluation.failed:
        print(f"deltaiqa-lite: {error}", file=sys.stderr)
    if evaluation.unlabelled or evaluation.unused_labels:
        print(f"deltaiqa-lite: warning: {len(evaluation.unlabelled)} scored inputs had no label and "
              f"{len(evaluation.unused_labels)} labels matched no input (listed in the report)",
              file=sys.stderr)
    return 1 if evaluation.failed else 0
