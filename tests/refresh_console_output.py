"""Rerun the guide's console examples and write their real output back (after a model change).

Usage, from the repository root with the project's Python::

    python tests/refresh_console_output.py [--write] [FILE.md ...]

The same blocks and the same environment as ``tests/test_docs.py`` (every
``console`` fence in README.md and docs/). Each command's stdout and stderr,
in the order the command wrote them to a terminal (a pseudo-terminal, so
each command picks the format a reader sees), replace the example output
lines that follow it. Without ``--write`` it prints a unified diff and changes nothing,
so a reviewer sees every changed figure; with it the files are rewritten.
Commands shown without output are run but stay without output; an output the
guide shortens with a ``...`` line keeps as many first and last lines as it
shows, refreshed.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_docs import COMMAND_TIMEOUT_S, GUIDE_FILES, REPO, extract_console_blocks  # noqa: E402


_PROGRESS = re.compile(r"^read \d+/\d+ files$")


def _run(command: str) -> str:
    """What ``command`` shows at a terminal: stdout and stderr on one pseudo-terminal, so the
    commands choose their terminal formats (a table, not JSON), as for a reader of the guide."""
    import pty
    import select

    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("COLUMNS", "200")
    master, slave = pty.openpty()
    process = subprocess.Popen(command, shell=True, executable=shutil.which("bash") or "/bin/sh", cwd=REPO,
                               env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], COMMAND_TIMEOUT_S)
        if not ready:
            process.kill()
            break
        try:
            data = os.read(master, 65536)
        except OSError:                     # the terminal closed: the command is done
            break
        if not data:
            break
        chunks.append(data)
    process.wait()
    os.close(master)
    text = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    text = text.replace(f"{REPO}{os.sep}", "")   # paths as a reader's checkout prints them
    # A progress line rewrites itself with carriage returns: the terminal shows its last state,
    # and the guide leaves `score`'s "read N/M files" out (it shows the result, not the progress).
    shown = (line.split("\r")[-1].rstrip() for line in text.split("\n"))
    return "\n".join(line for line in shown if not _PROGRESS.match(line)).rstrip("\n")


def refresh(text: str) -> str:
    """``text`` with the output of every console command replaced by what it prints now."""
    lines = text.splitlines()
    replaced: dict[int, list[str]] = {}       # first output line (0-based) -> its new lines
    dropped: set[int] = set()
    for block in extract_console_blocks(text, "refresh"):
        for command in block.commands:
            printed = [command.indent + x if x else x for x in _run(command.line).splitlines()]
            # (always run: later commands may need its effects)
            if not command.output:
                continue                     # shown without output: as written
            shown = [lines[n - 1] for n in command.output]
            cut = [k for k, line in enumerate(shown) if line.strip() == "..."]
            if cut:                          # shortened: as many first and last lines as shown
                head, tail = shown[:cut[0]], shown[cut[0] + 1:]
                printed = printed[:len(head)] + [shown[cut[0]]] + (printed[-len(tail):] if tail else [])
            first = command.output[0] - 1
            replaced[first] = printed
            dropped.update(n - 1 for n in command.output)
    out: list[str] = []
    for index, line in enumerate(lines):
        if index in replaced:
            out.extend(replaced[index])
        elif index not in dropped:
            out.append(line)
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="Markdown files (default: the whole guide)")
    parser.add_argument("--write", action="store_true", help="rewrite the files instead of printing a diff")
    args = parser.parse_args(argv)
    for path in args.files or GUIDE_FILES:
        path = path.resolve()
        text = path.read_text(encoding="utf-8")
        if "```console" not in text and "~~~console" not in text:
            continue
        new = refresh(text)
        if new == text:
            continue
        name = path.relative_to(REPO).as_posix()
        if args.write:
            path.write_text(new, encoding="utf-8")
            print(f"refreshed {name}")
        else:
            sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), new.splitlines(True),
                                                       f"a/{name}", f"b/{name}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
