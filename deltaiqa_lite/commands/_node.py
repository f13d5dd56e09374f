"""Command-line options shared by ``watch`` and ``serve`` (model, QA log, patient hash, SR sending)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from deltaiqa_lite.commands._args import (add_accept_argument, add_model_arguments, positive_float,
                                          warnings_to_stderr)
from deltaiqa_lite.errors import DeltaIQAError
from deltaiqa_lite.qa.log import DEFAULT_LOG

SALT_ENV = "DELTAIQA_PATIENT_ID_SALT"


def add_scoring_arguments(parser: argparse.ArgumentParser) -> None:
    """--log, --model, --provider, --batch-size, --threads, --accept, --patient-id-salt-file."""
    parser.add_argument("--log", default=DEFAULT_LOG, metavar="FILE|URL",
                        help=f"QA log: an SQLite file (created if missing; default ./{DEFAULT_LOG}) "
                             "or postgresql://user@host/db shared by several nodes "
                             "(postgres extra)")
    add_model_arguments(parser)
    add_accept_argument(parser)
    parser.add_argument("--patient-id-salt-file", default=None, metavar="FILE",
                        help="store an HMAC-SHA256 of Patient ID under the secret in FILE "
                             f"(or in ${SALT_ENV}); default: no patient link stored at all")


def beside_log(args: argparse.Namespace, given: str | None, name: str, option: str) -> Path:
    """A node folder: ``given``, else ``name`` beside an SQLite log.

    A PostgreSQL log has no folder, and nodes sharing it must not share their
    spools or outboxes, so each names its own (raises DeltaIQAError otherwise).
    """
    from deltaiqa_lite.qa.log_postgres import is_postgres_url

    if given:
        return Path(given)
    if is_postgres_url(args.log):
        raise DeltaIQAError(f"with a PostgreSQL log, give this node its own {option} DIR "
                            "(nodes sharing the database must not share it)")
    return Path(args.log).resolve().parent / name


def patient_id_salt(args: argparse.Namespace) -> bytes | None:
    """The site secret for the Patient ID hash, or None (the default: nothing stored)."""
    if args.patient_id_salt_file:
        try:
            salt = Path(args.patient_id_salt_file).read_bytes().strip()
        except OSError as error:
            raise DeltaIQAError(f"{args.patient_id_salt_file}: cannot read the salt file "
                                f"({error.strerror or error})") from error
    elif os.environ.get(SALT_ENV):
        salt = os.environ[SALT_ENV].encode("utf-8")
    else:
        return None
    if len(salt) < 16:
        raise DeltaIQAError("the Patient ID salt must be at least 16 bytes (a short salt makes "
                            "the hash reversible by trying Patient IDs)")
    return salt


def make_scorer(args: argparse.Namespace):
    """Build the Scorer from the options, printing provider warnings on stderr."""
    from deltaiqa_lite.score import Scorer

    with warnings_to_stderr():
        return Scorer(args.model, provider=args.provider, threads=args.threads,
                      batch_size=args.batch_size, accept=getattr(args, "accept", ()))


def _destination(text: str):
    from deltaiqa_lite.qa.outbox import OutboxError, parse_destination

    try:
        return parse_destination(text)
    except OutboxError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def add_sr_arguments(parser: argparse.ArgumentParser) -> None:
    """--send-sr, --series-idle, --sr-outbox, --sr-retry-max (serve and watch)."""
    group = parser.add_argument_group("structured reports back to PACS (needs the 'sr' extra)")
    group.add_argument("--send-sr", type=_destination, default=None, metavar="AET@HOST:PORT",
                       help="when a series is complete, send its DICOM SR (TID 1500) to this "
                            "Storage SCP by C-STORE")
    group.add_argument("--series-idle", type=positive_float, default=30.0, metavar="SECONDS",
                       help="a series is complete after this long without a new image (30)")
    group.add_argument("--sr-outbox", default=None, metavar="DIR",
                       help="SRs waiting for the destination, and per-series state (default: "
                            "'sr-outbox' beside an SQLite log; required with a PostgreSQL log)")
    group.add_argument("--sr-retry-max", type=positive_float, default=300.0, metavar="SECONDS",
                       help="longest wait between two tries of an unsent SR (300; the first "
                            "retry waits 2 s, doubling)")
    group.add_argument("--sr-tls", action="store_true",
                       help="send SRs over TLS (1.2 or later), verifying the destination's "
                            "certificate against --tls-ca (default: the system's CAs) and "
                            "presenting --tls-cert/--tls-key when given")


def add_tls_arguments(parser: argparse.ArgumentParser, *, listener: bool) -> None:
    """--tls-cert, --tls-key, --tls-ca (serve's listener and the SR sender)."""
    what = "listen with DICOM TLS (1.2 or later) and present" if listener else \
        "with --sr-tls, present"
    group = parser.add_argument_group("DICOM TLS")
    group.add_argument("--tls-cert", default=None, metavar="PEM",
                       help=f"{what} this certificate (chain)")
    group.add_argument("--tls-key", default=None, metavar="PEM",
                       help="the private key of --tls-cert")
    group.add_argument("--tls-ca", default=None, metavar="PEM",
                       help="CA certificates: " + ("senders must present a certificate signed "
                                                   "by one of them (mutual TLS); " if listener
                                                   else "") +
                            "the SR destination is verified against them")


def tls_settings(args: argparse.Namespace):
    """The :class:`TLSSettings` of the options, or None when none was given."""
    from deltaiqa_lite.qa.tls import TLSSettings

    cert, key, ca = (getattr(args, name, None) for name in ("tls_cert", "tls_key", "tls_ca"))
    if cert is None and key is None and ca is None:
        return None
    return TLSSettings(cert=Path(cert) if cert else None, key=Path(key) if key else None,
                       ca=Path(ca) if ca else None)


def make_reporter(args: argparse.Namespace, log, scorer, *,
                  calling_aet: str = "DELTAIQA"):
    """The :class:`SeriesReporter` the options ask for, or None without ``--send-sr``."""
    if not getattr(args, "send_sr", None):
        return None
    from deltaiqa_lite.output.sr import _hd, model_identity
    from deltaiqa_lite.qa.outbox import Outbox
    from deltaiqa_lite.qa.sr_node import SeriesReporter

    destination = args.send_sr
    _hd()  # fail at start, with the extra's name, rather than at the first complete series
    folder = beside_log(args, args.sr_outbox, "sr-outbox", "--sr-outbox")
    tls = None
    if args.sr_tls:
        from deltaiqa_lite.qa.tls import TLSSettings
        tls = tls_settings(args) or TLSSettings()
    outbox = Outbox(folder / "outbox", destination, log, calling_aet=calling_aet,
                    retry_initial_s=min(2.0, args.sr_retry_max), retry_max_s=args.sr_retry_max,
                    tls=tls)
    return SeriesReporter(log, model_identity(scorer), outbox, folder / "series",
                          series_idle_s=args.series_idle, poll_s=min(1.0, args.series_idle / 2))
