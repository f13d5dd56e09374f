"""``python -m benchmarks.node`` end to end on a few objects: serve via storescu and watch via a copy."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.node import dcmtk_tool

pytest.importorskip("pynetdicom", reason="serve needs the 'net' extra (pynetdicom)")

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_node_benchmark_logs_every_object(tiny_model, tmp_path):
    if not dcmtk_tool("storescu") or not shutil.which("dcmcjpeg"):
        pytest.skip("DCMTK storescu and dcmcjpeg are needed")
    done = subprocess.run([sys.executable, "-m", "benchmarks.node", "--objects", "3", "--model", str(tiny_model),
                           "--out", str(tmp_path)], capture_output=True, text=True, cwd=str(REPO), timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    results = json.loads((tmp_path / "node.json").read_text())
    assert [run["syntax"] for run in results["runs"]] == ["explicit-le", "jpeg-lossless"]
    for run in results["runs"]:
        assert run["score_series"]["slices"] == 3
        serve, watch = run["serve"], run["watch"]
        assert (serve["acknowledged"], serve["logged_ok"], serve["lost"]) == (3, 3, 0)
        assert (watch["copied"], watch["logged_ok"], watch["lost"]) == (3, 3, 0)
        # (With a model this fast a row may land before the Success line is read: no sign asserted.)
        assert serve["success_to_row"]["max_s"] >= serve["success_to_row"]["p95_s"] >= serve["success_to_row"]["p50_s"]
        assert serve["peak_rss_mib"] > 0 and watch["peak_rss_mib"] > 0
    # JPEG Lossless travels compressed: storescu proposed it first and serve took it.
    (jpeg,) = results["runs"][1]["serve"]["storescu_syntax"]
    assert jpeg.startswith("JPEG Lossless") and jpeg.endswith("1st Order Prediction")
    assert "| jpeg-lossless | serve | 3 |" in (tmp_path / "node.md").read_text()
