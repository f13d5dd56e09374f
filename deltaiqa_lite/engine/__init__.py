"""Scoring runs that stream to a file: the local engine and the Ray engine.

:func:`score_to_file` is the whole run: inputs streamed from files, folders
and manifests (:mod:`.inputs`), skipped when ``resume`` finds them already in
the output, scored by an engine (:mod:`.local` in this process, :mod:`.ray` on
a Ray cluster), written as they come (:mod:`.output`), then summarised per
series from the written rows. Memory stays flat whatever the number of inputs
(a resumed run also keeps the (path, frame) keys already written).

Layer: above the scorer and the writers (:mod:`deltaiqa_lite.output`); never
imports the QA node or the command line.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol, Sequence

from deltaiqa_lite.engine.inputs import Duplicate, count_inputs, iter_inputs
from deltaiqa_lite.engine.output import OUTPUT_SUFFIXES, open_writer
from deltaiqa_lite.errors import InputError
from deltaiqa_lite.read.names import display_text
from deltaiqa_lite.read.rdsr import RadiationDoseReport, split_dose_reports
from deltaiqa_lite.score import SeriesResult, SliceResult

__all__ = ["Engine", "RunSummary", "Progress", "score_to_file", "OUTPUT_SUFFIXES"]


class Engine(Protocol):
    """What :func:`score_to_file` needs of an engine."""

    name: str

    def run(self, entries: Iterable[str | InputError]) -> Iterable[tuple[list[SliceResult], int]]: ...

    def close(self) -> None: ...


@dataclass
class Progress:
    """Where a run stands: files done of total (skipped ones count as done), slices written."""

    files_done: int
    files_total: int
    files_skipped: int
    slices: int
    seconds: float

    @property
    def slices_per_second(self) -> float:
        return self.slices / self.seconds if self.seconds > 0 else 0.0


@dataclass
class RunSummary:
    """The outcome of a run: counts, time, and the series summaries written."""

    output: str
    engine: str
    files_total: int
    files_skipped: int
    slices_written: int
    failed_written: list[SliceResult] = field(default_factory=list)
    seconds: float = 0.0
    series: list[SeriesResult] = field(default_factory=list)
    #: Inputs given more than once (scored once): the first ``keep_failed`` of them, and how many.
    duplicates: list[Duplicate] = field(default_factory=list)
    n_duplicates: int = 0
    #: CT Radiation Dose SRs given among the inputs: read, not scored, not written as rows
    #: (the first ``keep_failed`` of them).
    dose_reports: list[RadiationDoseReport] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        """Failed rows in the whole output (this run and any earlier one resumed)."""
        return sum(s.n_failed for s in self.series)


def score_to_file(paths: Sequence[str | os.PathLike], output: str | os.PathLike, engine: Engine, *,
                  resume: bool = False, flag_below: float | None = None,
                  progress: Callable[[Progress], None] | None = None,
                  keep_failed: int = 10_000, csv_formulas: bool = False) -> RunSummary:
    """Score every input of ``paths`` with ``engine`` into ``output`` (.jsonl, .csv or .parquet).

    Parameters
    ----------
    paths : sequence of paths
        Files, folders (walked) and manifests (see :mod:`.inputs`).
    output : path
        Written as results come; per-series summaries after the slices. A CT
        Radiation Dose SR among the inputs is not a row: it is read into
        ``RunSummary.dose_reports``.
    engine : LocalEngine or RayEngine
    resume : bool
        Keep the rows already in ``output`` and score only inputs not in it
        (by path; rows are written file by file, so a path present is complete).
    flag_below : float, optional
        Threshold counted in each series summary.
    progress : callable(Progress), optional
        Called after each write.
    keep_failed : int
        At most this many failed rows of this run are returned for reporting.
    csv_formulas : bool
        ``.csv``: keep cells that start like a spreadsheet formula as they are
        (default: prefixed with ``'``, see :func:`deltaiqa_lite.output.write.neutralise_cell`).

    Returns
    -------
    RunSummary
    """
    writer = open_writer(output, resume=resume, csv_formulas=csv_formulas)
    done_paths = {path for path, _ in writer.done_keys()}
    total = count_inputs(paths)
    skipped = 0

    def duplicate(found: Duplicate) -> None:
        summary.n_duplicates += 1
        if len(summary.duplicates) < keep_failed:
            summary.duplicates.append(found)

    def todo():
        nonlocal skipped
        for entry in iter_inputs(paths, on_duplicate=duplicate):
            key = entry.path if isinstance(entry, InputError) else entry
            # Outputs hold the display form of a path (see deltaiqa_lite.read.names).
            if display_text(key) in done_paths:
                skipped += 1
                continue
            yield entry

    summary = RunSummary(output=str(output), engine=engine.name, files_total=total, files_skipped=0,
                         slices_written=0)
    start = time.perf_counter()
    files_done = 0
    try:
        for rows, files in engine.run(todo()):
            if done_paths:
                # Belt and braces: a row already in the output is never written twice.
                rows = [r for r in rows if display_text(r.path) not in done_paths]
            rows, reports = split_dose_reports(rows)
            summary.dose_reports.extend(reports[:max(0, keep_failed - len(summary.dose_reports))])
            writer.write(rows)
            files_done += files
            summary.slices_written += len(rows)
            for row in rows:
                if not row.ok and len(summary.failed_written) < keep_failed:
                    summary.failed_written.append(row)
            if progress is not None:
                progress(Progress(files_done + skipped, total, skipped, summary.slices_written,
                                  time.perf_counter() - start))
    except BaseException:
        writer.abort()
        raise
    summary.files_skipped = skipped
    summary.seconds = time.perf_counter() - start
    summary.series = writer.close(flag_below)
    return summary
