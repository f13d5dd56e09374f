"""The local engine: one :class:`~deltaiqa_lite.score.Scorer` in this process, streamed.

Inputs are fed to :meth:`Scorer.iter_score_paths` in chunks, so a run over
millions of files holds one chunk of paths and the rows of a few files, never
the whole list.
"""

from __future__ import annotations

from itertools import islice
from typing import Iterable, Iterator

from deltaiqa_lite.errors import InputError
from deltaiqa_lite.score import Scorer, SliceResult

__all__ = ["LocalEngine"]


class LocalEngine:
    """Score in this process.

    Parameters
    ----------
    scorer : Scorer
        Made by the caller (model, provider, threads, batch size).
    chunk_files : int, default 1024
        Paths handed to the scorer at a time; large enough that the short
        drain of the read-ahead at each chunk's end does not show.
    rows_per_write : int, default 256
        Rows gathered (whole files only) before they are handed on.
    """

    name = "local"

    def __init__(self, scorer: Scorer, *, chunk_files: int = 1024, rows_per_write: int = 256) -> None:
        self.scorer = scorer
        self.chunk_files = int(chunk_files)
        self.rows_per_write = int(rows_per_write)

    def run(self, entries: Iterable[str | InputError]) -> Iterator[tuple[list[SliceResult], int]]:
        """Yield (rows of whole files, number of those files) as they are scored, in input order."""
        entries = iter(entries)
        while True:
            chunk = list(islice(entries, self.chunk_files))
            if not chunk:
                return
            paths: list[str] = []
            for entry in chunk:
                if isinstance(entry, InputError):
                    yield from self._score(paths)
                    paths = []
                    yield [self.scorer._error_result(entry.path, str(entry), entry)], 1
                else:
                    paths.append(entry)
            yield from self._score(paths)

    def _score(self, paths: list[str]) -> Iterator[tuple[list[SliceResult], int]]:
        if not paths:
            return
        rows: list[SliceResult] = []
        files = 0
        current: str | None = None
        for result in self.scorer.iter_score_paths(paths):
            if result.path != current:
                # A file boundary: hand on what we have only here, so that
                # every hand-over holds whole files.
                if len(rows) >= self.rows_per_write:
                    yield rows, files
                    rows, files = [], 0
                current = result.path
                files += 1
            rows.append(result)
        if rows:
            yield rows, files

    def close(self) -> None:
        """Nothing to release (the scorer belongs to the caller)."""
