"""Per-region agreement on held-out simulated slices, and where it is shown."""

import json
from pathlib import Path

import numpy as np
import pytest

from convert.card.markdown import render
from convert.checks.evaluation import agreement_by_region
from convert.sim.data import LabelledSlice, regions_of


def test_a_head_shortcut_shows_as_a_signed_error_in_the_head_row_only():
    rng = np.random.default_rng(0)
    labels = rng.choice(np.arange(0, 4.2, 0.2), 60)
    regions = ["head"] * 30 + ["abdomen"] * 30
    scores = labels + rng.normal(0, 0.05, 60)
    scores[:30] = np.minimum(labels[:30] + 0.8, 4.0)          # heads scored as excellent
    table = agreement_by_region(scores, labels, regions)
    assert list(table) == ["abdomen", "head"]
    assert table["head"]["n"] == 30 and table["head"]["mean_signed_diff"] > 0.5
    assert abs(table["abdomen"]["mean_signed_diff"]) < 0.05
    assert table["abdomen"]["mean_abs_diff"] < 0.06 < table["head"]["mean_abs_diff"]
    assert table["head"]["worst_abs_diff"] == pytest.approx(np.max(np.abs(scores[:30] - labels[:30])), abs=1e-4)
    assert table["abdomen"]["sum"] > 2.8


def test_too_few_slices_to_rank_get_no_correlation_sum():
    table = agreement_by_region(np.array([1.0, 2.0]), np.array([1.2, 2.2]), ["neck", "neck"])
    assert "sum" not in table["neck"] and table["neck"]["mean_signed_diff"] == pytest.approx(-0.2)


def test_regions_come_from_the_simulation_record(tmp_path):
    items = [LabelledSlice(Path(tmp_path / "image" / f"{i:05d}.tif"), 0, 2.0, str(i)) for i in range(3)]
    assert regions_of(items, tmp_path) is None                # a site's own folder: no record
    slices = [{"file": "00000.tif", "region": "head"}, {"file": "00001.tif", "region": "pelvis"}]
    (tmp_path / "simulation.json").write_text(json.dumps({"summary": {}, "slices": slices}))
    assert regions_of(items, tmp_path) == ["head", "pelvis", "unknown"]


def test_card_renders_the_region_table_only_when_measured():
    shipped = json.loads((Path(__file__).resolve().parents[3] / "models" / "model-card.json").read_text())
    fp32, int8 = shipped["fp32"], shipped["int8"]
    by_region = {"head": {"n": 30, "mean_abs_diff": 0.1, "worst_abs_diff": 0.4, "mean_signed_diff": -0.02,
                          "sum": 2.9}}
    with_table = render(fp32, int8, {}, None, by_region)
    assert "| head | 30 | 0.1 | 0.4 | -0.02 | 2.9 |" in with_table
    assert "Per body region" not in render(fp32, int8, {}, None)
