"""``deltaiqa-lite log copy SRC DST``: move a node's QA log into another (SQLite into PostgreSQL)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "QA log tools: 'copy SRC DST' moves a node's SQLite log into the site's PostgreSQL"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    copy = actions.add_parser("copy", help="copy every row of SRC into DST (rows already in DST "
                                           "are kept; running it twice adds nothing)")
    copy.add_argument("source", metavar="SRC", help="QA log to read (SQLite file or postgresql:// URL)")
    copy.add_argument("target", metavar="DST", help="QA log to write (created and migrated if new)")


def run(args: argparse.Namespace) -> int:
    from deltaiqa_lite.qa.log import QALog
    from deltaiqa_lite.qa.log_copy import copy_log
    from deltaiqa_lite.qa.log_postgres import is_postgres_url

    if not is_postgres_url(args.source) and not Path(args.source).is_file():
        print(f"deltaiqa-lite log: error: {args.source}: no such QA log", file=sys.stderr)
        return 2
    with QALog(args.source) as source, QALog(args.target) as target:
        added = copy_log(source, target, progress=lambda n: print(
            f"deltaiqa-lite log copy: {n} slices written", file=sys.stderr, flush=True))
        total = target.counts()
    print(f"deltaiqa-lite log copy: {source.path} -> {target.path}: added "
          + ", ".join(f"{n} {table}" for table, n in added.items())
          + f"; the target now holds {sum(total.values())} slice rows", file=sys.stderr)
    return 0
