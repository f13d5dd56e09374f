"""Inputs of a scoring run, streamed: files, folders and manifests in, one entry per input out.

A manifest lists inputs so that an archive export can be scored without
walking a network file system: a text file (``.txt``, ``.lst``, ``.list``,
``.manifest``) with one path per line (blank lines and ``#`` comments
skipped), or a ``.csv`` file with a header and a ``path`` column. Relative
entries are taken relative to the manifest's folder. Entries are expanded like
command-line paths (a folder is walked), but an entry is never read as a
further manifest.

Nothing here holds the whole list: a run over 10^8 inputs reads them as it
goes, twice (once to count them for the progress line, once to score).

Each file is yielded once: a path given again (a duplicate manifest line, or an
alias such as ``./a``, ``a`` and ``/abs/a``, or a folder given twice) is
skipped and, when asked, reported through ``on_duplicate``. The paths seen are
kept as 16-byte digests in a temporary SQLite file, not in memory, so the
check costs no memory however long the manifest.
"""

from __future__ import annotations

import csv
import hashlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from deltaiqa_lite.errors import InputError
from deltaiqa_lite.read import iter_paths

__all__ = ["MANIFEST_SUFFIXES", "is_manifest", "read_manifest", "iter_inputs", "count_inputs",
           "Duplicate"]

MANIFEST_SUFFIXES = {".txt", ".lst", ".list", ".manifest", ".csv"}
PATH_COLUMN = "path"


def is_manifest(path: str | os.PathLike) -> bool:
    """Whether a command-line path names a manifest (an existing file with a manifest suffix)."""
    path = Path(path)
    return path.suffix.lower() in MANIFEST_SUFFIXES and path.is_file()


def _entry(manifest: Path, text: str) -> str:
    entry = Path(os.path.expanduser(text))
    return str(entry if entry.is_absolute() else manifest.parent / entry)


def read_manifest(path: str | os.PathLike) -> Iterator[str | InputError]:
    """Yield the entries of a manifest, in file order, relative ones joined to its folder.

    A line of a text manifest that is not UTF-8 yields an :class:`InputError`
    naming the manifest and the line, and reading goes on.

    Raises
    ------
    InputError
        The manifest cannot be opened, a CSV manifest is not UTF-8, or it has
        no ``path`` column (the message names the file and the columns found).
    """
    manifest = Path(path)
    try:
        if manifest.suffix.lower() == ".csv":
            with open(manifest, encoding="utf-8", newline="") as stream:
                reader = csv.DictReader(stream)
                columns = {(name or "").strip().lower(): name for name in (reader.fieldnames or [])}
                if PATH_COLUMN not in columns:
                    raise InputError(str(manifest), f"CSV manifest has no '{PATH_COLUMN}' column "
                                                    f"(columns: {', '.join(reader.fieldnames or []) or 'none'})")
                for row in reader:
                    text = (row.get(columns[PATH_COLUMN]) or "").strip()
                    if text:
                        yield _entry(manifest, text)
        else:
            with open(manifest, "rb") as stream:
                for number, raw in enumerate(stream, start=1):
                    try:
                        text = raw.decode("utf-8").strip()
                    except UnicodeDecodeError as error:
                        yield InputError(str(manifest), f"line {number} is not UTF-8 text ({error.reason}); "
                                                        "entry skipped")
                        continue
                    if text and not text.startswith("#"):
                        yield _entry(manifest, text)
    except OSError as error:
        raise InputError(str(manifest), f"cannot read manifest: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise InputError(str(manifest), f"CSV manifest is not UTF-8 text ({error.reason})") from None


@dataclass(frozen=True)
class Duplicate:
    """An input given more than once: where the repeat was, and the path it repeats."""

    source: str  # the manifest with its line number ("list.txt line 7"), or "command line"
    path: str


class _SeenPaths:
    """Set of absolute paths held as digests in a private temporary SQLite file."""

    def __init__(self) -> None:
        self._db = sqlite3.connect("")  # "": a temporary on-disk database, deleted on close
        self._db.execute("CREATE TABLE seen (key BLOB PRIMARY KEY) WITHOUT ROWID")

    def add(self, path: str) -> bool:
        """Remember ``path``; False when it (or an alias of it) was seen before."""
        key = hashlib.blake2b(os.fsencode(os.path.abspath(path)), digest_size=16).digest()
        return self._db.execute("INSERT OR IGNORE INTO seen VALUES (?)", (key,)).rowcount == 1

    def close(self) -> None:
        self._db.close()


def _given(paths: Iterable[str | os.PathLike]) -> Iterator[tuple[str, str | InputError]]:
    """(where, entry) for every entry of the command line and of its manifests."""
    for given in paths:
        if not is_manifest(given):
            yield "command line", os.fspath(given)
            continue
        try:
            number = 0
            for number, entry in enumerate(read_manifest(given), start=1):
                yield f"{given} entry {number}", entry
        except InputError as error:
            yield str(given), error


def iter_inputs(paths: Iterable[str | os.PathLike], *,
                on_duplicate: Callable[[Duplicate], None] | None = None) -> Iterator[str | InputError]:
    """Yield every input file of a run, lazily and once: a path, or an error of a manifest.

    Folders are walked (sorted, as :func:`deltaiqa_lite.read.expand_paths`),
    manifests read, anything else passed on as given; missing and unreadable
    files are passed on too, so that reading reports each. A manifest that
    cannot be read yields one :class:`InputError` (after any entries read
    before the problem), an undecodable line one each. A file met again (same
    absolute path) is skipped and passed to ``on_duplicate``.
    """
    seen = _SeenPaths()
    try:
        for where, entry in _given(paths):
            if isinstance(entry, InputError):
                yield entry
                continue
            # Entries are expanded as they are read, never gathered in a list.
            for found in iter_paths([entry]):
                if isinstance(found, InputError) or seen.add(found):
                    yield found
                elif on_duplicate is not None:
                    on_duplicate(Duplicate(where, found))
    finally:
        seen.close()


def count_inputs(paths: Iterable[str | os.PathLike]) -> int:
    """How many entries :func:`iter_inputs` yields (one streaming pass, no list)."""
    return sum(1 for _ in iter_inputs(paths))
