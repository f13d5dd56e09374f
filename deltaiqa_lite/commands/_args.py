"""Argparse types, model and runtime options, and the warning relay shared by the subcommands.

Imported by ``score`` on every cold start, so this module imports the
standard library only; the Scorer is imported by the commands when they run.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import TypeVar

_Number = TypeVar("_Number", int, float)

# "auto" and the short names of deltaiqa_lite.model.session.PROVIDERS, spelled out so
# that this module stays standard-library only (test_args checks that they agree).
PROVIDERS = ("auto", "cpu", "openvino", "tensorrt", "cuda")
MODEL_HELP = "'int8' (default, fastest on CPU), 'fp32', or an .onnx file"


def parse_number(text: str, convert: Callable[[str], _Number], expected: str) -> _Number:
    """``convert(text)``, or an argparse error saying ``expected`` and what was given."""
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got '{text}'") from None


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    value = parse_number(text, int, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0."""
    value = parse_number(text, int, "a whole number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    value = parse_number(text, float, "a number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value:g}")
    return value


def unit_interval(text: str) -> float:
    """argparse type: a number in 0..1 (a weight or opacity)."""
    value = parse_number(text, float, "a number in 0..1")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in 0..1, got {value:g}")
    return value


def hu_window(text: str) -> tuple[float, float]:
    """argparse type: ``CENTRE,WIDTH`` in HU, width > 0."""
    try:
        centre, width = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CENTRE,WIDTH in HU (e.g. -300,1400), got '{text}'") \
            from None
    if width <= 0:
        raise argparse.ArgumentTypeError(f"window width must be > 0, got {width:g}")
    return centre, width


def add_model_arguments(parser: argparse.ArgumentParser, *, default_model: str = "int8",
                        model_help: str = MODEL_HELP, strict_provider: bool = False,
                        batch_size: int = 8) -> None:
    """Add --model, --provider, [--strict-provider], --batch-size and --threads.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    default_model : str
        Default of --model; pass ``model_help`` to match when it is not 'int8'.
    model_help : str
        Help of --model.
    strict_provider : bool
        Also add --strict-provider (fail instead of warning on provider fallback).
    batch_size : int
        Default of --batch-size.
    """
    parser.add_argument("--model", default=default_model, help=model_help)
    parser.add_argument("--provider", default="auto", choices=PROVIDERS,
                        help="execution provider (default auto: cuda, then openvino, then cpu)")
    if strict_provider:
        parser.add_argument("--strict-provider", action="store_true",
                            help="fail (exit 2) instead of warning when the provider falls back")
    add_inference_arguments(parser, batch_size=batch_size)


def add_inference_arguments(parser: argparse.ArgumentParser, *, batch_size: int = 8) -> None:
    """Add --batch-size (default ``batch_size``) and --threads."""
    parser.add_argument("--batch-size", type=positive_int, default=batch_size,
                        help=f"slices per inference call ({batch_size})")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="onnxruntime intra-op threads (default: one per physical core)")


def add_accept_argument(parser: argparse.ArgumentParser) -> None:
    """Add --accept VALUE (repeatable): score a kind the selection policy refuses, on purpose."""
    parser.add_argument("--accept", action="append", default=[], metavar="IMAGE-TYPE-VALUE",
                        help="score images the selection policy refuses when they carry this value "
                             "(e.g. MIP, RCBF, LOCALIZER, COLOR, MAX_IP) or are of this kind "
                             "(e.g. off-axial); repeatable; recorded as policy_override "
                             "(docs/selection-policy.md)")


@contextlib.contextmanager
def warnings_to_stderr() -> Iterator[None]:
    """Collect the RuntimeWarnings of the block (provider fallback) and print one line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        yield
    for warning in caught:
        print(f"deltaiqa-lite: warning: {warning.message}", file=sys.stderr)
