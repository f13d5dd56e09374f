"""Explanations: Grad-CAM on ``conv5`` (:mod:`.gradcam`) and the pictures of it (:mod:`.draw`).

Layer: imports the model contract (:mod:`deltaiqa_lite.model`) and the readers;
the scorer sits above and lends its session (``Scorer.explain``), so nothing
here imports :mod:`deltaiqa_lite.score`.
"""

from deltaiqa_lite.explain.gradcam import (CONV5_OUTPUT, DenseHead, Explainer, Explanation, HeadPass,
                                           conv5_gradient, gradcam, head_forward, heatmap_on_slice,
                                           write_explanation)

__all__ = ["DenseHead", "HeadPass", "Explanation", "Explainer", "head_forward",
           "conv5_gradient", "gradcam", "heatmap_on_slice", "write_explanation", "CONV5_OUTPUT"]
