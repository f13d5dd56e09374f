"""``deltaiqa-lite watch DIR``: score DICOM files dropped into a folder, into the QA log."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from deltaiqa_lite.commands._args import positive_float, positive_int

HELP = "watch a folder: score each new CT DICOM file once it is completely written, into the QA log"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from deltaiqa_lite.commands._node import add_scoring_arguments
    from deltaiqa_lite.commands._node import add_sr_arguments, add_tls_arguments

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
    parser.add_argument("--error-settle", type=positive_float, default=None, metavar="SECONDS",
                        help="an unreadable file is logged as an error (and archived under "
                             "failed/) only once unchanged this long, since its writer may just "
                             "have paused (default 30; with --once: --settle)")
    parser.add_argument("--log-paths", action="store_true",
                        help="store and print each file's path relative to DIR (default: the "
                             "file name only, since folder names may carry patient names)")
    parser.add_argument("--group-access", action="store_true",
                        help="let the node's group read the QA log and archive folders it "
                             "creates (0640/0750; default 0600/0700)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no line per file on stderr")
    add_scoring_arguments(parser)
    add_sr_arguments(parser)
    add_tls_arguments(parser, listener=False)


def run(args: argparse.Namespace) -> int:
    from deltaiqa_lite.qa.ingest import Ingestor
    from deltaiqa_lite.qa.log import QALog
    from deltaiqa_lite.commands._node import make_scorer, patient_id_salt
    from deltaiqa_lite.commands._node import make_reporter
    from deltaiqa_lite.qa.watch import FolderWatcher
    from deltaiqa_lite.read.names import display_text

    if (args.tls_cert or args.tls_key or args.tls_ca) and not args.sr_tls:
        # watch has no listener: the TLS files are for SR sending only.
        print("deltaiqa-lite watch: error: --tls-cert/--tls-key/--tls-ca are for SR sending "
              "and need --sr-tls (and --send-sr)", file=sys.stderr)
        return 2
    if args.sr_tls and not args.send_sr:
        print("deltaiqa-lite watch: error: --sr-tls needs --send-sr", file=sys.stderr)
        return 2
    salt = patient_id_salt(args)
    scorer = make_scorer(args)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()  # the current series batch finishes and is logged first

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    reporter = None
    watcher: FolderWatcher | None = None

    def report(outcome) -> None:
        if reporter is not None:
            reporter.note(outcome)
        if args.quiet or watcher is None:
            return
        name = watcher.display_name(outcome.path)
        if outcome.status == "scored":
            print(f"{name}: scored {outcome.score:.2f} ({outcome.n_slices} slices)",
                  file=sys.stderr, flush=True)
        elif outcome.status == "dose":
            print(f"{name}: dose report stored{': ' + outcome.reason if outcome.reason else ''}",
                  file=sys.stderr, flush=True)
        else:
            print(f"{name}: {outcome.status}: {display_text(outcome.reason or '')}", file=sys.stderr,
                  flush=True)

    file_mode, dir_mode = (0o640, 0o750) if args.group_access else (0o600, 0o700)
    error_settle = args.error_settle if args.error_settle is not None else (
        args.settle if args.once else 30.0)
    with QALog(args.log, file_mode=file_mode, dir_mode=dir_mode) as log:
        reporter = make_reporter(args, log, scorer)
        if reporter:
            reporter.start()
        watcher = FolderWatcher(args.folder, Ingestor(scorer, log, source="watch",
                                                      patient_id_salt=salt),
                                archive=args.archive, settle_s=args.settle,
                                batch_files=args.batch_files, on_outcome=report,
                                error_settle_s=error_settle, log_paths=args.log_paths,
                                dir_mode=dir_mode)
        if not args.once:
            print(f"deltaiqa-lite watch: watching {watcher.folder} every {args.poll:g} s; "
                  f"model {scorer.model_name} on {scorer.provider}; log {log.path}",
                  file=sys.stderr, flush=True)
        stats = watcher.run(stop, poll_s=args.poll if not args.once else min(args.poll, 0.2),
                            once=args.once)
        if reporter:
            reporter.stop()
            if args.once:
                reporter.flush()  # --once: the folder is complete now, no idle wait
    print(f"deltaiqa-lite watch: scored {stats.scored} files ({stats.slices} slices), refused "
          f"{stats.refused}, failed {stats.error}, already logged {stats.duplicate}, dose reports {stats.dose}",
          file=sys.stderr, flush=True)
    return 1 if (stats.refused or stats.error) and args.once else 0
