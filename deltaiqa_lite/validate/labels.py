"""Reference quality scores (e.g. radiologists' means) and matching them to inputs.

Three formats are read:

- LDCTIQAC flat JSON, one score per file: ``{"0000.tif": 2.8, ...}``
  (train.json, test.json);
- LDCTIQAC stacked JSON, one score per page of a multi-page TIFF:
  ``{"valid_0.tif": {"scores": [2.4, 3.0, ...]}, ...}`` (ground-truth.json);
  page ``i`` of the file gets ``scores[i]``;
- CSV with a header: ``file,score`` or ``file,frame,score`` (frame = page of a
  TIFF or frame of a multi-frame DICOM, counted from 0).

Labels are matched to inputs by file *name* (the last path component), so a
label file written on another machine with other folders still applies.
Two inputs with the same name would make that ambiguous, and are refused.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from deltaiqa_lite.errors import DeltaIQAError

__all__ = ["LabelError", "LabelKey", "ReferenceLabels", "Match", "read_labels", "match_labels"]

SCORE_RANGE = (0.0, 4.0)


class LabelError(DeltaIQAError):
    """A label file cannot be read or does not follow one of the supported formats."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class LabelKey:
    """Which slice a label is for: a file name and, for stacks, the frame (page) from 0."""

    name: str
    frame: int | None = None

    def __str__(self) -> str:
        return self.name if self.frame is None else f"{self.name}[{self.frame}]"


@dataclass(frozen=True)
class ReferenceLabels:
    """Reference scores read from one label file, keyed by file name and frame."""

    source: str
    format: str  # "json-flat" | "json-stacked" | "csv"
    scores: dict[LabelKey, float]

    def __len__(self) -> int:
        return len(self.scores)


def _file_name(key: str) -> str:
    # Label files made on Windows carry backslashes; take the last component either way.
    return PureWindowsPath(PurePosixPath(key).name).name


def _score(source: str, where: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise LabelError(source, f"{where}: score {value!r} is not a number")
    try:
        score = float(value)
    except ValueError:
        raise LabelError(source, f"{where}: score {value!r} is not a number") from None
    if not math.isfinite(score) or not SCORE_RANGE[0] <= score <= SCORE_RANGE[1]:
        raise LabelError(source, f"{where}: score {value!r} is outside the Likert range 0..4")
    return score


def _add(source: str, scores: dict[LabelKey, float], key: LabelKey, score: float) -> None:
    if key in scores:
        raise LabelError(source, f"{key} is labelled twice (labels are matched by file name)")
    scores[key] = score


def _read_json(source: str, text: str) -> ReferenceLabels:
    try:
        content = json.loads(text)
    except json.JSONDecodeError as error:
        raise LabelError(source, f"not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(content, dict) or not content:
        raise LabelError(source, "expected a JSON object of file name -> score "
                                 "(LDCTIQAC train.json) or -> {\"scores\": [...]} "
                                 "(LDCTIQAC ground-truth.json)")
    scores: dict[LabelKey, float] = {}
    kinds = set()
    for key, value in content.items():
        name = _file_name(key)
        if isinstance(value, dict):
            kinds.add("json-stacked")
            pages = value.get("scores")
            if not isinstance(pages, list) or not pages:
                raise LabelError(source, f"{key!r}: expected {{\"scores\": [one score per page]}}")
            for frame, page_score in enumerate(pages):
                _add(source, scores, LabelKey(name, frame),
                     _score(source, f"{key!r} scores[{frame}]", page_score))
        else:
            kinds.add("json-flat")
            _add(source, scores, LabelKey(name, None), _score(source, repr(key), value))
    label_format = kinds.pop() if len(kinds) == 1 else "json-mixed"
    return ReferenceLabels(source, label_format, scores)


def _read_csv(source: str, text: str) -> ReferenceLabels:
    rows = [row for row in csv.reader(text.splitlines()) if row and any(c.strip() for c in row)]
    if not rows:
        raise LabelError(source, "CSV has no rows; expected a header 'file,score'")
    header = [c.strip().lower() for c in rows[0]]
    if "file" not in header or "score" not in header:
        raise LabelError(source, f"CSV header is {','.join(rows[0])!r}; expected 'file,score' "
                                 "or 'file,frame,score'")
    file_col, score_col = header.index("file"), header.index("score")
    frame_col = header.index("frame") if "frame" in header else None
    scores: dict[LabelKey, float] = {}
    for line_number, row in enumerate(rows[1:], start=2):
        where = f"line {line_number}"
        if len(row) < len(header):
            raise LabelError(source, f"{where}: expected {len(header)} columns, found {len(row)}")
        frame = None
        if frame_col is not None and row[frame_col].strip():
            try:
                frame = int(row[frame_col])
            except ValueError:
                raise LabelError(source, f"{where}: frame {row[frame_col]!r} is not an integer") \
                    from None
            if frame < 0:
                raise LabelError(source, f"{where}: frame {frame} is negative")
        name = _file_name(row[file_col].strip())
        if not name:
            raise LabelError(source, f"{where}: empty file name")
        _add(source, scores, LabelKey(name, frame), _score(source, where, row[score_col].strip()))
    if not scores:
        raise LabelError(source, "CSV has a header but no labels")
    return ReferenceLabels(source, "csv", scores)


def read_labels(path: str | os.PathLike) -> ReferenceLabels:
    """Read a label file (LDCTIQAC JSON, flat or stacked, or CSV).

    Parameters
    ----------
    path : str or os.PathLike
        ``.json`` or ``.csv`` file.

    Returns
    -------
    ReferenceLabels

    Raises
    ------
    LabelError
        The file is missing, malformed, names a file twice, or holds a score
        that is not a number in 0..4; the message names the file and the entry.
    """
    source = str(path)
    file_path = Path(path)
    if not file_path.is_file():
        raise LabelError(source, "no such label file")
    try:
        text = file_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise LabelError(source, f"cannot read label file ({error})") from None
    suffix = file_path.suffix.lower()
    if suffix == ".json":
        return _read_json(source, text)
    if suffix == ".csv":
        return _read_csv(source, text)
    raise LabelError(source, f"unknown label format {suffix!r}; expected .json (LDCTIQAC) or .csv")


@dataclass(frozen=True)
class Match:
    """Inputs paired with labels, and everything left over on either side.

    ``pairs`` maps an input index (position in the list given to
    :func:`match_labels`) to its label key; ``unlabelled`` lists inputs with no
    label; ``unused`` lists labels that no input matched.
    """

    pairs: dict[int, LabelKey]
    unlabelled: list[int] = field(default_factory=list)
    unused: list[LabelKey] = field(default_factory=list)


def match_labels(inputs: list[tuple[str, int | None]], labels: ReferenceLabels) -> Match:
    """Pair inputs (path, frame) with labels by file name and frame.

    A label without a frame (flat JSON, CSV without frame) applies to a
    single-slice file; for a file that yields several frames it matches none
    of them, since one score cannot say which page it was given for.

    Parameters
    ----------
    inputs : list of (str, int or None)
        Path and frame of every scored slice, in report order.
    labels : ReferenceLabels

    Returns
    -------
    Match

    Raises
    ------
    LabelError
        Two different input files share a file name, so matching by name
        would be ambiguous.
    """
    paths_by_name: dict[str, str] = {}
    frames_by_path: dict[str, int] = {}
    for path, _frame in inputs:
        name = _file_name(path)
        if paths_by_name.setdefault(name, path) != path:
            raise LabelError(labels.source, f"inputs {paths_by_name[name]} and {path} share the "
                                            f"file name {name!r}; labels are matched by file "
                                            "name, so score them in separate runs")
        frames_by_path[path] = frames_by_path.get(path, 0) + 1
    pairs: dict[int, LabelKey] = {}
    unlabelled: list[int] = []
    used: set[LabelKey] = set()
    for index, (path, frame) in enumerate(inputs):
        name = _file_name(path)
        candidates = [LabelKey(name, frame)]
        if frames_by_path[path] == 1:
            # A single-slice file may be labelled with or without a frame index.
            candidates += [LabelKey(name, None), LabelKey(name, 0)]
        key = next((k for k in candidates if k in labels.scores), None)
        if key is None:
            unlabelled.append(index)
        else:
            pairs[index] = key
            used.add(key)
    unused = sorted((key for key in labels.scores if key not in used),
                    key=lambda k: (k.name, -1 if k.frame is None else k.frame))
    return Match(pairs, unlabelled, unused)
