"""The runtime's resize equals cv2.resize(..., INTER_LINEAR) within 1e-5 (OpenCV only as a test dependency)."""

from __future__ import annotations

import numpy as np
import pytest

from deltaiqa_lite.model.preprocess import Preprocessing, centre_crop_square, prepare_hu, resize_bilinear, window_hu
from deltaiqa_lite.score import prepare_slice
from deltaiqa_lite.read import Slice

cv2 = pytest.importorskip("cv2", reason="opencv-python-headless (test extra) is not installed")


@pytest.mark.parametrize("shape", [(512, 512), (256, 256), (768, 768), (1024, 1024), (513, 513),
                                   (300, 300), (100, 100), (64, 64)])
@pytest.mark.parametrize("size", [512, 224])
def test_resize_matches_opencv(shape, size):
    image = np.random.default_rng(shape[0]).uniform(0, 1, size=shape).astype(np.float32)
    expected = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(resize_bilinear(image, size), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(512, 640), (700, 512), (333, 517), (80, 120)])
def test_crop_then_resize_matches_original_loader(shape):
    """The original loader: centre square crop, then cv2.resize to 512 (non-square inputs)."""
    hu = np.random.default_rng(7).normal(-200, 400, size=shape).astype(np.float32)
    prep = Preprocessing()
    unit = window_hu(hu, prep.window_centre_hu, prep.window_width_hu)
    rows, cols = shape
    side = min(rows, cols)
    top, left = (rows - side) // 2, (cols - side) // 2
    expected = cv2.resize(unit[top:top + side, left:left + side], (512, 512), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(prepare_hu(hu, prep), expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(prepare_slice(Slice(path="x", hu=hu), prep), expected, atol=1e-5, rtol=0)
    assert centre_crop_square(unit).shape == (side, side)


def test_card_window_is_used():
    hu = np.random.default_rng(3).normal(0, 500, size=(512, 512)).astype(np.float32)
    narrow = Preprocessing(window_centre_hu=40.0, window_width_hu=400.0)
    out = prepare_slice(Slice(path="x", hu=hu), narrow)
    np.testing.assert_allclose(out, np.clip((hu - (40 - 200)) / 400, 0, 1), atol=1e-6)
