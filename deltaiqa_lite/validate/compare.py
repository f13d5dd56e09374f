"""Agreement of two models (or two providers) on the same slices.

Typical uses: the INT8 model against the FP32 model it was quantised from,
a site's retrained model against the shipped one, or one model on CPU
against the same model on another execution provider. Model B is compared
to model A: differences are ``score_b - score_a``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Sequence, TextIO

import numpy as np

from deltaiqa_lite.errors import DeltaIQAError
from deltaiqa_lite.validate.metrics import confusion_matrix, krocc, likert_class, plcc, srocc

__all__ = ["ModelSide", "SlicePair", "Comparison", "compare", "compare_results", "to_json", "write_table"]


@dataclass(frozen=True)
class ModelSide:
    """Which model (and provider) one side of the comparison is."""

    model: str
    model_path: str
    precision: str
    provider: str


@dataclass(frozen=True)
class SlicePair:
    """One slice scored by both models."""

    name: str
    score_a: float
    score_b: float
    likert_a: int
    likert_b: int

    @property
    def difference(self) -> float:
        return self.score_b - self.score_a


@dataclass
class Comparison:
    """Everything ``deltaiqa-lite compare`` reports."""

    a: ModelSide
    b: ModelSide
    n_inputs: int
    pairs: list[SlicePair]
    mean_abs_difference: float
    max_abs_difference: float
    max_difference_at: str
    mean_difference: float        # b - a: a systematic offset shows here
    class_agreement: float        # argmax classes equal
    rounded_agreement: float      # rounded scores equal
    plcc: float
    srocc: float
    krocc: float
    class_confusion: np.ndarray   # rows model A argmax class, columns model B
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (side, input, reason)


def compare_results(results_a: Sequence, results_b: Sequence, a: ModelSide, b: ModelSide) -> Comparison:
    """Compare two lists of slice results of the same inputs.

    Parameters
    ----------
    results_a, results_b : sequence of SliceResult
        ``Scorer.score_paths`` of the same paths by each model.
    a, b : ModelSide

    Returns
    -------
    Comparison

    Raises
    ------
    DeltaIQAError
        No slice was scored by both models.
    """
    by_name_b = {r.name: r for r in results_b}
    failed = [("A", r.name, r.error or "failed") for r in results_a if r.status != "ok"]
    failed += [("B", r.name, r.error or "failed") for r in results_b if r.status != "ok"]
    pairs = []
    for result_a in results_a:
        result_b = by_name_b.get(result_a.name)
        if result_a.status == "ok" and result_b is not None and result_b.status == "ok":
            pairs.append(SlicePair(result_a.name, float(result_a.score), float(result_b.score),
                                   int(result_a.likert), int(result_b.likert)))
    if not pairs:
        raise DeltaIQAError("no slice was scored by both models; nothing to compare")
    score_a = np.array([p.score_a for p in pairs])
    score_b = np.array([p.score_b for p in pairs])
    likert_a = np.array([p.likert_a for p in pairs])
    likert_b = np.array([p.likert_b for p in pairs])
    absolute = np.abs(score_b - score_a)
    worst = int(absolute.argmax())
    return Comparison(
        a=a, b=b, n_inputs=len({r.path for r in results_a}), pairs=pairs,
        mean_abs_difference=float(absolute.mean()), max_abs_difference=float(absolute[worst]),
        max_difference_at=pairs[worst].name, mean_difference=float(np.mean(score_b - score_a)),
        class_agreement=float(np.mean(likert_a == likert_b)),
        rounded_agreement=float(np.mean(likert_class(score_a) == likert_class(score_b))),
        plcc=plcc(score_a, score_b), srocc=srocc(score_a, score_b), krocc=krocc(score_a, score_b),
        class_confusion=confusion_matrix(likert_a, likert_b), failed=failed)


def compare(scorer_a, scorer_b, paths: Sequence[str | os.PathLike]) -> Comparison:
    """Score ``paths`` with both scorers and compare.

    Parameters
    ----------
    scorer_a, scorer_b : Scorer
    paths : sequence of path
        Files and folders.

    Returns
    -------
    Comparison
    """
    sides = [ModelSide(s.model_name, str(s.model_path), s.precision, s.provider)
             for s in (scorer_a, scorer_b)]
    return compare_results(scorer_a.score_paths(list(paths)), scorer_b.score_paths(list(paths)), *sides)


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def to_json(comparison: Comparison) -> dict:
    """The comparison as a JSON-ready dict (NaN written as null)."""
    from dataclasses import asdict

    from deltaiqa_lite._version import __version__

    c = comparison
    return {
        "tool": "deltaiqa-lite compare", "version": __version__,
        "model_a": asdict(c.a), "model_b": asdict(c.b),
        "counts": {"inputs": c.n_inputs, "compared_slices": len(c.pairs), "failed": len(c.failed)},
        "difference": "score_b - score_a",
        "mean_abs_difference": c.mean_abs_difference, "max_abs_difference": c.max_abs_difference,
        "max_difference_at": c.max_difference_at, "mean_difference": c.mean_difference,
        "class_agreement": c.class_agreement, "rounded_score_agreement": c.rounded_agreement,
        "plcc": _number(c.plcc), "srocc": _number(c.srocc), "krocc": _number(c.krocc),
        "class_confusion": {"rows": "model A argmax class", "columns": "model B argmax class",
                            "counts": c.class_confusion.tolist()},
        "failed": [{"model": side, "input": name, "error": error} for side, name, error in c.failed],
        "slices": [{"input": p.name, "score_a": p.score_a, "score_b": p.score_b,
                    "likert_a": p.likert_a, "likert_b": p.likert_b, "difference": p.difference}
                   for p in c.pairs],
    }


def _fmt(value: float, digits: int = 4) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"


def write_table(stream: TextIO, comparison: Comparison) -> None:
    """Human-readable comparison."""
    c = comparison
    write = stream.write
    write(f"# A: {c.a.model} ({c.a.model_path}), provider {c.a.provider}\n")
    write(f"# B: {c.b.model} ({c.b.model_path}), provider {c.b.provider}\n")
    write(f"inputs {c.n_inputs}  slices compared {len(c.pairs)}  failed {len(c.failed)}\n\n")
    write(f"{'mean |B - A|':<26} {_fmt(c.mean_abs_difference)}\n")
    write(f"{'max |B - A|':<26} {_fmt(c.max_abs_difference)}  ({c.max_difference_at})\n")
    write(f"{'mean B - A':<26} {_fmt(c.mean_difference)}\n")
    write(f"{'class agreement (argmax)':<26} {_fmt(c.class_agreement, 3)}\n")
    write(f"{'rounded score agreement':<26} {_fmt(c.rounded_agreement, 3)}\n")
    write(f"{'PLCC':<26} {_fmt(c.plcc)}\n{'SROCC':<26} {_fmt(c.srocc)}\n{'KROCC':<26} {_fmt(c.krocc)}\n")
    write("\nargmax classes (rows: A, columns: B)\n")
    write("      " + "".join(f"{k:>6}" for k in range(c.class_confusion.shape[0])) + "\n")
    for k, row in enumerate(c.class_confusion):
        write(f"{k:>6}" + "".join(f"{int(v):>6}" for v in row) + "\n")
    if c.failed:
        write(f"\nfailed ({len(c.failed)}):\n")
        for side, _name, error in c.failed:
            write(f"  model {side}: {error}\n")
