"""``deltaiqa-lite score PATH...``: score slices, print results, exit 0/1/2."""

from __future__ import annotations

import argparse
import sys

from deltaiqa_lite.commands._args import (
    add_accept_argument,
    add_model_arguments,
    hu_window,
    positive_int,
    warnings_to_stderr,
)

HELP = "score CT slices (DICOM files/folders, LDCTIQAC TIFF, .npy in HU) on the 0-4 Likert scale"
FORMATS = ("table", "json", "jsonl", "csv")  # same keys as deltaiqa_lite.output.write.WRITERS
STREAM_SUFFIXES = {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}  # deltaiqa_lite.engine.output


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
    parser.add_argument("--csv-formulas", action="store_true",
                        help="CSV: keep text cells that start with = + - @ as they are (default: "
                             "prefixed with ' so that a spreadsheet does not run them as formulas)")
    engine = parser.add_argument_group(
        "streaming and Ray", "with --output FILE.jsonl/.csv/.parquet rows are written as they come "
        "(flat memory); PATH may also be a manifest (.txt one path per line, .csv with a 'path' column)")
    engine.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local: this process (default); ray: a Ray cluster (extra 'ray')")
    engine.add_argument("--ray-address", default=None, metavar="ADDR",
                        help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray for this run)")
    engine.add_argument("--resume", action="store_true",
                        help="keep the rows already in --output and score only the inputs missing there")
    engine.add_argument("--actors", type=positive_int, default=None, metavar="N",
                        help="Ray scoring actors (default: one per node using all its CPUs)")
    engine.add_argument("--actor-cpus", type=positive_int, default=None, metavar="N",
                        help="CPUs, and onnxruntime threads, per Ray actor (default 1 with --actors)")


def _preload_readers() -> None:
    # pydicom's import (~0.3 s) overlaps with creating the onnxruntime session
    # in the main thread: a measurable part of a one-slice cold start.
    import deltaiqa_lite.read.dicom  # noqa: F401


def _streaming(args: argparse.Namespace) -> bool:
    """Whether to write through the streaming engine (see ``add_arguments``)."""
    import os
    if args.output is None:
        return False
    suffix = os.path.splitext(args.output)[1].lower()
    return suffix in STREAM_SUFFIXES and args.format in (None, STREAM_SUFFIXES[suffix])


def _check_engine_options(args: argparse.Namespace) -> None:
    """Refuse option combinations that would be silently ignored (exit 2 through the CLI)."""
    from deltaiqa_lite.errors import DeltaIQAError

    if (args.engine == "ray" or args.resume) and not _streaming(args):
        what = "--engine ray" if args.engine == "ray" else "--resume"
        raise DeltaIQAError(f"{what} needs --output FILE ending in .jsonl, .csv or .parquet (and no other --format)")
    if args.engine == "ray" and args.threads is not None:
        raise DeltaIQAError("--threads is for the local engine; with --engine ray give --actor-cpus "
                            "(onnxruntime threads per actor)")
    given = [name for name, value in (("--ray-address", args.ray_address), ("--actors", args.actors),
                                      ("--actor-cpus", args.actor_cpus)) if value is not None]
    if args.engine != "ray" and given:
        raise DeltaIQAError(f"{', '.join(given)} need --engine ray")


def _check_output(args: argparse.Namespace) -> None:
    """Refuse an --output that cannot be written, before any scoring (exit 2 through the CLI)."""
    import os

    from deltaiqa_lite.errors import DeltaIQAError

    target = args.output
    if target is None:
        return
    if os.path.isdir(target):
        raise DeltaIQAError(f"--output {target}: is a folder; give a file name")
    parent = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(parent):
        raise DeltaIQAError(f"--output {target}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DeltaIQAError(f"--output {target}: folder {parent} is not writable")


def run(args: argparse.Namespace) -> int:
    import threading

    from deltaiqa_lite.read.names import display_text

    _check_engine_options(args)
    _check_output(args)
    if _streaming(args):
        return _run_streaming(args)

    from deltaiqa_lite.output.write import run_header, write_results
    from deltaiqa_lite.read.rdsr import dose_report_line, split_dose_reports
    from deltaiqa_lite.score import Scorer, group_results

    if args.sr is not None:
        from deltaiqa_lite.output.sr import _hd
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
    results, dose_reports = split_dose_reports(results)
    series = group_results(results, flag_below=args.flag_below)
    header = run_header(scorer.model_name, scorer.precision, scorer.card.get("version"), str(scorer.model_path),
                        scorer.provider, args.flag_below)
    fmt = args.format
    if args.output is not None:
        with open(args.output, "w", encoding="utf-8", newline="") as stream:
            write_results(stream, fmt or "json", results, series, header,
                          csv_formulas=args.csv_formulas)
    else:
        write_results(sys.stdout, fmt or ("table" if sys.stdout.isatty() else "json"), results, series, header,
                      csv_formulas=args.csv_formulas)
        sys.stdout.flush()
    sr_failed = 0
    if args.sr is not None:
        from deltaiqa_lite.output.sr import model_identity, write_series_srs
        for outcome in write_series_srs(results, model_identity(scorer), args.sr):
            if outcome.status == "written":
                print(f"deltaiqa-lite: SR of series {outcome.series_uid}: {outcome.path}",
                      file=sys.stderr)
            else:
                sr_failed += outcome.status != "skipped"  # skipped: no DICOM series to report on
                print(f"deltaiqa-lite: SR {outcome.status}: {outcome.reason}", file=sys.stderr)
    for report in dose_reports:
        print(f"deltaiqa-lite: {dose_report_line(report)}", file=sys.stderr)
    failed = [r for r in results if not r.ok]
    # Failures are in the results; repeat them on stderr unless the table already shows them there.
    if failed and (args.output is not None or fmt not in (None, "table") or not sys.stdout.isatty()):
        for result in failed:
            print(f"deltaiqa-lite: {display_text(result.error or '')}", file=sys.stderr)
    return 1 if failed or sr_failed else 0


def _run_streaming(args: argparse.Namespace) -> int:
    import time

    from deltaiqa_lite.read.names import display_text

    from deltaiqa_lite.engine import Progress, score_to_file
    from deltaiqa_lite.read.rdsr import dose_report_line

    if args.engine == "ray":
        from deltaiqa_lite.engine.ray import RayEngine
        with warnings_to_stderr():
            engine = RayEngine(args.model, provider=args.provider, batch_size=args.batch_size,
                               image_window=args.image_window, strict_provider=args.strict_provider,
                               address=args.ray_address, actors=args.actors, actor_cpus=args.actor_cpus,
                               accept=args.accept)
    else:
        from deltaiqa_lite.engine.local import LocalEngine
        from deltaiqa_lite.score import Scorer
        _start_preload()
        with warnings_to_stderr():
            scorer = Scorer(args.model, provider=args.provider, threads=args.threads,
                            batch_size=args.batch_size, strict_provider=args.strict_provider,
                            image_window=args.image_window, accept=args.accept)
        engine = LocalEngine(scorer)

    tty = sys.stderr.isatty()
    last = [0.0]

    def progress(state: Progress) -> None:
        # A terminal gets a line redrawn twice a second; a log (ray job submit) a line every 30 s.
        now = time.monotonic()
        if now - last[0] < (0.5 if tty else 30.0) and state.files_done < state.files_total:
            return
        last[0] = now
        line = (f"scored {state.files_done}/{state.files_total} files, {state.slices} slices, "
                f"{state.slices_per_second:.1f} slices/s")
        sys.stderr.write(f"\r{line}" if tty else f"{line}\n")
        sys.stderr.flush()

    try:
        summary = score_to_file(args.paths, args.output, engine, resume=args.resume,
                                csv_formulas=args.csv_formulas,
                                flag_below=args.flag_below, progress=None if args.no_progress else progress)
    finally:
        engine.close()
    if tty and not args.no_progress:
        sys.stderr.write("\n")
    for report in summary.dose_reports:
        print(f"deltaiqa-lite: {dose_report_line(report)}", file=sys.stderr)
    for result in summary.failed_written:
        print(f"deltaiqa-lite: {display_text(result.error or '')}", file=sys.stderr)
    for repeat in summary.duplicates:
        print(f"deltaiqa-lite: {display_text(repeat.path)}: given again ({display_text(repeat.source)}); "
              "scored once", file=sys.stderr)
    if summary.n_duplicates > len(summary.duplicates):
        print(f"deltaiqa-lite: ... {summary.n_duplicates - len(summary.duplicates)} more inputs given "
              "again", file=sys.stderr)
    rate = summary.slices_written / summary.seconds if summary.seconds > 0 else 0.0
    skipped = f", {summary.files_skipped} files already there" if summary.files_skipped else ""
    print(f"deltaiqa-lite: wrote {summary.slices_written} slices to {args.output} in {summary.seconds:.1f} s "
          f"({rate:.1f} slices/s, engine {summary.engine}{skipped}); {summary.n_failed} failed in the file",
          file=sys.stderr)
    return 1 if summary.n_failed else 0


def _start_preload() -> None:
    """Start importing the readers in the background (see ``_preload_readers``)."""
    import threading
    threading.Thread(target=_preload_readers, name="deltaiqa-preload", daemon=True).start()
