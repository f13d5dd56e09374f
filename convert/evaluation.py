"""Scores and agreement figures shared by training, export and quantization checks."""

from __future__ import annotations

import numpy as np

LIKERT = np.arange(5, dtype=np.float64)


def expected_score(probabilities: np.ndarray) -> np.ndarray:
    """Continuous Likert score ``sum_k k * p_k`` (DESIGN.md section 3)."""
    return np.asarray(probabilities, dtype=np.float64) @ LIKERT


def quality_metrics(scores: np.ndarray, labels: np.ndarray) -> dict:
    """PLCC, SROCC, KROCC (tau-b), their sum, accuracy (rounded) and MAE."""
    from scipy import stats

    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    plcc = float(stats.pearsonr(scores, labels)[0])
    srocc = float(stats.spearmanr(scores, labels)[0])
    krocc = float(stats.kendalltau(scores, labels)[0])
    return {
        "n": int(scores.size),
        "plcc": round(plcc, 4),
        "srocc": round(srocc, 4),
        "krocc": round(krocc, 4),
        "sum": round(plcc + srocc + krocc, 4),
        # np.round rounds half to even; labels are multiples of 0.2 so never x.5
        "accuracy": round(float(np.mean(np.round(scores) == np.round(labels))), 4),
        "mae": round(float(np.mean(np.abs(scores - labels))), 4),
    }


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
