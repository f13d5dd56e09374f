"""Streaming result writers, chosen by the output's extension, with resume.

Rows are written as they come, with the fields of ``score --format jsonl``
(:func:`deltaiqa_lite.output.write.slice_record`) or ``--format csv``
(:func:`deltaiqa_lite.output.write.csv_row`), so nothing is kept in memory. Every
``write`` call holds whole files (all slices of a multi-frame file go in one
call) and is flushed before it returns, so an interrupted run leaves whole
files behind and ``--resume`` can skip by path.

When the slices are done, :meth:`ResultWriter.close` reads the written rows
back and appends the per-series summaries: after the slice rows in ``.jsonl``
(``"type": "series"`` lines), beside the file for the tabular formats
(``NAME.series.csv``, ``NAME.series.parquet``). The summaries therefore count
every row in the file, including those written by an earlier, interrupted run.

Parquet cannot be appended to, and a writer killed before its footer leaves
an unreadable file; so rows go to complete part files (written to a temporary
name, then renamed) in ``NAME.parquet.parts/``, and ``close`` merges them
into ``NAME.parquet`` row group by row group.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
import types
import typing
from array import array
from dataclasses import fields
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from deltaiqa_lite.errors import DeltaIQAError
from deltaiqa_lite.score import SeriesResult, SliceResult, summarise_scores
from deltaiqa_lite.output.write import (CSV_COLUMNS, SERIES_KEYS, csv_row, neutralise_cell, restore_cell,
                                        series_record, slice_record)

__all__ = ["OUTPUT_SUFFIXES", "ResultWriter", "open_writer", "summarise_rows", "series_path",
           "Key", "RAY_EXTRA_HINT"]

OUTPUT_SUFFIXES = (".jsonl", ".csv", ".parquet")
RAY_EXTRA_HINT = "pip install 'deltaiqa-lite[ray]'"
Key = tuple[str, "int | None"]
# (series_uid, ok, score) of one written row: all the summaries need.
Row = tuple["str | None", bool, "float | None"]


def series_path(output: Path) -> Path:
    """Where the series summaries of a tabular output go: ``NAME.series.EXT``."""
    return output.with_name(f"{output.stem}.series{output.suffix}")


class ResultWriter:
    """Base of the streaming writers: ``done_keys``, ``write``, ``close``, ``abort``.

    Parameters
    ----------
    path : path
        The output file.
    resume : bool
        Keep what an earlier run wrote (dropping an incomplete last row and old
        summaries) and append; otherwise start the file afresh.
    """

    suffix = ""

    def __init__(self, path: str | os.PathLike, *, resume: bool = False) -> None:
        self.path = Path(path)
        self.resume = resume
        self.done: set[Key] = set()
        self.rows_written = 0

    def done_keys(self) -> set[Key]:
        """(path, frame) of every slice row already in the output (empty unless resuming)."""
        return self.done

    def write(self, results: Sequence[SliceResult]) -> None:
        """Append rows (whole files) and flush them."""
        raise NotImplementedError

    def rows(self) -> Iterator[Row]:
        """(series_uid, ok, score) of every slice row in the output, in file order."""
        raise NotImplementedError

    def abort(self) -> None:
        """Close after an interruption: rows so far stay, no summaries."""

    def close(self, flag_below: float | None = None) -> list[SeriesResult]:
        """Finish the slices, then write and return the per-series summaries."""
        raise NotImplementedError


def _frame(value) -> int | None:
    if value is None or value == "":
        return None
    return int(value)


# -- JSON Lines ------------------------------------------------------------------

class JsonlWriter(ResultWriter):
    """``{"type": "slice", ...}`` lines, then ``{"type": "series", ...}`` lines."""

    suffix = ".jsonl"

    def __init__(self, path: str | os.PathLike, *, resume: bool = False) -> None:
        super().__init__(path, resume=resume)
        if resume and self.path.is_file():
            self._scan_and_trim()
            self.stream = open(self.path, "a", encoding="utf-8")
        else:
            self.stream = open(self.path, "w", encoding="utf-8")

    def _scan_and_trim(self) -> None:
        keep = 0
        with open(self.path, "rb") as stream:
            for line in stream:
                # An incomplete last line (the run died mid-write) or the old
                # summaries end what we keep: both are written again.
                if not line.endswith(b"\n"):
                    break
                try:
                    record = json.loads(line)
                except ValueError:
                    raise DeltaIQAError(f"{self.path}: line at byte {keep} is not JSON; "
                                        "cannot resume into this file") from None
                if record.get("type") != "slice":
                    break
                self.done.add((record["path"], _frame(record.get("frame"))))
                keep += len(line)
        os.truncate(self.path, keep)

    def write(self, results: Sequence[SliceResult]) -> None:
        if results:
            self.stream.write("".join(json.dumps({"type": "slice", **slice_record(r)}) + "\n"
                                      for r in results))
            self.stream.flush()
            self.rows_written += len(results)

    def rows(self) -> Iterator[Row]:
        with open(self.path, encoding="utf-8") as stream:
            for line in stream:
                record = json.loads(line)
                if record.get("type") == "slice":
                    yield record.get("series_uid"), record.get("status") == "ok", record.get("score")

    def abort(self) -> None:
        self.stream.close()

    def close(self, flag_below: float | None = None) -> list[SeriesResult]:
        self.stream.close()
        summaries = summarise_rows(self.rows(), flag_below, spill_dir=self.path.parent)
        with open(self.path, "a", encoding="utf-8") as stream:
            for summary in summaries:
                stream.write(json.dumps({"type": "series", **series_record(summary)}) + "\n")
        return summaries


# -- CSV -----------------------------------------------------------------------

class CsvWriter(ResultWriter):
    """The columns of ``score --format csv``; summaries in ``NAME.series.csv``."""

    suffix = ".csv"

    def __init__(self, path: str | os.PathLike, *, resume: bool = False, neutralise: bool = True) -> None:
        super().__init__(path, resume=resume)
        # Formula-like text cells get a leading ' (output.write.neutralise_cell); resume
        # reads paths back through restore_cell, so a run must keep one setting.
        self.neutralise = neutralise
        fresh = not (resume and self.path.is_file() and self.path.stat().st_size > 0)
        if not fresh:
            self._scan_and_trim()
        self.stream = open(self.path, "w" if fresh else "a", encoding="utf-8", newline="")
        self.writer = csv.DictWriter(self.stream, fieldnames=CSV_COLUMNS, lineterminator="\n")
        if fresh:
            self.writer.writeheader()
            self.stream.flush()

    def _scan_and_trim(self) -> None:
        with open(self.path, "rb") as stream:
            data_end = 0
            header = stream.readline()
            if not header.endswith(b"\n"):
                os.truncate(self.path, 0)  # not even a whole header: start afresh below
                return
            columns = next(csv.reader([header.decode("utf-8")]))
            if columns != CSV_COLUMNS:
                raise DeltaIQAError(f"{self.path}: columns {columns} differ from this version's "
                                    f"{CSV_COLUMNS}; cannot resume into this file")
            data_end = len(header)
            pending = b""
            for line in stream:
                if not line.endswith(b"\n"):
                    break
                # A quoted field may hold newlines (a path can): a row ends at a newline
                # outside quotes, i.e. once its double quotes are balanced.
                pending += line
                if pending.count(b'"') % 2:
                    continue
                row = next(csv.reader(io.StringIO(pending.decode("utf-8"), newline="")))
                if len(row) != len(CSV_COLUMNS):
                    raise DeltaIQAError(f"{self.path}: row at byte {data_end} has {len(row)} "
                                        f"fields, not {len(CSV_COLUMNS)}; cannot resume into "
                                        "this file")
                record = dict(zip(CSV_COLUMNS, row))
                path = restore_cell(record["path"]) if self.neutralise else record["path"]
                self.done.add((path, _frame(record["frame"])))
                data_end += len(pending)
                pending = b""
        os.truncate(self.path, data_end)

    def write(self, results: Sequence[SliceResult]) -> None:
        if results:
            self.writer.writerows(csv_row(r, neutralise=self.neutralise) for r in results)
            self.stream.flush()
            self.rows_written += len(results)

    def rows(self) -> Iterator[Row]:
        with open(self.path, encoding="utf-8", newline="") as stream:
            for record in csv.DictReader(stream):
                score = record.get("score")
                yield (record.get("series_uid") or None, record.get("status") == "ok",
                       float(score) if score else None)

    def abort(self) -> None:
        self.stream.close()

    def close(self, flag_below: float | None = None) -> list[SeriesResult]:
        self.stream.close()
        summaries = summarise_rows(self.rows(), flag_below, spill_dir=self.path.parent)
        with open(series_path(self.path), "w", encoding="utf-8", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=SERIES_KEYS, lineterminator="\n")
            writer.writeheader()
            for summary in summaries:
                record = series_record(summary)
                cells = {k: ("" if record.get(k) is None else record[k]) for k in SERIES_KEYS}
                if self.neutralise:
                    cells = {k: neutralise_cell(v) if isinstance(v, str) else v for k, v in cells.items()}
                writer.writerow(cells)
        return summaries


# -- Parquet -------------------------------------------------------------------

def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise DeltaIQAError(f"writing .parquet needs pyarrow: {RAY_EXTRA_HINT}") from None
    return pyarrow


_SIMPLE_TYPES = (float, int, str, bool)


def _hint_kind(hint) -> object:
    """The type inside ``X | None``; other hints (``list[str]``, ``tuple[...]``) as they are."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if args else hint
    return hint


def _arrow_type(pa, hint) -> object:
    # SliceResult's fields are Optional scalars or a tuple of floats; other
    # helpers may add fields, so map from the type hints rather than a list.
    kind = _hint_kind(hint)
    origin = typing.get_origin(kind)
    scalars = {float: pa.float64(), int: pa.int64(), str: pa.string(), bool: pa.bool_()}
    if origin is tuple or kind is tuple or origin is list or kind is list:
        # tuple[float, ...] (probabilities) or list[str] (physics flags): a list of the element type
        element = next(iter(typing.get_args(kind)), float)
        return pa.list_(scalars.get(element, pa.string()))
    return scalars.get(kind, pa.string())


def _json_columns() -> set[str]:
    """Fields of a type Arrow gets as text: their values are written as JSON."""
    hints = typing.get_type_hints(SliceResult)
    json_columns = set()
    for f in fields(SliceResult):
        kind = _hint_kind(hints[f.name])
        if kind not in _SIMPLE_TYPES and typing.get_origin(kind) not in (tuple, list) and kind not in (tuple, list):
            json_columns.add(f.name)
    return json_columns


def slice_schema():
    """The Arrow schema of a slice row, from :class:`SliceResult`'s fields and type hints."""
    pa = _pyarrow()
    hints = typing.get_type_hints(SliceResult)
    return pa.schema([(f.name, _arrow_type(pa, hints[f.name])) for f in fields(SliceResult)])


class ParquetWriter(ResultWriter):
    """Row groups of ``row_group_rows`` rows in part files, merged into one file by ``close``.

    Parameters
    ----------
    row_group_rows : int, default 10000
        Rows per part file (and row group): at most this many rows are
        scored again after a hard kill.
    """

    suffix = ".parquet"

    def __init__(self, path: str | os.PathLike, *, resume: bool = False, row_group_rows: int = 10_000) -> None:
        super().__init__(path, resume=resume)
        self.pa = _pyarrow()
        self.schema = slice_schema()
        self.json_columns = _json_columns()
        self.row_group_rows = int(row_group_rows)
        self.parts = self.path.with_name(self.path.name + ".parts")
        self.buffer: list[dict] = []
        if not resume:
            shutil.rmtree(self.parts, ignore_errors=True)
            # A fresh run replaces the output, as the text formats do; an old file left
            # beside new parts would otherwise pass for a finished run on --resume.
            self.path.unlink(missing_ok=True)
        self.parts.mkdir(parents=True, exist_ok=True)
        if resume:
            if self.path.is_file():
                # A finished run: its file becomes the first part, merged again at close.
                # Parts still beside it are already inside it (close writes the file from
                # every part before it removes them; a kill between the two leaves both):
                # they go first, or their rows would be written twice.
                for stale in self.parts.iterdir():
                    stale.unlink()
                self.path.replace(self.parts / "part-000000-merged.parquet")
            self._scan_parts()
        self.next_part = len(self._part_files())

    def _part_files(self) -> list[Path]:
        return sorted(p for p in self.parts.glob("part-*.parquet"))

    def _scan_parts(self) -> None:
        import pyarrow.parquet as pq
        for part in self._part_files():
            try:
                table = pq.read_table(part, columns=["path", "frame"])
            except Exception as error:  # noqa: BLE001 - a broken part is dropped and scored again
                raise DeltaIQAError(f"{part}: unreadable part file ({error}); delete it to resume") from None
            for path, frame in zip(table.column("path").to_pylist(), table.column("frame").to_pylist()):
                self.done.add((path, frame))

    def _flush(self) -> None:
        if not self.buffer:
            return
        import pyarrow.parquet as pq
        table = self.pa.Table.from_pylist(self.buffer, schema=self.schema)
        final = self.parts / f"part-{self.next_part:06d}.parquet"
        temporary = final.with_suffix(".tmp")
        pq.write_table(table, temporary)
        temporary.replace(final)  # a part exists complete or not at all
        self.next_part += 1
        self.buffer = []

    def _record(self, result: SliceResult) -> dict:
        record = slice_record(result)
        for name in self.json_columns:
            if record[name] is not None:
                record[name] = json.dumps(record[name])
        return record

    def write(self, results: Sequence[SliceResult]) -> None:
        self.buffer.extend(self._record(r) for r in results)
        self.rows_written += len(results)
        if len(self.buffer) >= self.row_group_rows:
            self._flush()

    def abort(self) -> None:
        self._flush()

    def rows(self) -> Iterator[Row]:
        import pyarrow.parquet as pq
        for batch in pq.ParquetFile(self.path).iter_batches(columns=["series_uid", "status", "score"]):
            for uid, status, score in zip(*(batch.column(i).to_pylist() for i in range(3))):
                yield uid, status == "ok", score

    def close(self, flag_below: float | None = None) -> list[SeriesResult]:
        import pyarrow.parquet as pq
        self._flush()
        temporary = self.path.with_name(self.path.name + ".tmp")
        with pq.ParquetWriter(temporary, self.schema) as writer:
            for part in self._part_files():
                source = pq.ParquetFile(part)
                for group in range(source.num_row_groups):
                    writer.write_table(source.read_row_group(group).cast(self.schema))
        temporary.replace(self.path)
        shutil.rmtree(self.parts, ignore_errors=True)
        summaries = summarise_rows(self.rows(), flag_below, spill_dir=self.path.parent)
        records = [series_record(s) for s in summaries]
        columns = {key: [r[key] for r in records] for key in SERIES_KEYS}
        types = {"series_uid": self.pa.string(), "n_slices": self.pa.int64(), "n_ok": self.pa.int64(),
                 "n_failed": self.pa.int64(), "n_below": self.pa.int64()}
        table = self.pa.table({k: self.pa.array(v, type=types.get(k, self.pa.float64()))
                               for k, v in columns.items()})
        pq.write_table(table, series_path(self.path))
        return summaries


WRITERS = {".jsonl": JsonlWriter, ".csv": CsvWriter, ".parquet": ParquetWriter}


def open_writer(path: str | os.PathLike, *, resume: bool = False, csv_formulas: bool = False) -> ResultWriter:
    """The streaming writer for ``path``'s extension (``.jsonl``, ``.csv`` or ``.parquet``).

    ``csv_formulas`` keeps formula-like CSV cells as they are (default: neutralised).

    Raises
    ------
    DeltaIQAError
        Another extension, or (resuming) a file this version cannot continue.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in WRITERS:
        raise DeltaIQAError(f"{path}: output extension '{suffix}' is not one of {', '.join(OUTPUT_SUFFIXES)}")
    if suffix == ".csv":
        return CsvWriter(path, resume=resume, neutralise=not csv_formulas)
    return WRITERS[suffix](path, resume=resume)


# -- summaries from written rows -------------------------------------------------

_SPILL_BUCKETS = 64
_PAIR = np.dtype([("series", "<i8"), ("score", "<f8")])


def summarise_rows(rows: Iterable[Row], flag_below: float | None = None, *,
                   spill_dir: str | os.PathLike | None = None,
                   max_in_memory: int = 4_000_000) -> list[SeriesResult]:
    """Per-series summaries of written rows, series in order of first row, no UID last.

    Memory: per series a few counters; the scores themselves (8 bytes each)
    stay in memory up to ``max_in_memory`` of them, beyond that they go to
    temporary bucket files by series and each bucket is summarised alone, so
    10^8 rows need no more memory than the largest bucket.
    """
    order: dict[str | None, int] = {}
    counts: list[int] = []
    scores: dict[int, array] = {}
    held = 0
    spill: tempfile.TemporaryDirectory | None = None
    buckets: list[io.BufferedWriter] = []

    def spill_out() -> None:
        for index, values in scores.items():
            pairs = np.empty(len(values), dtype=_PAIR)
            pairs["series"], pairs["score"] = index, np.frombuffer(values, dtype=np.float64)
            buckets[index % _SPILL_BUCKETS].write(pairs.tobytes())
        scores.clear()

    for uid, ok, score in rows:
        index = order.setdefault(uid, len(order))
        if index == len(counts):
            counts.append(0)
        counts[index] += 1
        if ok and score is not None:
            scores.setdefault(index, array("d")).append(float(score))
            held += 1
            if held >= max_in_memory:
                if spill is None:
                    spill = tempfile.TemporaryDirectory(prefix="deltaiqa-summary-", dir=spill_dir)
                    buckets = [open(Path(spill.name) / f"{b:02d}.bin", "wb") for b in range(_SPILL_BUCKETS)]
                spill_out()
                held = 0

    uids = list(order)
    summaries: dict[int, SeriesResult] = {}
    if spill is None:
        for index, uid in enumerate(uids):
            summaries[index] = summarise_scores(uid, scores.get(index, array("d")), counts[index], flag_below)
    else:
        spill_out()
        for bucket in buckets:
            bucket.close()
        try:
            for bucket in range(_SPILL_BUCKETS):
                pairs = np.fromfile(Path(spill.name) / f"{bucket:02d}.bin", dtype=_PAIR)
                pairs = pairs[np.argsort(pairs["series"], kind="stable")]
                starts = np.flatnonzero(np.diff(pairs["series"], prepend=-1))
                for start, stop in zip(starts, list(starts[1:]) + [len(pairs)]):
                    index = int(pairs["series"][start])
                    summaries[index] = summarise_scores(uids[index], pairs["score"][start:stop],
                                                        counts[index], flag_below)
        finally:
            spill.cleanup()
        for index, uid in enumerate(uids):  # series with no ok score never reached a bucket
            if index not in summaries:
                summaries[index] = summarise_scores(uid, [], counts[index], flag_below)
    ordered = [summaries[i] for i in range(len(uids)) if uids[i] is not None]
    if None in order:
        ordered.append(summaries[order[None]])
    return ordered
