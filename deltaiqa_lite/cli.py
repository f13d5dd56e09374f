"""The ``deltaiqa-lite`` command line.

Each subcommand lives in ``deltaiqa_lite/commands/<name>.py`` with ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. Only the invoked command's
module is imported, so ``deltaiqa-lite score one.dcm`` does not pay for the
others (cold start matters on a scanner-side workstation).

Exit status: 0 every input scored, 1 some inputs failed (each reported),
2 usage error (bad options, missing model, provider refused).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

__all__ = ["main", "COMMANDS", "EXIT_OK", "EXIT_INPUT_FAILED", "EXIT_USAGE"]

EXIT_OK, EXIT_INPUT_FAILED, EXIT_USAGE = 0, 1, 2
# Known commands and their one-line summaries (shown in --help without importing them).
COMMANDS = {
    "score": "score CT slices (DICOM files/folders, TIFF, .npy) on the 0-4 Likert scale",
    "info": "show version, models and their cards, execution providers and codecs",
    "explain": "Grad-CAM maps of what drove a score",
    "evaluate": "compare scores with reference labels (PLCC, SROCC, KROCC)",
    "compare": "compare two models or providers on the same inputs",
    "watch": "watch a folder and score new slices as they arrive",
    "serve": "receive DICOM over the network (C-STORE) and score it",
    "report": "summarise a score log into a QA report",
    "bench": "measure latency and throughput",
    "dashboard": "live web dashboard over the QA log (overview, trends, series, alarms)",
    "log": "QA log tools: copy a node's SQLite log into PostgreSQL",
}


def _load(name: str):
    module_name = f"deltaiqa_lite.commands.{name}"
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            return None
        raise


def _parser(selected: str | None) -> tuple[argparse.ArgumentParser, object | None]:
    from deltaiqa_lite._version import __version__
    parser = argparse.ArgumentParser(
        prog="deltaiqa-lite",
        description="CT slice image quality on the LDCTIQAC 0-4 Likert scale (research and QA, "
                    "not diagnosis).")
    parser.add_argument("--version", action="version", version=f"deltaiqa-lite {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    module = None
    for name, summary in COMMANDS.items():
        if name == selected:
            module = _load(name)
            if module is None:
                return parser, None
            sub = commands.add_parser(name, help=module.HELP, description=module.HELP)
            module.add_arguments(sub)
        else:
            commands.add_parser(name, help=summary, add_help=False)
    return parser, module


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (never calls ``sys.exit`` itself)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in argv if not a.startswith("-")), None)
    if selected is not None and selected not in COMMANDS:
        selected = None  # argparse reports the unknown command
    parser, module = _parser(selected)
    if selected is not None and module is None:
        print(f"deltaiqa-lite: error: command '{selected}' is not available in this installation "
              f"(module deltaiqa_lite.commands.{selected} is missing)", file=sys.stderr)
        return EXIT_USAGE
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse exits 2 on usage errors and 0 on --help/--version
        return int(stop.code or 0)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from deltaiqa_lite.errors import DeltaIQAError, WarningTally
    # Library warnings (pydicom on malformed values, ignored elements) are shown once
    # per place with a count at the end, never as raw multi-line warnings.
    tally = WarningTally()
    try:
        with tally:
            return int(module.run(args))
    except DeltaIQAError as error:
        print(f"deltaiqa-lite: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("deltaiqa-lite: interrupted", file=sys.stderr)
        return 130
    finally:
        if tally.summary() is not None and tally.total > len(tally.counts):
            print(tally.summary(), file=sys.stderr)
