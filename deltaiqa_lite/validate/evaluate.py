"""Local validation: score a site's images and compare with its reference scores.

The original Delta-IQA README asks every site to validate the model on its
own images before use. :func:`evaluate` scores the inputs, pairs them with
the reference labels (:mod:`deltaiqa_lite.validate.labels`), and reports the
challenge's correlations and the original's class figures
(:mod:`deltaiqa_lite.validate.metrics`), listing every input that could not be scored
or had no label and every label that matched no input.

Physics baseline: the same correlations for ``noise_score`` (the simulator's
label rule applied to the measured global noise level, docs/physics.md)
against the labels, and the network's on the very same slices, so a site sees
what the network adds over a noise measurement (the challenge's SNR baseline
summed to 2.40).
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence, TextIO

import numpy as np

from deltaiqa_lite.errors import DeltaIQAError
from deltaiqa_lite.validate.labels import ReferenceLabels, match_labels
from deltaiqa_lite.validate.metrics import (DEFAULT_BOOTSTRAP_RESAMPLES, DEFAULT_BOOTSTRAP_SEED, SCALAR_METRICS,
                                   Agreement, agreement, krocc, likert_class, plcc, srocc)

__all__ = ["PairedSlice", "Evaluation", "PhysicsBaseline", "physics_baseline", "evaluate", "evaluate_results", "write_table", "to_json",
           "write_outputs"]

# Below this many labelled slices the table says the figures are rough: a
# bootstrap of a handful of slices spans nearly the whole -1..1 range.
SMALL_SAMPLE = 30
_METRIC_NAMES = {"plcc": "PLCC", "srocc": "SROCC", "krocc": "KROCC",
                 "correlation_sum": "PLCC+SROCC+KROCC", "accuracy": "accuracy (rounded)",
                 "mae": "MAE"}


@dataclass(frozen=True)
class PairedSlice:
    """One scored slice with its reference score."""

    path: str
    frame: int | None
    score: float
    likert: int
    reference: float
    label_key: str
    noise_score: float | None = None
    physics_note: str | None = None

    @property
    def name(self) -> str:
        return self.path if self.frame is None else f"{self.path}[{self.frame}]"


@dataclass(frozen=True)
class PhysicsBaseline:
    """PLCC/SROCC/KROCC of ``noise_score`` against the labels, and of the network on the same slices.

    ``n`` slices have a noise score, ``n_missing`` do not (``reason``: the
    first physics note among them, or why no correlation could be computed).
    """

    n: int
    n_missing: int
    plcc: float | None = None
    srocc: float | None = None
    krocc: float | None = None
    correlation_sum: float | None = None
    network_plcc: float | None = None
    network_srocc: float | None = None
    network_krocc: float | None = None
    network_correlation_sum: float | None = None
    reason: str | None = None


def physics_baseline(pairs: Sequence[PairedSlice]) -> PhysicsBaseline:
    """Correlations of the physics baseline (``noise_score``) and of the network on the same slices."""
    have = [p for p in pairs if p.noise_score is not None]
    missing = [p for p in pairs if p.noise_score is None]
    reason = next((p.physics_note for p in missing if p.physics_note), None)
    if len(have) < 3:
        return PhysicsBaseline(len(have), len(missing), reason=(
            f"{len(have)} labelled slices with a noise level; at least 3 needed"
            + (f" ({reason})" if reason else "")))
    reference = np.array([p.reference for p in have])
    figures = {}
    for prefix, values in (("", np.array([p.noise_score for p in have])),
                           ("network_", np.array([p.score for p in have]))):
        found = {"plcc": plcc(values, reference), "srocc": srocc(values, reference),
                 "krocc": krocc(values, reference)}
        found = {k: (float(v) if math.isfinite(v) else None) for k, v in found.items()}
        total = (sum(found.values()) if all(v is not None for v in found.values()) else None)
        figures |= {f"{prefix}{k}": v for k, v in found.items()} | {f"{prefix}correlation_sum": total}
    return PhysicsBaseline(len(have), len(missing), reason=reason, **figures)


@dataclass
class Evaluation:
    """Everything ``deltaiqa-lite evaluate`` reports."""

    model: str
    model_path: str
    precision: str
    provider: str
    labels_source: str
    labels_format: str
    n_inputs: int
    pairs: list[PairedSlice]
    agreement: Agreement
    class_labels: list[str]
    unlabelled: list[str] = field(default_factory=list)   # scored inputs with no label
    unused_labels: list[str] = field(default_factory=list)  # labels of no scored input (failed ones too)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input, reason)
    physics: PhysicsBaseline | None = None


def evaluate_results(results: Sequence, labels: ReferenceLabels, *, model: str, model_path: str,
                     precision: str, provider: str, class_labels: Sequence[str],
                     resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES,
                     seed: int = DEFAULT_BOOTSTRAP_SEED) -> Evaluation:
    """Pair slice results with labels and compute the agreement.

    Parameters
    ----------
    results : sequence of SliceResult
        As returned by ``Scorer.score_paths`` (errors included).
    labels : ReferenceLabels
    model, model_path, precision, provider : str
        What scored them, for the report.
    class_labels : sequence of str
    resamples, seed : int
        Bootstrap settings (``resamples=0`` skips the intervals).

    Returns
    -------
    Evaluation

    Raises
    ------
    DeltaIQAError
        No scored slice matched a label, so there is nothing to evaluate.
    LabelError
        Two inputs share a file name.
    """
    scored = [r for r in results if r.status == "ok"]
    failed = [(r.name, r.error or "failed") for r in results if r.status != "ok"]
    match = match_labels([(r.path, r.frame) for r in scored], labels)
    pairs = []
    for index, key in sorted(match.pairs.items()):
        result = scored[index]
        pairs.append(PairedSlice(path=result.path, frame=result.frame, score=float(result.score),
                                 likert=int(result.likert), reference=labels.scores[key],
                                 label_key=str(key), noise_score=getattr(result, "noise_score", None),
                                 physics_note=getattr(result, "physics_note", None)))
    if not pairs:
        examples = ", ".join(str(k) for k in list(labels.scores)[:3])
        raise DeltaIQAError(f"{labels.source}: no scored input matched a label (labels are matched by "
                            f"file name, e.g. {examples}; {len(scored)} inputs scored, "
                            f"{len(failed)} failed)")
    result_agreement = agreement(
        np.array([p.score for p in pairs]), np.array([p.reference for p in pairs]),
        predicted_classes=np.array([p.likert for p in pairs]), resamples=resamples, seed=seed)
    return Evaluation(
        model=model, model_path=model_path, precision=precision, provider=provider,
        labels_source=labels.source, labels_format=labels.format, n_inputs=len(results),
        pairs=pairs, agreement=result_agreement, class_labels=list(class_labels),
        unlabelled=[scored[i].name for i in match.unlabelled],
        unused_labels=[str(k) for k in match.unused], failed=failed, physics=physics_baseline(pairs))


def evaluate(scorer, paths: Sequence[str | os.PathLike], labels: ReferenceLabels, *,
             resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES, seed: int = DEFAULT_BOOTSTRAP_SEED,
             progress=None) -> Evaluation:
    """Score ``paths`` with ``scorer`` and evaluate against ``labels``.

    Parameters
    ----------
    scorer : Scorer
    paths : sequence of path
        Files and folders (walked recursively).
    labels : ReferenceLabels
    resamples, seed : int
        Bootstrap settings.
    progress : callable(done, total), optional
        Passed to ``Scorer.score_paths``.

    Returns
    -------
    Evaluation
    """
    results = scorer.score_paths(list(paths), progress=progress)
    return evaluate_results(results, labels, model=scorer.model_name, model_path=str(scorer.model_path),
                            precision=scorer.precision, provider=scorer.provider,
                            class_labels=scorer.class_labels, resamples=resamples, seed=seed)


# -- output ------------------------------------------------------------------

def _number(value: float | None) -> float | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return float(value)


def to_json(evaluation: Evaluation) -> dict:
    """The report as a JSON-ready dict (NaN written as null)."""
    from deltaiqa_lite._version import __version__

    a = evaluation.agreement
    metrics = {}
    for name in SCALAR_METRICS:
        entry = {"value": _number(getattr(a, name))}
        if name in a.intervals:
            entry["ci_low"] = _number(a.intervals[name].low)
            entry["ci_high"] = _number(a.intervals[name].high)
        metrics[name] = entry
    metrics["argmax_accuracy"] = {"value": _number(a.argmax_accuracy)}
    return {
        "tool": "deltaiqa-lite evaluate", "version": __version__,
        "model": evaluation.model, "model_path": evaluation.model_path,
        "precision": evaluation.precision, "provider": evaluation.provider,
        "labels": {"source": evaluation.labels_source, "format": evaluation.labels_format},
        "rules": {
            "score": "sum_k k * p_k",
            "class_of_score_and_label": "round half up: floor(x + 0.5), clipped to 0..4",
            "accuracy": "rounded score == rounded label",
            "argmax_accuracy": "argmax p == rounded label (the original's categorical accuracy)",
            "confusion_matrix": "rows rounded label, columns rounded score",
            "bootstrap": {"resamples": a.bootstrap_resamples, "seed": a.bootstrap_seed,
                          "confidence": a.confidence, "method": "percentile, slices resampled"},
        },
        "counts": {"inputs": evaluation.n_inputs, "evaluated": a.n,
                   "failed": len(evaluation.failed), "unlabelled": len(evaluation.unlabelled),
                   "unused_labels": len(evaluation.unused_labels)},
        "metrics": metrics,
        "physics_baseline": (asdict(evaluation.physics) | {
            "rule": "noise_score = label rule of the simulator on noise_hu (continuous); docs/physics.md"}
            if evaluation.physics is not None else None),
        "per_class": [{"class": k, "label": evaluation.class_labels[k],
                       "reference_count": int(a.confusion[k].sum()),
                       "predicted_count": int(a.confusion[:, k].sum()),
                       "precision": _number(a.precision[k]), "recall": _number(a.recall[k])}
                      for k in range(len(evaluation.class_labels))],
        "confusion_matrix": a.confusion.tolist(),
        "failed": [{"input": name, "error": error} for name, error in evaluation.failed],
        "unlabelled_inputs": evaluation.unlabelled,
        "unused_labels": evaluation.unused_labels,
        "slices": [{"input": p.name, "label_key": p.label_key, "score": p.score, "likert": p.likert,
                    "reference": p.reference, "reference_class": int(likert_class(p.reference)),
                    "abs_error": abs(p.score - p.reference), "noise_score": p.noise_score}
                   for p in evaluation.pairs],
    }


def _fmt(value: float | None, digits: int = 3) -> str:
    return "  n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _write_physics(write, baseline: PhysicsBaseline | None) -> None:
    if baseline is None:
        return
    write(f"\nphysics baseline: noise_score (label rule on the measured noise level) vs labels, "
          f"{baseline.n} slices ({baseline.n_missing} without a noise level)\n")
    if baseline.correlation_sum is None and baseline.plcc is None:
        write(f"  not computed: {baseline.reason}\n")
        return
    write(f"{'':<20} {'physics':>7} {'network':>8}   (same slices)\n")
    for name, label in (("plcc", "PLCC"), ("srocc", "SROCC"), ("krocc", "KROCC"),
                        ("correlation_sum", "PLCC+SROCC+KROCC")):
        write(f"{label:<20} {_fmt(getattr(baseline, name)):>7} "
              f"{_fmt(getattr(baseline, 'network_' + name)):>8}\n")
    if baseline.n_missing and baseline.reason:
        write(f"  slices without a noise level: {baseline.reason}\n")


def write_table(stream: TextIO, evaluation: Evaluation) -> None:
    """Human-readable report."""
    a = evaluation.agreement
    write = stream.write
    write(f"# deltaiqa-lite evaluate: model {evaluation.model} ({evaluation.model_path}), "
          f"provider {evaluation.provider}\n")
    write(f"# labels {evaluation.labels_source} ({evaluation.labels_format})\n")
    write(f"inputs {evaluation.n_inputs} slices evaluated {a.n}  failed {len(evaluation.failed)}  "
          f"unlabelled {len(evaluation.unlabelled)}  unused labels {len(evaluation.unused_labels)}\n\n")
    if a.intervals:
        write(f"{'metric':<20} {'value':>7}   {int(a.confidence * 100)}% CI (bootstrap "
              f"{a.bootstrap_resamples}, seed {a.bootstrap_seed})\n")
    else:
        write(f"{'metric':<20} {'value':>7}\n")
    for name in SCALAR_METRICS:
        line = f"{_METRIC_NAMES[name]:<20} {_fmt(getattr(a, name)):>7}"
        if name in a.intervals:
            interval = a.intervals[name]
            line += f"   {_fmt(interval.low)} .. {_fmt(interval.high)}"
        write(line + "\n")
    write(f"{'accuracy (argmax p)':<20} {_fmt(a.argmax_accuracy):>7}\n")
    if a.n < SMALL_SAMPLE:
        write(f"note: only {a.n} labelled slices; correlations and intervals are rough below "
              f"about {SMALL_SAMPLE}\n")
    _write_physics(write, evaluation.physics)
    write("\n")
    write("classes: score and label rounded half up to 0..4\n")
    write(f"{'class':<13} {'reference':>9} {'predicted':>9} {'precision':>9} {'recall':>7}\n")
    for k, name in enumerate(evaluation.class_labels):
        write(f"{k} {name:<11} {int(a.confusion[k].sum()):>9} {int(a.confusion[:, k].sum()):>9} "
              f"{_fmt(a.precision[k]):>9} {_fmt(a.recall[k]):>7}\n")
    write("\nconfusion matrix (rows: reference class, columns: predicted class)\n")
    write("      " + "".join(f"{k:>6}" for k in range(len(evaluation.class_labels))) + "\n")
    for k in range(len(evaluation.class_labels)):
        write(f"{k:>6}" + "".join(f"{int(v):>6}" for v in a.confusion[k]) + "\n")
    for title, items in (("failed inputs", [f"{n}: {e}" for n, e in evaluation.failed]),
                         ("scored inputs without a label", evaluation.unlabelled),
                         ("labels without a scored input", evaluation.unused_labels)):
        if items:
            write(f"\n{title} ({len(items)}):\n")
            for item in items:
                write(f"  {item}\n")


def write_outputs(evaluation: Evaluation, folder: str | os.PathLike) -> list[Path]:
    """Write ``evaluation.json``, ``evaluation.txt``, ``slices.csv`` and ``confusion-matrix.png``.

    Returns
    -------
    list of Path
        Files written.
    """
    from deltaiqa_lite.explain.draw import confusion_matrix_image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    report = to_json(evaluation)
    json_path = folder / "evaluation.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table_path = folder / "evaluation.txt"
    with open(table_path, "w", encoding="utf-8") as stream:
        write_table(stream, evaluation)
    csv_path = folder / "slices.csv"
    with open(csv_path, "w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["input", "label_key", "score", "likert", "reference", "reference_class",
                         "abs_error"])
        for row in report["slices"]:
            writer.writerow([row["input"], row["label_key"], f"{row['score']:.6f}", row["likert"],
                             row["reference"], row["reference_class"], f"{row['abs_error']:.6f}"])
    a = evaluation.agreement
    title = (f"{evaluation.model}: n={a.n}  acc={_fmt(a.accuracy, 2)}  "
             f"PLCC+SROCC+KROCC={_fmt(a.correlation_sum, 2)}")
    png_path = folder / "confusion-matrix.png"
    confusion_matrix_image(a.confusion, evaluation.class_labels, title=title).save(png_path, format="PNG")
    return [json_path, table_path, csv_path, png_path]

