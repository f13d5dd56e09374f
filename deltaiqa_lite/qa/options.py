"""Command-line options shared by ``watch`` and ``serve`` (model, QA log, patient hash)."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from deltaiqa_lite.errors import DeltaIQAError

DEFAULT_LOG = "deltaiqa-qa.sqlite"
SALT_ENV = "DELTAIQA_PATIENT_ID_SALT"


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value:g}")
    return value


def add_scoring_arguments(parser: argparse.ArgumentParser) -> None:
    """--log, --model, --provider, --threads, --batch-size, --patient-id-salt-file."""
    parser.add_argument("--log", default=DEFAULT_LOG, metavar="FILE",
                        help=f"QA log (SQLite, created if missing; default ./{DEFAULT_LOG})")
    parser.add_argument("--model", default="int8",
                        help="'int8' (default), 'fp32', or an .onnx file")
    parser.add_argument("--provider", default="auto",
                        choices=("auto", "cpu", "openvino", "tensorrt", "cuda"),
                        help="execution provider (default auto)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="onnxruntime intra-op threads (default: onnxruntime's choice)")
    parser.add_argument("--batch-size", type=positive_int, default=8,
                        help="slices per inference call (8)")
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

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        scorer = Scorer(args.model, provider=args.provider, threads=args.threads,
                        batch_size=args.batch_size)
    for warning in caught:
        print(f"deltaiqa-lite: warning: {warning.message}", file=sys.stderr)
    return scorer
