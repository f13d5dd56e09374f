"""A real PostgreSQL for the tests: Debian's binaries, initdb + pg_ctl, a free loopback port, a temp folder.

initdb refuses to run as root; under root (CI containers) the cluster belongs
to the ``postgres`` system user (created by Debian's package) and its commands
run through ``runuser``. Authentication is ``trust`` on 127.0.0.1 only.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


def postgres_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` holding initdb, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    folder: Path
    port: int
    bin: Path
    as_user: str | None

    @property
    def admin_url(self) -> str:
        return f"postgresql://diqa@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://diqa@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _cmd(self, *argv: str) -> list[str]:
        return (["runuser", "-u", self.as_user, "--"] if self.as_user else []) + list(argv)

    def stop(self) -> None:
        subprocess.run(self._cmd(str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"),
                                 "-m", "immediate", "-w", "stop"),
                       capture_output=True, timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)


def start_postgres() -> PostgresServer:
    """initdb a cluster in a new temp folder and start it on a free port (waits until ready)."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL server binaries (Debian package postgresql) not found")
    as_user = "postgres" if os.geteuid() == 0 else None
    # /tmp itself, not pytest's tmp_path: the postgres user must reach the folder.
    folder = Path(tempfile.mkdtemp(prefix="diqa-pg-", dir="/tmp"))
    if as_user:
        shutil.chown(folder, user=as_user)
    server = PostgresServer(folder, free_port(), bin_dir, as_user)
    run = lambda *argv: subprocess.run(server._cmd(*argv), capture_output=True, text=True,  # noqa: E731
                                       timeout=120, check=True)
    try:
        run(str(bin_dir / "initdb"), "-D", str(folder / "data"), "-U", "diqa", "--auth=trust",
            "--locale=C", "-E", "UTF8", "--no-sync")
        run(str(bin_dir / "pg_ctl"), "-D", str(folder / "data"), "-l", str(folder / "server.log"),
            "-w", "-t", "60", "-o",
            f"-p {server.port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=60",
            "start")
    except subprocess.CalledProcessError as error:
        log = (folder / "server.log").read_text() if (folder / "server.log").exists() else ""
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {error.stderr}\n{log}") from error
    return server
