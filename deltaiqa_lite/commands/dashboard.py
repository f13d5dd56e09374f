"""``deltaiqa-lite dashboard --log LOG``: the live web dashboard over the QA log."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HELP = ("live web dashboard over the QA log: overview per station, control-chart trends, series "
        "with Grad-CAM, alarms to acknowledge (needs the 'dashboard' extra)")
TOKEN_ENV = "DELTAIQA_DASHBOARD_TOKEN"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from deltaiqa_lite.qa.log import DEFAULT_LOG

    parser.add_argument("--log", default=DEFAULT_LOG, metavar="FILE|URL",
                        help=f"QA log: SQLite file (default ./{DEFAULT_LOG}) or postgresql:// URL")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; any other needs --token or "
                             "--password-file)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument("--token", default=None,
                        help=f"shared access token (better: set ${TOKEN_ENV}, which ps does not show)")
    parser.add_argument("--password-file", default=None, metavar="FILE",
                        help="users allowed in: lines 'user:<bcrypt hash>'")
    parser.add_argument("--hash-password", action="store_true",
                        help="read a password on stdin, print its bcrypt hash for the password file, exit")
    parser.add_argument("--store", default=None, metavar="DIR",
                        help="the --store folder of serve: worst slices kept there get Grad-CAM overlays")
    parser.add_argument("--model", default="fp32",
                        help="FP32 model for Grad-CAM ('fp32' = the shipped one, or a path)")


def run(args: argparse.Namespace) -> int:
    from deltaiqa_lite.errors import DeltaIQAError

    try:
        from deltaiqa_lite.dashboard.auth import Auth, hash_password, read_password_file
    except ImportError as error:  # pragma: no cover - extra missing
        raise DeltaIQAError(f"the dashboard needs the 'dashboard' extra: pip install "
                            f"'deltaiqa-lite[dashboard]' ({error})") from error
    if args.hash_password:
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            raise DeltaIQAError("no password on stdin")
        print(hash_password(password))
        return 0
    try:
        import uvicorn

        from deltaiqa_lite.dashboard.app import Settings, create_app
    except ImportError as error:
        raise DeltaIQAError(f"the dashboard needs the 'dashboard' extra: pip install "
                            f"'deltaiqa-lite[dashboard]' ({error.name} is missing)") from error
    from deltaiqa_lite.qa.log import QALog
    from deltaiqa_lite.qa.log_postgres import is_postgres_url

    token = args.token or os.environ.get(TOKEN_ENV) or None
    if token is not None and len(token) < 16:
        raise DeltaIQAError("the token must be at least 16 characters")
    users = read_password_file(args.password_file) if args.password_file else {}
    auth = Auth(token=token, users=users)
    auth.check_bind(args.host)
    if not is_postgres_url(args.log) and not Path(args.log).is_file():
        print(f"deltaiqa-lite dashboard: error: {args.log}: no such QA log", file=sys.stderr)
        return 2
    with QALog(args.log) as log:
        app = create_app(Settings(log, auth=auth, store_dir=Path(args.store) if args.store else None,
                                  model=args.model))
        config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                                access_log=False, proxy_headers=True, server_header=False)
        server = uvicorn.Server(config)

        # Print the real address once bound (port 0 picks a free one; tests read it).
        original_startup = server.startup

        async def startup(sockets=None) -> None:
            await original_startup(sockets=sockets)
            for s in server.servers:
                for sock in s.sockets:
                    host, port = sock.getsockname()[:2]
                    print(f"deltaiqa-lite dashboard: http://{host}:{port}/ (log {log.path})",
                          file=sys.stderr, flush=True)
                    break

        server.startup = startup
        server.run()
    return 0
