"""Series grouping by Series Instance UID and ordering along the slice normal."""

from __future__ import annotations

import numpy as np
from pydicom.uid import generate_uid

from dicom_builders import ct_dataset, enhanced_ct_dataset, phantom_hu, save
from deltaiqa_lite.read import expand_paths, read_slices
from deltaiqa_lite.read.series import group_series


def _read_all(folder):
    return [s for path in expand_paths([folder]) for s in read_slices(path)]


def test_grouped_by_series_and_ordered_by_position_not_file_name(tmp_path):
    series_a, series_b = generate_uid(), generate_uid()
    # File names and instance numbers deliberately disagree with the anatomy.
    z_values = [30.0, -10.0, 10.0, 0.0]
    for k, z in enumerate(z_values):
        save(ct_dataset(series_uid=series_a, ipp=(-48, -48, z), instance_number=10 - k),
             tmp_path / f"a{k}.dcm")
    for k, z in enumerate([5.0, 1.0]):
        save(ct_dataset(series_uid=series_b, ipp=(-48, -48, z), instance_number=k + 1), tmp_path / f"b{k}.dcm")
    groups = group_series(_read_all(tmp_path))
    assert [uid for uid, _ in groups] == [series_a, series_b]
    assert [s.slice_location for s in groups[0][1]] == [-10.0, 0.0, 10.0, 30.0]
    assert [s.slice_location for s in groups[1][1]] == [1.0, 5.0]


def test_position_projected_on_a_tilted_normal(tmp_path):
    series = generate_uid()
    # Gantry tilt: column direction leans; positions move along the tilted normal.
    c, s = np.cos(np.radians(15)), np.sin(np.radians(15))
    iop = (1, 0, 0, 0, c, -s)
    normal = np.cross([1, 0, 0], [0, c, -s])
    for k, step in enumerate([2, 0, 1]):
        position = np.array([-48.0, -48.0, 0.0]) + 5.0 * step * normal
        save(ct_dataset(series_uid=series, iop=iop, ipp=position, instance_number=None), tmp_path / f"{k}.dcm")
    (_, members), = group_series(_read_all(tmp_path))
    locations = [m.slice_location for m in members]
    assert np.allclose(np.diff(locations), 5.0)


def test_instance_number_when_no_position(tmp_path):
    series = generate_uid()
    for k, number in enumerate([3, 1, 2]):
        save(ct_dataset(series_uid=series, ipp=None, instance_number=number), tmp_path / f"{k}.dcm")
    (_, members), = group_series(_read_all(tmp_path))
    assert [m.instance_number for m in members] == [1, 2, 3]
    assert all(m.slice_location is None for m in members)


def test_enhanced_frames_join_their_series_in_order(tmp_path):
    series = generate_uid()
    frames = [phantom_hu(seed=k) for k in range(3)]
    save(enhanced_ct_dataset(frames, positions=[(0, 0, 4.0), (0, 0, 2.0), (0, 0, 8.0)], series_uid=series),
         tmp_path / "multi.dcm")
    save(ct_dataset(series_uid=series, ipp=(0, 0, 6.0)), tmp_path / "single.dcm")
    (_, members), = group_series(_read_all(tmp_path))
    assert [m.slice_location for m in members] == [2.0, 4.0, 6.0, 8.0]
    assert [m.frame for m in members] == [1, 0, None, 2]
