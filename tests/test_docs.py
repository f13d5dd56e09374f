"""The guide's examples run, its refusal table is complete, and it builds.

Convention (docs/installing.md, "Examples in this guide are tested"): in
docs/*.md and README.md, a fenced block whose info string is ``console`` is
runnable. Each line that starts with ``$ `` is a command, run from the
repository root by bash with this Python's ``bin/`` first on PATH (so
``deltaiqa-lite`` and ``python`` are the installed ones). It must exit 0,
unless it ends with a comment ``# exit N``. A line ending in ``\\`` continues
on the next. Other lines are example output and are not compared: INT8 scores
differ slightly between CPUs. Any other fence is illustration only.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
GUIDE_FILES = sorted(DOCS.rglob("*.md")) + [REPO / "README.md"]
# The guide had 30 runnable commands in 15 blocks when this test was written;
# far fewer means examples were lost or the extractor broke.
MIN_COMMANDS = 25
COMMAND_TIMEOUT_S = 300

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\s`]*)")
_EXIT = re.compile(r"#\s*exit\s+(?P<status>\d+)\s*$")


@dataclass(frozen=True)
class Command:
    """One ``$ `` line of a console block."""

    source: str          # "docs/scoring.md:42", the line of the command
    line: str            # the command as bash gets it
    expected_status: int
    # 1-based numbers of the example output lines after it (what tests/refresh_console_output.py
    # rewrites), and the indentation the block's lines share
    output: tuple[int, ...] = field(default=(), compare=False)
    indent: str = field(default="", compare=False)


@dataclass(frozen=True)
class ConsoleBlock:
    source: str          # "docs/scoring.md:40", the line of the opening fence
    commands: tuple[Command, ...]


def extract_console_blocks(text: str, name: str) -> list[ConsoleBlock]:
    """Find the ``console`` fences of a Markdown text and the commands in them.

    Fences may be indented (list items, admonitions); a fence inside a longer
    or different fence is content, not a block, as in CommonMark.
    """
    blocks: list[ConsoleBlock] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        start = index
        body: list[tuple[int, str]] = []
        index += 1
        while index < len(lines):
            stripped = lines[index].strip()
            if stripped.startswith(fence[0] * len(fence)) and set(stripped) == {fence[0]}:
                break
            # Content lines lose at most the fence's own indentation.
            raw = lines[index]
            cut = min(indent, len(raw) - len(raw.lstrip(" \t")))
            body.append((index + 1, raw[cut:], raw[:cut]))
            index += 1
        index += 1  # past the closing fence (or the end of the text)
        if opening["info"] != "console":
            continue
        commands: list[Command] = []
        position = 0
        while position < len(body):
            number, content, prefix = body[position]
            position += 1
            if not content.startswith("$ "):
                continue
            command = content[2:]
            while command.endswith("\\") and position < len(body):
                command = command[:-1] + "\n" + body[position][1]
                position += 1
            output = []
            while position < len(body) and not body[position][1].startswith("$ "):
                output.append(body[position][0])
                position += 1
            status = _EXIT.search(command)
            commands.append(Command(f"{name}:{number}", command.strip(),
                                    int(status["status"]) if status else 0, tuple(output), prefix))
        blocks.append(ConsoleBlock(f"{name}:{start + 1}", tuple(commands)))
    return blocks


def _guide_blocks() -> list[ConsoleBlock]:
    blocks = []
    for path in GUIDE_FILES:
        blocks.extend(extract_console_blocks(path.read_text(encoding="utf-8"),
                                             path.relative_to(REPO).as_posix()))
    return blocks


GUIDE_BLOCKS = _guide_blocks()


def test_extractor_finds_commands_output_exit_status_and_continuations():
    sample = "\n".join([
        "# Page",
        "```console",
        "$ deltaiqa-lite score examples/",
        "input  score",
        "$ deltaiqa-lite score missing.dcm  # exit 1",
        "```",
        "```bash",
        "$ deltaiqa-lite serve   # not runnable: a server",
        "```",
        "````markdown",
        "```console",
        "$ echo inside an outer fence",
        "```",
        "````",
        "1. A list item:",
        "",
        "   ```console",
        "   $ python -c 'print(1)' \\",
        "       --flag",
        "   1",
        "   ```",
        "```console",
        "output only",
        "```",
    ])
    blocks = extract_console_blocks(sample, "sample.md")
    assert [b.source for b in blocks] == ["sample.md:2", "sample.md:17", "sample.md:22"]
    assert blocks[0].commands == (
        Command("sample.md:3", "deltaiqa-lite score examples/", 0),
        Command("sample.md:5", "deltaiqa-lite score missing.dcm  # exit 1", 1),
    )
    assert blocks[1].commands == (Command("sample.md:18", "python -c 'print(1)' \n    --flag", 0),)
    assert blocks[2].commands == ()


def test_guide_has_runnable_examples_and_no_empty_console_block():
    commands = [c for block in GUIDE_BLOCKS for c in block.commands]
    assert len(commands) >= MIN_COMMANDS, f"only {len(commands)} runnable commands in the guide"
    empty = [block.source for block in GUIDE_BLOCKS if not block.commands]
    assert not empty, f"console blocks without a '$ ' command (use ```text for output only): {empty}"
    for page in ("README.md", "docs/scoring.md", "docs/dicom.md", "docs/validation.md", "docs/qa-node.md"):
        assert any(c.source.startswith(page + ":") for c in commands), f"{page} lost its runnable examples"


def _tree_state() -> str | None:
    """``git status`` of the checkout, or None outside a git checkout."""
    if shutil.which("git") is None:
        return None
    done = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO,
                          capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


@pytest.mark.parametrize("block", GUIDE_BLOCKS, ids=[b.source for b in GUIDE_BLOCKS])
def test_console_example_runs(block: ConsoleBlock):
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    before = _tree_state()
    for command in block.commands:
        done = subprocess.run(command.line, shell=True, executable=shutil.which("bash") or "/bin/sh",
                              cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S)
        assert done.returncode == command.expected_status, (
            f"{command.source}: `{command.line}` exited {done.returncode}, "
            f"expected {command.expected_status}\n--- stdout\n{done.stdout[-3000:]}\n"
            f"--- stderr\n{done.stderr[-3000:]}")
    # Examples write only under ignored folders (build/), never into the checkout.
    assert _tree_state() == before, f"{block.source} changed the working tree"


def _message_fragments(path: Path) -> list[tuple[int, str]]:
    """Literal text of every InputError/RefusedInput/MissingCodecError reason in a module."""
    fragments = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in {"InputError", "RefusedInput", "MissingCodecError"}
                and len(node.args) >= 2):
            continue
        reason = node.args[1]
        parts = reason.values if isinstance(reason, ast.JoinedStr) else [reason]
        for part in parts:
            if isinstance(part, ast.Constant) and isinstance(part.value, str):
                fragments.append((node.lineno, part.value))
    return fragments


def test_refusal_table_names_every_message_of_the_readers():
    page = (DOCS / "dicom.md").read_text(encoding="utf-8")
    modules = sorted((REPO / "deltaiqa_lite" / "read").glob("*.py")) + [REPO / "deltaiqa_lite" / "score.py"]
    checked, missing = 0, []
    for module in modules:
        for line, fragment in _message_fragments(module):
            text = fragment.strip()
            if len(text) < 10:  # " is '", "; " and the like say nothing on their own
                continue
            checked += 1
            if text not in page:
                missing.append(f"{module.relative_to(REPO)}:{line}: {text!r}")
    assert checked >= 30, f"only {checked} message fragments found; did the readers move?"
    assert not missing, "docs/dicom.md lacks these refusal messages:\n" + "\n".join(missing)


def test_every_page_is_in_the_nav():
    config = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    nav = set(re.findall(r"^\s*-\s*(?:[^#:\n]+:\s*)?([\w./-]+\.md)\s*$", config, re.MULTILINE))
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert "index.md" in nav and len(nav) >= 10
    assert pages - nav == set(), f"pages missing from the nav in mkdocs.yml: {sorted(pages - nav)}"
    assert nav - pages == set(), f"nav entries without a page: {sorted(nav - pages)}"


def test_mkdocs_build_strict(tmp_path):
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(module, reason="needs the docs extra: pip install '.[docs]'")
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(REPO / "mkdocs.yml"), "--site-dir", str(site)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    assert "WARNING" not in done.stderr, done.stderr[-5000:]
    # The API page is generated from the docstrings: their text must be there.
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    for phrase in ("score_file", "score_series", "RefusedInput", "Yield the slices of one file"):
        assert phrase in api, f"API page lacks {phrase!r}: mkdocstrings did not render the docstrings"


def test_refresh_tool_rewrites_shown_output_only(tmp_path):
    from refresh_console_output import refresh

    f = tmp_path / "refresh-test.txt"
    first = (f"```bash\n$ echo untouched\nzz\n```\n\n```console\n$ echo new > {f}\n"
             f"$ cat {f}\nold output\n$ echo a; \\\n  echo b\nstale\n$ echo short\n...\n$ printf '1\\n2\\n3\\n4\\n'\nold1\n...\nold4\n```\n")
    second = f"\n```console\n$ rm {f}\n$ echo 'x'\ny\n```\ntail\n"
    assert refresh(first + second) == (
        f"```bash\n$ echo untouched\nzz\n```\n\n```console\n$ echo new > {f}\n"
        f"$ cat {f}\nnew\n$ echo a; \\\n  echo b\na\nb\n$ echo short\n...\n$ printf '1\\n2\\n3\\n4\\n'\n1\n...\n4\n```\n"
        f"\n```console\n$ rm {f}\n$ echo 'x'\nx\n```\ntail\n")
