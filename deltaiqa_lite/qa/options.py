"""Command-line options shared by ``watch`` and ``serve`` (model, QA log, patient hash)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from deltaiqa_lite.commands._args import add_accept_argument, add_model_arguments, warnings_to_stderr
from deltaiqa_lite.errors import DeltaIQAError

DEFAULT_LOG = "deltaiqa-qa.sqlite"
SALT_ENV = "DELTAIQA_PATIENT_ID_SALT"


def add_scoring_arguments(parser: argparse.ArgumentParser) -> None:
    """--log, --model, --provider, --batch-size, --threads, --accept, --patient-id-salt-file."""
    parser.add_argument("--log", default=DEFAULT_LOG, metavar="FILE",
                        help=f"QA log (SQLite, created if missing; default ./{DEFAULT_LOG})")
    add_model_arguments(parser)
    add_accept_argument(parser)
    parser.add_argument("--patient-id-salt-file", default=None, metavar="FILE",
                        help="store an HMAC-SHA256 of Patient ID under the secret in FILE "
                             f"(or in ${SALT_ENV}); default: no patient link stored at all")


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
