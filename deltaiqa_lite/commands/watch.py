"""``deltaiqa-lite watch DIR``: score DICOM files dropped into a folder, into the QA log."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from deltaiqa_lite.commands._args import positive_float, positive_int

HELP = "watch a folder: score each new CT DICOM file once it is completely written, into the QA log"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from deltaiqa_lite.qa.options import add_scoring_arguments
    from deltaiqa_lite.qa.sr_node import add_sr_arguments

    parser.add_argument("folder", metavar="DIR", help="folder to watch (recursively)")
    parser.add_argument("--archive", default=None, metavar="DIR",
                        help="move files here once logged (refused and failed ones under "
                             "DIR/failed/); default: leave them in place")
    parser.add_argument("--settle", type=positive_float, default=2.0, metavar="SECONDS",
                        help="a file is read once its size and mtime are unchanged this long (2)")
    parser.add_argument("--poll", type=positive_float, default=1.0, metavar="SECONDS",
                        help="seconds between scans (1)")
    parser.add_argument("--batch-files", type=positive_int, default=256,
                        help="most files of one series scored and logged together (256)")
    parser.add_argument("--once", action="store_true",
                        help="process what is there (waiting for it to settle), then exit")
    parser.add_argument("-q", "--quiet", action="store_true", help="no line per file on stderr")
    add_scoring_arguments(parser)
    add_sr_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from deltaiqa_lite.qa.ingest import Ingestor
    from deltaiqa_lite.qa.log import QALog
    from deltaiqa_lite.qa.options import make_scorer, patient_id_salt
    from deltaiqa_lite.qa.sr_node import make_reporter
    from deltaiqa_lite.qa.watch import FolderWatcher

    salt = patient_id_salt(args)
    scorer = make_scorer(args)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()  # the current series batch finishes and is logged first

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    reporter = None

    def report(outcome) -> None:
        if reporter is not None:
            reporter.note(outcome)
        if args.quiet:
            return
        if outcome.status == "scored":
            print(f"{outcome.path}: scored {outcome.score:.2f} ({outcome.n_slices} slices)",
                  file=sys.stderr, flush=True)
        else:
            print(f"{outcome.path}: {outcome.status}: {outcome.reason}", file=sys.stderr,
                  flush=True)

    with QALog(args.log) as log:
        reporter = make_reporter(args, log, scorer)
        if reporter:
            reporter.start()
        watcher = FolderWatcher(args.folder, Ingestor(scorer, log, source="watch",
                                                      patient_id_salt=salt),
                                archive=args.archive, settle_s=args.settle,
                                batch_files=args.batch_files, on_outcome=report)
        if not args.once:
            print(f"deltaiqa-lite watch: watching {watcher.folder} every {args.poll:g} s; "
                  f"model {scorer.model_name} on {scorer.provider}; log {args.log}",
                  file=sys.stderr, flush=True)
        stats = watcher.run(stop, poll_s=args.poll if not args.once else min(args.poll, 0.2),
                            once=args.once)
        if reporter:
            reporter.stop()
            if args.once:
                reporter.flush()  # --once: the folder is complete now, no idle wait
    print(f"deltaiqa-lite watch: scored {stats.scored} files ({stats.slices} slices), refused "
          f"{stats.refused}, failed {stats.error}, already logged {stats.duplicate}",
          file=sys.stderr, flush=True)
    return 1 if (stats.refused or stats.error) and args.once else 0
