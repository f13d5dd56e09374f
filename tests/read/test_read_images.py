"""LDCTIQAC TIFF, .npy in HU and Pillow images with an explicit window."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deltaiqa_lite.errors import InputError, RefusedInput
from deltaiqa_lite.model.preprocess import window_hu
from deltaiqa_lite.read import expand_paths, read_slices
from deltaiqa_lite.read.images import unit_to_hu


def _unit(seed: int, shape=(80, 100)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, size=shape).astype(np.float32)


def test_single_page_ldctiqac_tiff(tmp_path):
    unit = _unit(0)
    path = tmp_path / "0000.tif"
    Image.fromarray(unit, mode="F").save(path)
    (item,) = list(read_slices(path))
    assert item.frame is None
    np.testing.assert_array_equal(item.unit, unit)
    # hu is the inverse of the LDCTIQAC window: windowing it again gives the stored values back.
    np.testing.assert_allclose(window_hu(item.hu), unit, atol=1e-6)


def test_multi_page_ldctiqac_tiff(tmp_path):
    pages = [_unit(k) for k in range(3)]
    path = tmp_path / "valid_0.tif"
    images = [Image.fromarray(p, mode="F") for p in pages]
    images[0].save(path, save_all=True, append_images=images[1:])
    slices = list(read_slices(path))
    assert [s.frame for s in slices] == [0, 1, 2]
    for item, page in zip(slices, pages):
        np.testing.assert_array_equal(item.unit, page)


def test_tiff_written_by_tifffile_is_read(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    pages = np.stack([_unit(k) for k in range(2)])
    path = tmp_path / "stack.tiff"
    tifffile.imwrite(path, pages)
    slices = list(read_slices(path))
    assert len(slices) == 2
    np.testing.assert_array_equal(slices[1].unit, pages[1])


def test_float_tiff_outside_unit_range_is_refused(tmp_path):
    path = tmp_path / "hu.tif"
    Image.fromarray(np.full((80, 80), 40.0, dtype=np.float32), mode="F").save(path)
    with pytest.raises(RefusedInput, match=r"hu\.tif: image is float with values 40\.\.40; an LDCTIQAC TIFF "
                                           r"is windowed to \[0, 1\]"):
        list(read_slices(path))


def test_npy_slice_and_stack(tmp_path):
    hu = np.random.default_rng(1).normal(0, 300, size=(2, 70, 90)).astype(np.float32)
    np.save(tmp_path / "one.npy", hu[0])
    np.save(tmp_path / "stack.npy", hu.astype(np.int16))
    (single,) = list(read_slices(tmp_path / "one.npy"))
    np.testing.assert_array_equal(single.hu, hu[0])
    stack = list(read_slices(tmp_path / "stack.npy"))
    assert [s.frame for s in stack] == [0, 1]
    np.testing.assert_array_equal(stack[1].hu, hu[1].astype(np.int16).astype(np.float32))


@pytest.mark.parametrize("array, message", [
    (np.zeros((4, 5, 6, 7)), r"array has shape \(4, 5, 6, 7\); expected a 2-D slice or a 3-D stack of HU"),
    (np.zeros((30, 30)), r"array is 30 x 30; smaller than 64 x 64"),
    (np.array([["a"] * 70] * 70), r"array dtype is <U1; expected numbers in HU"),
])
def test_npy_refusals(tmp_path, array, message):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(InputError, match=r"bad\.npy: " + message):
        list(read_slices(path))


def test_pillow_image_needs_a_window(tmp_path):
    grey = (np.linspace(0, 255, 100 * 100).reshape(100, 100)).astype(np.uint8)
    path = tmp_path / "screenshot.png"
    Image.fromarray(grey).save(path)
    with pytest.raises(RefusedInput, match=r"screenshot\.png: a 'L' image holds display grey levels, not HU; "
                                           r"pass the window it was saved with \(--image-window CENTRE,WIDTH\)"):
        list(read_slices(path))
    (item,) = list(read_slices(path, image_window=(40.0, 400.0)))
    assert item.hu.min() == pytest.approx(-160.0) and item.hu.max() == pytest.approx(240.0)
    np.testing.assert_allclose(item.hu, unit_to_hu(grey / 255.0, (40.0, 400.0)), atol=1e-3)


def test_pillow_colour_refused(tmp_path):
    path = tmp_path / "colour.png"
    Image.fromarray(np.zeros((80, 80, 3), dtype=np.uint8)).save(path)
    with pytest.raises(RefusedInput, match=r"colour\.png: image has Pillow mode 'RGB' \(colour\)"):
        list(read_slices(path, image_window=(40.0, 400.0)))


def test_not_an_image(tmp_path):
    path = tmp_path / "fake.png"
    path.write_text("hello")
    with pytest.raises(InputError, match=r"fake\.png: not an image Pillow can read"):
        list(read_slices(path))


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(InputError, match=r"nothing\.dcm: no such file or folder"):
        list(read_slices(tmp_path / "nothing.dcm"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: folder is empty; no files to score"):
        list(read_slices(tmp_path / "empty"))


def test_expand_paths_recursive_sorted_skips_hidden_and_dicomdir(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for name in ("b/2", "b/1", "a/deep/x", "a/.hidden", "a/DICOMDIR"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    files = expand_paths([tmp_path / "b", tmp_path / "a", tmp_path / "missing.dcm", tmp_path / "empty"])
    assert files == [str(tmp_path / "b" / "1"), str(tmp_path / "b" / "2"), str(tmp_path / "a" / "deep" / "x"),
                     str(tmp_path / "missing.dcm"), str(tmp_path / "empty")]
