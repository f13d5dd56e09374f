"""benchmarks/physics.py: the per-slice part runs and reports what it measured (no speed targets here)."""

from __future__ import annotations

import pytest

from benchmarks import physics as physics_bench
from deltaiqa_lite.engine.bench import Budget


def test_per_slice_measures_every_example_and_renders():
    if not physics_bench.EXAMPLES:
        pytest.skip("no examples/*.dcm")
    part = physics_bench.per_slice(Budget.smoke())
    assert [run["file"] for run in part["slices"]] == [p.name for p in physics_bench.EXAMPLES]
    for run in part["slices"]:
        assert run["shape"] == [512, 512] and run["calls"] >= 3 and run["p50_ms"] > 0 and run["cpu_p50_ms"] > 0
        assert 5.0 < run["noise_hu"] < 80.0 and 200.0 < run["dw_mm"] < 400.0
    assert part["worst_cpu_min_ms"] == max(run["cpu_min_ms"] for run in part["slices"])
    assert all(run["cpu_min_ms"] <= run["cpu_p50_ms"] <= run["cpu_p95_ms"] for run in part["slices"])
    assert part["passed"] == (part["worst_cpu_min_ms"] <= physics_bench.TARGET_MS_PER_SLICE)
    results = {"machine": {"cpu_model": "test CPU", "usable_cpus": 2, "cpu_flags": []},
               "load_before": [0.0], "load_after": [0.0], "note": None, "per_slice": part,
               "series": {"slices": 8, "runs": {
                   "physics on": {"series_slices_per_s": 9.0, "inference_slices_per_s": 10.0, "ratio": 0.9,
                                  "cpu_ms_per_slice": 21.0, "threads": 2, "reader_threads": 2, "batch": 8},
                   "physics off": {"series_slices_per_s": 9.5, "inference_slices_per_s": 10.0, "ratio": 0.95,
                                   "cpu_ms_per_slice": 20.0, "threads": 2, "reader_threads": 2, "batch": 8}},
                   "ratio": 0.9, "target_ratio": 0.85, "passed": True,
                   "cpu_fraction_physics_off_vs_on": 20.0 / 21.0}}
    text = physics_bench.markdown(results)
    assert text.startswith("# Physics cost") and "| dose-100.dcm | 512 x 512 |" in text
    assert "Ratio with physics 0.90 against the target of 0.85: met" in text and "0.952" in text
