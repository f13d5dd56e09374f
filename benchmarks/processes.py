"""Fresh processes: wall time to the first line of output, total wall time, peak RSS.

Each command runs under :mod:`benchmarks.launch`, a small interpreter that
forks it, times it and reads its ``ru_maxrss`` with ``os.wait4``. Forking from
the suite itself would not do: on Linux the peak RSS a child reports starts
from the size of the process it was forked from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["ProcessRun", "clean_env", "run_process"]

LAUNCHER = Path(__file__).resolve().with_name("launch.py")


@dataclass
class ProcessRun:
    command: list[str]
    returncode: int
    first_output_s: float | None   # process start -> first line on stdout
    wall_s: float                  # process start -> exit
    peak_rss_mb: float             # ru_maxrss of the command's process (MiB)
    stdout: str
    stderr: str

    def to_dict(self, with_output: bool = False) -> dict:
        record = asdict(self)
        if not with_output:
            record.pop("stdout")
            record["stderr"] = self.stderr[-500:]
        return record


def clean_env(extra: dict[str, str] | None = None, drop: Sequence[str] = ("PYTHONPATH", "VIRTUAL_ENV",
                                                                        "DELTAIQA_LITE_MODEL_DIR")) -> dict:
    """The current environment without variables that would leak the suite's setup into a child."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra or {})
    return env


def run_process(command: Sequence[str], *, env: dict | None = None, cwd: str | None = None,
                timeout: float = 600.0) -> ProcessRun:
    """Run ``command`` in a fresh process; time its first stdout line and its exit; read its peak RSS.

    stderr goes to a temporary file so a chatty child (TensorFlow) cannot
    block on a full pipe.

    Raises
    ------
    subprocess.TimeoutExpired
        The command ran longer than ``timeout`` seconds.
    """
    with tempfile.TemporaryDirectory(prefix="deltaiqa-proc-") as folder:
        out_path = Path(folder) / "stdout"
        err_path = Path(folder) / "stderr"
        with open(err_path, "wb") as errors:
            # -S -I: no site-packages, no user paths; the launcher needs the standard library only.
            done = subprocess.run([sys.executable, "-S", "-I", str(LAUNCHER), str(out_path), "--", *map(str, command)],
                                  stdout=subprocess.PIPE, stderr=errors, env=env, cwd=cwd, timeout=timeout, check=False)
        stderr = err_path.read_text(errors="replace")
        if done.returncode != 0 or not done.stdout.strip():
            raise RuntimeError(f"launcher failed ({done.returncode}) for {' '.join(map(str, command))}: {stderr[-800:]}")
        report = json.loads(done.stdout.decode().strip().splitlines()[-1])
        stdout = out_path.read_text(errors="replace")
    return ProcessRun(command=[str(c) for c in command], returncode=report["returncode"],
                      first_output_s=report["first_output_s"], wall_s=report["wall_s"],
                      peak_rss_mb=report["peak_rss_kb"] / 1024.0, stdout=stdout, stderr=stderr)
