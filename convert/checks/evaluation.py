"""Scores and agreement figures shared by training, export and quantization checks."""

from __future__ import annotations

import numpy as np

from deltaiqa_lite.validate.metrics import krocc, likert_class, plcc, srocc
from deltaiqa_lite.score import likert_from_probabilities


def expected_score(probabilities: np.ndarray) -> np.ndarray:
    """Continuous Likert score ``sum_k k * p_k`` (DESIGN.md section 3), as the runtime computes it."""
    return likert_from_probabilities(probabilities)[0]


def quality_metrics(scores: np.ndarray, labels: np.ndarray) -> dict:
    """PLCC, SROCC, KROCC (tau-b), their sum, accuracy (rounded) and MAE.

    The runtime's NumPy metrics (equal to ``scipy.stats`` within 1e-9, tested),
    so a model card and ``deltaiqa-lite evaluate`` report the same figures.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    p, s, k = plcc(scores, labels), srocc(scores, labels), krocc(scores, labels)
    return {
        "n": int(scores.size),
        "plcc": round(p, 4),
        "srocc": round(s, 4),
        "krocc": round(k, 4),
        "sum": round(p + s + k, 4),
        "accuracy": round(float(np.mean(likert_class(scores) == likert_class(labels))), 4),
        "mae": round(float(np.mean(np.abs(scores - labels))), 4),
    }


def agreement_by_region(scores: np.ndarray, labels: np.ndarray, regions: list[str]) -> dict:
    """Per body region: slices, mean and worst |score - label|, mean signed error, and the
    PLCC+SROCC+KROCC metrics where the region has enough slices to rank.

    The signed error is the shortcut's fingerprint: a network that learnt "a head is
    excellent" scores heads above their labels on average.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    out = {}
    for region in sorted(set(regions)):
        mine = np.array([r == region for r in regions])
        diff = scores[mine] - labels[mine]
        entry = {"n": int(mine.sum()), "mean_abs_diff": round(float(np.mean(np.abs(diff))), 4),
                 "worst_abs_diff": round(float(np.max(np.abs(diff))), 4),
                 "mean_signed_diff": round(float(np.mean(diff)), 4)}
        if mine.sum() >= 10 and np.ptp(labels[mine]) > 0:
            entry["sum"] = quality_metrics(scores[mine], labels[mine])["sum"]
        out[region] = entry
    return out


def agreement(reference_probs: np.ndarray, other_probs: np.ndarray) -> dict:
    """How far a second model (e.g. INT8) is from a reference (e.g. FP32) on the same slices."""
    ref_scores = expected_score(reference_probs)
    other_scores = expected_score(other_probs)
    diff = np.abs(ref_scores - other_scores)
    return {
        "mean_abs_score_diff": round(float(diff.mean()), 5),
        "max_abs_score_diff": round(float(diff.max()), 5),
        "class_agreement": round(float(np.mean(np.argmax(reference_probs, 1)
                                               == np.argmax(other_probs, 1))), 4),
        "max_abs_prob_diff": float(np.abs(np.asarray(reference_probs)
                                          - np.asarray(other_probs)).max()),
    }
