"""Agreement between predicted and reference quality scores, in NumPy only.

The LDCTIQAC 2023 challenge ranks methods by PLCC + SROCC + KROCC against the
radiologists' mean scores; the original Delta-IQA also reports accuracy, a
confusion matrix and per-class precision and recall. This module computes
all of them without SciPy (a runtime dependency we do not ship). The tests
hold every correlation to ``scipy.stats`` within 1e-9, ties included:

- PLCC  = ``scipy.stats.pearsonr(x, y).statistic``
- SROCC = ``scipy.stats.spearmanr(x, y).statistic`` (average ranks for ties)
- KROCC = ``scipy.stats.kendalltau(x, y).statistic`` (tau-b, SciPy's default)

Classes. A continuous score or label in 0..4 becomes a Likert class by
rounding half *up* (``floor(x + 0.5)``, clipped to 0..4), not NumPy's
round-half-to-even: a score of 2.5 is class 3, as is 3.5 -> 4, so equal
distances to the two classes always resolve the same way. LDCTIQAC labels
are means of five readers (multiples of 0.2) and never land on x.5; model
scores can.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

N_CLASSES = 5
DEFAULT_BOOTSTRAP_RESAMPLES = 1000
DEFAULT_BOOTSTRAP_SEED = 20230601  # fixed: the same data always gives the same interval
DEFAULT_CONFIDENCE = 0.95


def _paired(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.size} != {y.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x and y must be finite (no NaN or inf)")
    return x, y


def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (``scipy.stats.rankdata``, 'average').

    Parameters
    ----------
    values : array_like
        1-D data.

    Returns
    -------
    numpy.ndarray
        float64 ranks, same length as ``values``.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Start of each run of equal values in sorted order.
    starts = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    run_id = np.cumsum(starts) - 1
    run_first = np.flatnonzero(starts)
    run_last = np.r_[run_first[1:], values.size] - 1
    average = (run_first + run_last) / 2.0 + 1.0
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = average[run_id]
    return ranks


def plcc(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson linear correlation coefficient; NaN when either input is constant.

    Parameters
    ----------
    x, y : array_like
        Paired 1-D data of equal length (at least 2).

    Returns
    -------
    float
        r in [-1, 1], or NaN if it is undefined.
    """
    x, y = _paired(x, y)
    if x.size < 2:
        return float("nan")
    dx = x - x.mean()
    dy = y - y.mean()
    norm_x = np.linalg.norm(dx)
    norm_y = np.linalg.norm(dy)
    if norm_x == 0.0 or norm_y == 0.0:
        return float("nan")
    r = float(np.dot(dx / norm_x, dy / norm_y))
    return min(1.0, max(-1.0, r))


def srocc(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank-order correlation: PLCC of the average ranks.

    Parameters
    ----------
    x, y : array_like
        Paired 1-D data.

    Returns
    -------
    float
        rho in [-1, 1], or NaN if either input is constant.
    """
    x, y = _paired(x, y)
    return plcc(rankdata(x), rankdata(y))


def _dense_ranks(sorted_values: np.ndarray) -> np.ndarray:
    return np.cumsum(np.r_[True, sorted_values[1:] != sorted_values[:-1]])


def _count_inversions(sequence: np.ndarray) -> int:
    """Pairs i < j with sequence[i] > sequence[j], for non-negative ints.

    Bottom-up merge counting, vectorised per level: at block width w, every
    element of a right-hand block counts the elements of its left partner
    block that exceed it. Offsetting values by ``pair_index * span`` makes all
    left blocks one globally sorted array, so one ``searchsorted`` per level
    does every block at once: O(n log^2 n) without a Python loop over n.
    """
    sequence = np.asarray(sequence, dtype=np.int64)
    n = sequence.size
    span = int(sequence.max()) + 2 if n else 1
    position = np.arange(n, dtype=np.int64)
    inversions = 0
    width = 1
    while width < n:
        block = position // width
        # Values sorted inside every block of this width.
        within = np.sort(sequence + block * span) - block * span
        pair = position // (2 * width)
        is_left = (block % 2) == 0
        left_keys = (within + pair * span)[is_left]
        right_values = within[~is_left]
        right_pair = pair[~is_left]
        upper = np.searchsorted(left_keys, (right_pair + 1) * span, side="left")
        not_greater = np.searchsorted(left_keys, right_values + right_pair * span, side="right")
        inversions += int((upper - not_greater).sum())
        width *= 2
    return inversions


def _tied_pairs(dense: np.ndarray) -> int:
    counts = np.bincount(dense).astype(np.int64)
    return int((counts * (counts - 1) // 2).sum())


def krocc(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall rank correlation, tau-b (ties in x and in y corrected), as SciPy computes it.

    Parameters
    ----------
    x, y : array_like
        Paired 1-D data.

    Returns
    -------
    float
        tau-b in [-1, 1], or NaN if either input is constant.
    """
    x, y = _paired(x, y)
    n = x.size
    if n < 2:
        return float("nan")
    # Same ordering as scipy: sort on y, dense-rank it, then stable sort on x.
    order = np.argsort(y, kind="mergesort")
    x, y = x[order], y[order]
    y_rank = _dense_ranks(y)
    order = np.argsort(x, kind="mergesort")
    x, y_rank = x[order], y_rank[order]
    x_rank = _dense_ranks(x)
    # With x ascending and y ascending inside equal x, inversions of y are
    # exactly the discordant pairs.
    discordant = _count_inversions(y_rank)
    boundaries = np.r_[True, (x_rank[1:] != x_rank[:-1]) | (y_rank[1:] != y_rank[:-1]), True]
    joint_counts = np.diff(np.flatnonzero(boundaries)).astype(np.int64)
    joint_ties = int((joint_counts * (joint_counts - 1) // 2).sum())
    x_ties = _tied_pairs(x_rank)
    y_ties = _tied_pairs(y_rank)
    total = n * (n - 1) // 2
    if x_ties == total or y_ties == total:
        return float("nan")
    concordant_minus_discordant = total - x_ties - y_ties + joint_ties - 2 * discordant
    tau = concordant_minus_discordant / np.sqrt(total - x_ties) / np.sqrt(total - y_ties)
    return float(min(1.0, max(-1.0, tau)))


def likert_class(scores: np.ndarray) -> np.ndarray:
    """Continuous 0..4 scores -> Likert classes 0..4, rounding half up (see module notes).

    Parameters
    ----------
    scores : array_like
        Scores or labels on the 0..4 scale.

    Returns
    -------
    numpy.ndarray
        int64 classes in 0..4.
    """
    scores = np.asarray(scores, dtype=np.float64)
    # The small epsilon keeps 2.4999999 (float noise on a 2.5) from flipping
    # below while staying far from any real LDCTIQAC level (steps of 0.2).
    return np.clip(np.floor(scores + 0.5 + 1e-9), 0, N_CLASSES - 1).astype(np.int64)


def confusion_matrix(true_classes: np.ndarray, predicted_classes: np.ndarray,
                     n_classes: int = N_CLASSES) -> np.ndarray:
    """Counts ``[true, predicted]`` (rows: reference class, columns: predicted class).

    Parameters
    ----------
    true_classes, predicted_classes : array_like of int
        Classes in ``0 .. n_classes - 1``.
    n_classes : int
        Number of classes.

    Returns
    -------
    numpy.ndarray
        int64 array ``[n_classes, n_classes]``.
    """
    true_classes = np.asarray(true_classes, dtype=np.int64).ravel()
    predicted_classes = np.asarray(predicted_classes, dtype=np.int64).ravel()
    if true_classes.shape != predicted_classes.shape:
        raise ValueError("true and predicted classes differ in length")
    for name, classes in (("true", true_classes), ("predicted", predicted_classes)):
        if classes.size and (classes.min() < 0 or classes.max() >= n_classes):
            raise ValueError(f"{name} classes must lie in 0..{n_classes - 1}")
    flat = true_classes * n_classes + predicted_classes
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def precision_recall(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class precision and recall from a confusion matrix.

    Parameters
    ----------
    matrix : numpy.ndarray
        ``[true, predicted]`` counts.

    Returns
    -------
    precision, recall : numpy.ndarray
        float64 per class; NaN where the class was never predicted
        (precision) or never occurs in the reference (recall).
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    hits = np.diag(matrix)
    predicted = matrix.sum(axis=0)
    actual = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, hits / predicted, np.nan)
        recall = np.where(actual > 0, hits / actual, np.nan)
    return precision, recall


@dataclass(frozen=True)
class Interval:
    """A bootstrap percentile interval; bounds are NaN when undefined."""

    low: float
    high: float


@dataclass(frozen=True)
class Agreement:
    """Agreement of predicted scores with reference scores on one set of slices.

    ``accuracy`` compares rounded score with rounded label (this project's
    rule, see the module notes); ``argmax_accuracy`` compares the most
    probable class with the rounded label, which is what the original's Keras
    categorical accuracy on two-hot labels measured. The confusion matrix and
    precision/recall use the rounded score, like ``accuracy``.
    """

    n: int
    plcc: float
    srocc: float
    krocc: float
    correlation_sum: float
    accuracy: float
    mae: float
    argmax_accuracy: float | None
    confusion: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    intervals: dict[str, Interval] = field(default_factory=dict)
    confidence: float = DEFAULT_CONFIDENCE
    bootstrap_resamples: int = 0
    bootstrap_seed: int | None = None


# Scalar metrics that get bootstrap intervals, in report order.
SCALAR_METRICS = ("plcc", "srocc", "krocc", "correlation_sum", "accuracy", "mae")


def _scalar_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    p, s, k = plcc(scores, labels), srocc(scores, labels), krocc(scores, labels)
    return {
        "plcc": p,
        "srocc": s,
        "krocc": k,
        "correlation_sum": p + s + k,
        "accuracy": float(np.mean(likert_class(scores) == likert_class(labels))),
        "mae": float(np.mean(np.abs(scores - labels))),
    }


def bootstrap_intervals(scores: np.ndarray, labels: np.ndarray, *,
                        resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES,
                        seed: int = DEFAULT_BOOTSTRAP_SEED,
                        confidence: float = DEFAULT_CONFIDENCE) -> dict[str, Interval]:
    """Percentile bootstrap intervals of the scalar metrics, resampling slices with replacement.

    Parameters
    ----------
    scores, labels : array_like
        Paired predicted and reference scores.
    resamples : int
        Number of bootstrap resamples.
    seed : int
        Seed of ``numpy.random.default_rng``; fixed so reports are reproducible.
    confidence : float
        Central coverage of the interval, e.g. 0.95.

    Returns
    -------
    dict of str to Interval
        One interval per name in ``SCALAR_METRICS``. Resamples where a
        correlation is undefined (all scores equal) are left out of that
        metric's interval; if all are, its bounds are NaN.
    """
    scores, labels = _paired(scores, labels)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    n = scores.size
    if n < 2 or resamples < 1:
        return {name: Interval(float("nan"), float("nan")) for name in SCALAR_METRICS}
    rng = np.random.default_rng(seed)
    draws = {name: np.empty(resamples) for name in SCALAR_METRICS}
    for r in range(resamples):
        index = rng.integers(0, n, size=n)
        for name, value in _scalar_metrics(scores[index], labels[index]).items():
            draws[name][r] = value
    tail = (1.0 - confidence) / 2.0 * 100.0
    intervals = {}
    for name, values in draws.items():
        values = values[np.isfinite(values)]
        if values.size == 0:
            intervals[name] = Interval(float("nan"), float("nan"))
        else:
            low, high = np.percentile(values, [tail, 100.0 - tail])
            intervals[name] = Interval(float(low), float(high))
    return intervals


def agreement(scores: np.ndarray, labels: np.ndarray, *,
              predicted_classes: np.ndarray | None = None,
              resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES,
              seed: int = DEFAULT_BOOTSTRAP_SEED,
              confidence: float = DEFAULT_CONFIDENCE) -> Agreement:
    """All agreement figures of predicted scores against reference scores.

    Parameters
    ----------
    scores : array_like
        Predicted continuous scores 0..4 (``sum_k k * p_k``).
    labels : array_like
        Reference scores 0..4 (e.g. radiologists' means).
    predicted_classes : array_like of int, optional
        ``argmax p`` per slice; when given, ``argmax_accuracy`` is reported.
    resamples : int
        Bootstrap resamples; 0 skips the intervals.
    seed : int
        Bootstrap seed.
    confidence : float
        Interval coverage.

    Returns
    -------
    Agreement
    """
    scores, labels = _paired(scores, labels)
    if scores.size == 0:
        raise ValueError("no labelled slices to evaluate")
    figures = _scalar_metrics(scores, labels)
    label_classes = likert_class(labels)
    matrix = confusion_matrix(label_classes, likert_class(scores))
    precision, recall = precision_recall(matrix)
    argmax_accuracy = None
    if predicted_classes is not None:
        predicted_classes = np.asarray(predicted_classes, dtype=np.int64).ravel()
        if predicted_classes.shape != label_classes.shape:
            raise ValueError("predicted_classes differs in length from labels")
        argmax_accuracy = float(np.mean(predicted_classes == label_classes))
    intervals = (bootstrap_intervals(scores, labels, resamples=resamples, seed=seed,
                                     confidence=confidence) if resamples > 0 else {})
    return Agreement(
        n=int(scores.size),
        plcc=figures["plcc"],
        srocc=figures["srocc"],
        krocc=figures["krocc"],
        correlation_sum=figures["correlation_sum"],
        accuracy=figures["accuracy"],
        mae=figures["mae"],
        argmax_accuracy=argmax_accuracy,
        confusion=matrix,
        precision=precision,
        recall=recall,
        intervals=intervals,
        confidence=confidence,
        bootstrap_resamples=resamples if resamples > 0 else 0,
        bootstrap_seed=seed if resamples > 0 else None,
    )
