"""The QA log records physics with each scored slice (ingest path of watch and serve)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from qa_builders import write_ct

from deltaiqa_lite.qa.ingest import Ingestor
from deltaiqa_lite.qa.log import QALog
from deltaiqa_lite.score import Scorer


def test_ingest_logs_noise_dw_and_series_summary(tmp_path: Path, tiny_model: Path) -> None:
    size = 256
    paths = []
    for k in range(3):
        write_ct(tmp_path / f"ct{k}.dcm", size=size, seed=k, series_uid="1.2.3.4", instance=k + 1, noise_hu=25.0)
        paths.append(str(tmp_path / f"ct{k}.dcm"))
    with QALog(tmp_path / "qa.sqlite") as log:
        Ingestor(Scorer(str(tiny_model), threads=1), log, source="test").process(paths)
        rows = log.slices()
        (series,) = log.series()
    spacing = 380.0 / size
    # The builder's disc: radius 0.4 x size pixels of water (0 HU).
    expected_dw = 2.0 * math.sqrt(sum(1 for y in range(size) for x in range(size)
                                      if math.hypot(y - size / 2, x - size / 2) < size * 0.4)
                                  * spacing * spacing / math.pi)
    assert len(rows) == 3
    for row in rows:
        assert row.noise_hu == pytest.approx(25.0, rel=0.1)
        assert row.water_equivalent_diameter_mm == pytest.approx(expected_dw, rel=0.02)
        assert row.noise_score is not None and row.flags is not None
        assert row.ctdivol_mgy == 9.5
        assert row.ssde_mgy == pytest.approx(9.5 * 3.704369 * math.exp(-0.03671937 * expected_dw / 10), rel=0.02)
    assert series.noise_hu_median == pytest.approx(25.0, rel=0.1)
    assert series.water_equivalent_diameter_mm_middle == pytest.approx(expected_dw, rel=0.02)
    assert series.n_flagged == sum(1 for r in rows if r.flags)
