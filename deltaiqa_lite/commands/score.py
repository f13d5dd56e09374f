"""``deltaiqa-lite score PATH...``: score slices, print results, exit 0/1/2."""

from __future__ import annotations

import argparse
import sys

from deltaiqa_lite.commands._args import (
    add_accept_argument,
    add_model_arguments,
    hu_window,
    warnings_to_stderr,
)

HELP = "score CT slices (DICOM files/folders, LDCTIQAC TIFF, .npy in HU) on the 0-4 Likert scale"
FORMATS = ("table", "json", "jsonl", "csv")  # same keys as deltaiqa_lite.write.WRITERS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="DICOM files or folders (recursive), .tif/.tiff (LDCTIQAC), .npy (HU)")
    add_model_arguments(parser, strict_provider=True)
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="output format (default: table on a terminal, json otherwise)")
    parser.add_argument("--json", dest="format", action="store_const", const="json",
                        help="short for --format json")
    parser.add_argument("--flag-below", type=float, default=None, metavar="SCORE",
                        help="count slices scoring below SCORE in each series summary")
    parser.add_argument("--image-window", type=hu_window, default=None, metavar="CENTRE,WIDTH",
                        help="window (HU) that plain images (PNG, JPEG, integer TIFF) were saved with")
    add_accept_argument(parser)
    parser.add_argument("-o", "--output", default=None, metavar="FILE", help="write results to FILE")
    parser.add_argument("--sr", default=None, metavar="DIR",
                        help="also write one DICOM Structured Report (TID 1500) per scored series "
                             "into DIR (needs the 'sr' extra: highdicom)")
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")


def _preload_readers() -> None:
    # pydicom's import (~0.3 s) overlaps with creating the onnxruntime session
    # in the main thread: a measurable part of a one-slice cold start.
    import deltaiqa_lite.read.dicom  # noqa: F401


def run(args: argparse.Namespace) -> int:
    import threading

    from deltaiqa_lite.score import Scorer, group_results
    from deltaiqa_lite.write import run_header, write_results

    if args.sr is not None:
        from deltaiqa_lite.sr import _hd
        _hd()  # missing extra: one line and exit 2 before any scoring (and before the preload
        # thread imports pydicom, which highdicom imports too)
    threading.Thread(target=_preload_readers, name="deltaiqa-preload", daemon=True).start()
    with warnings_to_stderr():
        scorer = Scorer(args.model, provider=args.provider, threads=args.threads, batch_size=args.batch_size,
                        strict_provider=args.strict_provider, image_window=args.image_window,
                        accept=args.accept)

    show_progress = not args.no_progress and sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        sys.stderr.write(f"\rread {done}/{total} files")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    results = scorer.score_paths(args.paths, progress=progress if show_progress else None)
    series = group_results(results, flag_below=args.flag_below)
    header = run_header(scorer.model_name, scorer.precision, scorer.card.get("version"), str(scorer.model_path),
                        scorer.provider, args.flag_below)
    fmt = args.format
    if args.output is not None:
        with open(args.output, "w", encoding="utf-8", newline="") as stream:
            write_results(stream, fmt or "json", results, series, header)
    else:
        write_results(sys.stdout, fmt or ("table" if sys.stdout.isatty() else "json"), results, series, header)
        sys.stdout.flush()
    sr_failed = 0
    if args.sr is not None:
        from deltaiqa_lite.sr import model_identity, write_series_srs
        for outcome in write_series_srs(results, model_identity(scorer), args.sr):
            if outcome.status == "written":
                print(f"deltaiqa-lite: SR of series {outcome.series_uid}: {outcome.path}",
                      file=sys.stderr)
            else:
                sr_failed += outcome.status != "skipped"  # skipped: no DICOM series to report on
                print(f"deltaiqa-lite: SR {outcome.status}: {outcome.reason}", file=sys.stderr)
    failed = [r for r in results if not r.ok]
    # Failures are in the results; repeat them on stderr unless the table already shows them there.
    if failed and (args.output is not None or fmt not in (None, "table") or not sys.stdout.isatty()):
        for result in failed:
            print(f"deltaiqa-lite: {result.error}", file=sys.stderr)
    return 1 if failed or sr_failed else 0
