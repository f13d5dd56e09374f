"""LDCTIQAC readers in the three layouts, fuzzy labels and phantom-disjoint splits."""

import json

import numpy as np
import pytest
import tifffile

from convert.sim.data import DataError, fuzzy_label, load_image, read_folder, split_by_group


@pytest.mark.parametrize("score, expected", [
    (2.8, [0, 0, 0.2, 0.8, 0]),
    (0.4, [0.6, 0.4, 0, 0, 0]),
    (3.0, [0, 0, 0, 1, 0]),
    (0.0, [1, 0, 0, 0, 0]),
    (-0.2, [1, 0, 0, 0, 0]),
    (4.0, [0, 0, 0, 0, 1]),
    (4.3, [0, 0, 0, 0, 1]),
])
def test_fuzzy_label_two_hot(score, expected):
    np.testing.assert_allclose(fuzzy_label(score), expected, atol=1e-6)
    assert fuzzy_label(score).sum() == pytest.approx(1.0)


def _image(value, shape=(512, 512)):
    return np.full(shape, value, dtype=np.float32)


def test_train_layout(tmp_path):
    (tmp_path / "image").mkdir()
    for i, value in enumerate((0.1, 0.5, 0.9)):
        tifffile.imwrite(tmp_path / "image" / f"{i:04d}.tif", _image(value))
    (tmp_path / "train.json").write_text(json.dumps({"0000.tif": 2.8, "0001.tif": 0.0,
                                                      "0002.tif": 4.0}))
    items = read_folder(tmp_path)
    assert [(i.path.name, i.score) for i in items] == [("0000.tif", 2.8), ("0001.tif", 0.0),
                                                        ("0002.tif", 4.0)]
    assert load_image(items[1]).shape == (512, 512)
    assert float(load_image(items[1]).mean()) == pytest.approx(0.5)


def test_test_layout_crops_and_resizes(tmp_path):
    (tmp_path / "images").mkdir()
    wide = np.zeros((300, 400), dtype=np.float32)
    wide[:, 50:350] = 1.0          # the centred square is all ones
    tifffile.imwrite(tmp_path / "images" / "a.tif", wide)
    (tmp_path / "test.json").write_text(json.dumps({"a.tif": 1.2}))
    (item,) = read_folder(tmp_path)
    plane = load_image(item)
    assert plane.shape == (512, 512)
    assert plane.min() == pytest.approx(1.0)


def test_stacked_validation_layout(tmp_path):
    stack = np.stack([_image(v) for v in (0.2, 0.4, 0.6)])
    tifffile.imwrite(tmp_path / "valid_0.tif", stack, photometric="minisblack")
    tifffile.imwrite(tmp_path / "valid_1.tif", stack[:2], photometric="minisblack")
    (tmp_path / "ground-truth.json").write_text(json.dumps({
        "valid_0.tif": {"scores": [1.0, 2.2, 3.4]}, "valid_1.tif": {"scores": [0.6, 4.0]}}))
    items = read_folder(tmp_path)
    assert [(i.path.name, i.page, i.score) for i in items] == [
        ("valid_0.tif", 0, 1.0), ("valid_0.tif", 1, 2.2), ("valid_0.tif", 2, 3.4),
        ("valid_1.tif", 0, 0.6), ("valid_1.tif", 1, 4.0)]
    assert float(load_image(items[2]).mean()) == pytest.approx(0.6)
    # A stack is one group: its pages never straddle two splits.
    assert {i.group for i in items} == {"valid_0.tif", "valid_1.tif"}


def test_missing_layout_and_missing_images_are_reported(tmp_path):
    with pytest.raises(DataError, match="no LDCTIQAC layout"):
        read_folder(tmp_path)
    (tmp_path / "image").mkdir()
    (tmp_path / "train.json").write_text(json.dumps({"0000.tif": 1.0}))
    with pytest.raises(DataError, match=r"1 labelled images missing from image/, first 0000.tif"):
        read_folder(tmp_path)


def test_split_is_disjoint_by_group_and_reproducible(tmp_path):
    from convert.sim.data import LabelledSlice

    items = [LabelledSlice(tmp_path / f"{i:04d}.tif", 0, 1.0, f"phantom-{i // 4}")
             for i in range(200)]
    train, val, test = split_by_group(items, seed=0)
    groups = [{i.group for i in part} for part in (train, val, test)]
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
    assert len(train) + len(val) + len(test) == 200
    assert (len(val), len(test)) == (20, 20)
    assert split_by_group(items, seed=0) == (train, val, test)
    assert split_by_group(items, seed=1) != (train, val, test)


def test_evaluation_subset_is_a_fixed_random_subset_in_order():
    from pathlib import Path

    from convert.sim.data import LabelledSlice, evaluation_subset

    items = [LabelledSlice(Path(f"{k:05d}.tif"), 0, 2.0, f"phantom-{k // 10}") for k in range(100)]
    subset = evaluation_subset(items, 20, seed=0)
    assert len(subset) == 20 and len(set(subset)) == 20
    assert subset == sorted(subset, key=lambda i: i.path.name)           # original order kept
    assert subset == evaluation_subset(items, 20, seed=0)                 # same seed, same subset
    assert subset != evaluation_subset(items, 20, seed=1)
    assert evaluation_subset(items, None) == items and evaluation_subset(items, 500) == items
