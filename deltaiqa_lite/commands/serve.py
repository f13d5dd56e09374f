"""``deltaiqa-lite serve``: DICOM Storage SCP that scores every CT image it receives."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from deltaiqa_lite.commands._args import parse_number, positive_float, positive_int

LOG_BUSY_TIMEOUT_S = 5.0
HELP = ("receive CT over DICOM (C-STORE, C-ECHO) and score every image into the QA log "
        "(needs the 'net' extra: pynetdicom)")


def _ae_title(text: str) -> str:
    # PS3.5: AE titles are up to 16 characters, no backslash or control characters.
    if not 0 < len(text.strip()) <= 16 or "\\" in text or any(ord(c) < 32 for c in text):
        raise argparse.ArgumentTypeError(f"not a valid AE title: {text!r} (1-16 characters, "
                                         "no backslash)")
    return text.strip()


def _port(text: str) -> int:
    value = parse_number(text, int, "a port number")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from deltaiqa_lite.commands._node import add_scoring_arguments
    from deltaiqa_lite.commands._node import add_sr_arguments, add_tls_arguments

    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; "
                             "use the scanner-facing address, or 0.0.0.0, to receive from others)")
    parser.add_argument("--port", type=_port, default=11112,
                        help="TCP port (default 11112; 0 picks a free one, printed on stderr)")
    parser.add_argument("--ae-title", type=_ae_title, default="DELTAIQA",
                        help="our AE title (default DELTAIQA)")
    parser.add_argument("--allow", type=_ae_title, action="append", default=None, metavar="AET",
                        help="calling AE title allowed to send (repeat for several); "
                             "others are rejected at association")
    parser.add_argument("--allow-any", action="store_true",
                        help="accept any calling AE title (required with a non-loopback --host "
                             "and no --allow)")
    parser.add_argument("--store", default=None, metavar="DIR",
                        help="keep received objects as DIR/<study UID>/<series UID>/<SOP UID>.dcm "
                             "(default: deleted once scored)")
    parser.add_argument("--spool", default=None, metavar="DIR",
                        help="where received objects wait for scoring (default: 'spool' beside "
                             "an SQLite log; required with a PostgreSQL log)")
    parser.add_argument("--quarantine", default=None, metavar="DIR",
                        help="where acknowledged objects that were refused or could not be "
                             "scored are kept as DIR/<SOP UID>.dcm (default: 'refused' beside "
                             "the spool)")
    parser.add_argument("--rescan", type=positive_float, default=10.0, metavar="SECONDS",
                        help="how often spool files left by a failed log write are retried (10)")
    parser.add_argument("--group-access", action="store_true",
                        help="let the node's group read what it writes (files 0640, folders "
                             "0750; default 0600/0700: the node's user only)")
    parser.add_argument("--queue-size", type=positive_int, default=256,
                        help="objects waiting for scoring before C-STORE blocks (256)")
    parser.add_argument("--queue-timeout", type=positive_float, default=30.0, metavar="SECONDS",
                        help="how long a C-STORE waits for queue space before answering "
                             "0xA700 Out of Resources (30)")
    parser.add_argument("--ack-refused", action="store_true",
                        help="answer non-CT objects with Success (still logged as refused, and "
                             "kept in the quarantine folder since the sender may forget them), "
                             "for senders that retry failures forever")
    parser.add_argument("--max-associations", type=positive_int, default=10,
                        help="concurrent associations (10)")
    parser.add_argument("--grace", type=positive_float, default=10.0, metavar="SECONDS",
                        help="on SIGTERM, let open associations finish this long (10)")
    add_scoring_arguments(parser)
    add_sr_arguments(parser)
    add_tls_arguments(parser, listener=True)


def run(args: argparse.Namespace) -> int:
    from deltaiqa_lite.qa.ingest import Ingestor
    from deltaiqa_lite.qa.log import QALog
    from deltaiqa_lite.commands._node import make_scorer, patient_id_salt
    from deltaiqa_lite.qa.serve import LOOPBACK, QAServer, ServeConfig, peak_rss_mb
    from deltaiqa_lite.commands._node import beside_log, make_reporter, tls_settings

    loopback = args.host in (LOOPBACK, "localhost", "::1")
    if not loopback and not args.allow and not args.allow_any:
        print(f"deltaiqa-lite serve: error: listening on {args.host} accepts images from the "
              "network; name the senders with --allow AET (or pass --allow-any)", file=sys.stderr)
        return 2
    tls = tls_settings(args)
    if tls is not None and tls.cert is None and not args.sr_tls:
        print("deltaiqa-lite serve: error: --tls-ca/--tls-key need --tls-cert (a TLS listener) "
              "or --sr-tls (SRs sent over TLS)", file=sys.stderr)
        return 2
    if args.sr_tls and not args.send_sr:
        print("deltaiqa-lite serve: error: --sr-tls needs --send-sr", file=sys.stderr)
        return 2
    listener_tls = tls if tls is not None and tls.cert is not None else None
    salt = patient_id_salt(args)
    scorer = make_scorer(args)
    log_path = args.log
    spool = beside_log(args, args.spool, "spool", "--spool")
    file_mode, dir_mode = (0o640, 0o750) if args.group_access else (0o600, 0o700)
    config = ServeConfig(
        spool_dir=spool, host=args.host, port=args.port, ae_title=args.ae_title,
        allowed_aets=None if args.allow_any or not args.allow else tuple(args.allow),
        store_dir=Path(args.store) if args.store else None,
        quarantine_dir=Path(args.quarantine) if args.quarantine else None,
        queue_size=args.queue_size, queue_timeout_s=args.queue_timeout,
        batch_size=args.batch_size, ack_refused=args.ack_refused, grace_s=args.grace,
        max_associations=args.max_associations, rescan_s=args.rescan, file_mode=file_mode,
        dir_mode=dir_mode, tls=listener_tls)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # A short busy timeout: a locked log is reported (and answered 0xA700) in seconds,
    # not after SQLite's default wait; the worker retries it on every rescan.
    with QALog(log_path, busy_timeout_s=LOG_BUSY_TIMEOUT_S, file_mode=file_mode,
               dir_mode=dir_mode) as log:
        reporter = make_reporter(args, log, scorer, calling_aet=args.ae_title)
        server = QAServer(Ingestor(scorer, log, source="serve", patient_id_salt=salt), config,
                          on_outcome=reporter.note if reporter else None)
        host, port = server.start()
        if reporter:
            reporter.start()
        allowed = ", ".join(config.allowed_aets) if config.allowed_aets else "any calling AE"
        secure = " over TLS" if listener_tls is not None else ""
        print(f"deltaiqa-lite serve: listening on {host}:{port}{secure} as {config.ae_title!r} "
              f"(allowed: {allowed}); model {scorer.model_name} on {scorer.provider}; "
              f"log {log.path}", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
        print(f"deltaiqa-lite serve: stopping; scoring {server.backlog()} received objects",
              file=sys.stderr, flush=True)
        stats = server.stop()
        if reporter:
            reporter.stop()
    print(f"deltaiqa-lite serve: stopped; received {stats.received}, scored {stats.scored} "
          f"({stats.slices} slices), refused {stats.refused}, failed {stats.failed}, "
          f"duplicate {stats.duplicate}, dose reports {stats.dose_reports}, "
          f"out-of-resources {stats.rejected_full} (queue) "
          f"+ {stats.rejected_log} (QA log); "
          f"peak RSS {peak_rss_mb():.0f} MiB", file=sys.stderr, flush=True)
    return 0
