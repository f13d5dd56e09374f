"""The label rule of the simulator: image degradation in HU to a Likert score.

One implementation, used by ``convert/`` (labels of simulated training data)
and by the runtime (the physics baseline ``noise_score``), so the two can never
drift apart.

``D = sqrt(noise_sd^2 + (STREAK_WEIGHT * streak_rms)^2)`` combines the noise SD
(against the noise-free reconstruction) and the RMS of view-aliasing streaks.
Readers judge noise roughly on a log scale, so the score falls linearly in
``log D`` from 4 at ``LABEL_D_BEST_HU`` to 0 at ``LABEL_D_WORST_HU``.
"""

from __future__ import annotations

import math

STREAK_WEIGHT = 1.0
LABEL_D_BEST_HU = 11.0    # D at or below this scores 4.0
LABEL_D_WORST_HU = 140.0  # D at or above this scores 0.0


def continuous_score(noise_sd_hu: float, streak_rms_hu: float = 0.0) -> float:
    """The rule's score on 0..4, not rounded. Monotone: more noise or streaks never score higher."""
    degradation = math.hypot(noise_sd_hu, STREAK_WEIGHT * streak_rms_hu)
    span = math.log(LABEL_D_WORST_HU / LABEL_D_BEST_HU)
    raw = 4.0 * (1.0 - math.log(max(degradation, 1e-6) / LABEL_D_BEST_HU) / span)
    return min(max(raw, 0.0), 4.0)


def likert_label(noise_sd_hu: float, streak_rms_hu: float = 0.0) -> float:
    """Simulated mean reader score, rounded to 0.2 like a mean of five readers."""
    return round(continuous_score(noise_sd_hu, streak_rms_hu) * 5.0) / 5.0
