"""Physics beside the network: global noise level, water-equivalent diameter, SSDE, flags.

Measured on the HU slice at its native resolution, with its Pixel Spacing,
using NumPy only (no SciPy in the runtime). See ``docs/physics.md`` for the
parameters, their sources and the limits.

- :mod:`.noise`   :func:`global_noise_level`, Christianson et al. (AJR 2015) style.
- :mod:`.size`    :func:`water_equivalent_diameter`, AAPM TG-220.
- :mod:`.dose`    :func:`ssde_conversion_factor`, AAPM Reports 204/220.
- :mod:`.domain`  :class:`TrainingDomain`, what ``outside-training`` checks.
- :mod:`.flags`   :class:`PhysicsResult` and :func:`physics_flags`.
- :mod:`.measure` :func:`measure_slice`, all of it for one slice, never raising.
- :mod:`.label_rule` the label rule shared with the simulator.
- :mod:`.exam`    the per-exam measure's categories, thresholds and out-of-range rule (CMS1074),
  the category mapping (``exam_categories.toml``); pure stdlib.

Layer: imports only :mod:`deltaiqa_lite.errors` and NumPy; never the model,
the readers, the scorer or anything above them.
"""

from deltaiqa_lite.physics.domain import (HEAD_BODY_PARTS, TRAINING_BODY_PARTS, TRAINING_DW_MM, TRAINING_FOV_MM,
                                          V1_TRAINING_DOMAIN, TrainingDomain)
from deltaiqa_lite.physics.dose import (PHANTOM_16CM_CODES, PHANTOM_32CM_CODES, SSDE_FIT_16CM, SSDE_FIT_32CM,
                                        ssde_conversion_factor, uses_16cm_phantom)
from deltaiqa_lite.physics.flags import (DISAGREE_THRESHOLD, FLAG_BODY_TRUNCATED, FLAG_OUTSIDE_TRAINING,
                                         FLAG_SCORE_NOISE_DISAGREE, FLAG_SEPARATOR, PHYSICS_FIELDS, PhysicsResult,
                                         physics_flags)
from deltaiqa_lite.physics.measure import SliceMeasurement, measure_slice
from deltaiqa_lite.physics.noise import (BRAIN_TISSUE_HU, LOG_BIN_WIDTH, MIN_MODE_SHARE, MIN_SOFT_TISSUE_MM2,
                                         MODE_BAND, MODE_SMOOTH_BINS, NOISE_BOX_MM, PIXEL_MARGIN_HU, SOFT_TISSUE_HU,
                                         NoiseLevel, global_noise_level)
from deltaiqa_lite.physics.size import (BODY_THRESHOLD_HU, MAX_TRUNCATED_FRACTION, MIN_BODY_MM2,
                                        MIN_TRUNCATED_FRACTION, OUTSIDE_FOV_HU, WaterEquivalentDiameter,
                                        water_equivalent_diameter)

__all__ = [
    "NoiseLevel", "WaterEquivalentDiameter", "PhysicsResult",
    "global_noise_level", "water_equivalent_diameter", "ssde_conversion_factor",
    "SliceMeasurement", "measure_slice", "physics_flags", "uses_16cm_phantom",
    "FLAG_SCORE_NOISE_DISAGREE", "FLAG_BODY_TRUNCATED", "FLAG_OUTSIDE_TRAINING",
    "DISAGREE_THRESHOLD", "TrainingDomain", "V1_TRAINING_DOMAIN",
    "PHYSICS_FIELDS", "FLAG_SEPARATOR", "HEAD_BODY_PARTS", "TRAINING_BODY_PARTS", "TRAINING_DW_MM",
    "TRAINING_FOV_MM", "PHANTOM_16CM_CODES", "PHANTOM_32CM_CODES", "SSDE_FIT_16CM", "SSDE_FIT_32CM",
    "LOG_BIN_WIDTH", "MIN_SOFT_TISSUE_MM2", "MODE_SMOOTH_BINS", "NOISE_BOX_MM", "SOFT_TISSUE_HU",
    "BODY_THRESHOLD_HU", "MAX_TRUNCATED_FRACTION", "MIN_BODY_MM2", "OUTSIDE_FOV_HU",
    "BRAIN_TISSUE_HU", "MIN_MODE_SHARE", "MODE_BAND", "PIXEL_MARGIN_HU",
    "MIN_TRUNCATED_FRACTION",
]
