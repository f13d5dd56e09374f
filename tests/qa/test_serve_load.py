"""Load: a burst of 500 CT slices (512x512 int16) over loopback with DCMTK storescu.

Marked slow. Uses the real model (models/deltaiqa-int8.onnx, else -fp32, else
$DELTAIQA_LITE_TEST_MODELS). Prints slices/s received and scored and the
receiver's peak RSS; set DELTAIQA_QA_LOAD_JSON=FILE to also write them as JSON.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pynetdicom", reason="serve needs the 'net' extra (pynetdicom)")

from benchmarks.node import dcmtk_tool
from qa_builders import ct_dataset
from test_serve import ServeProcess

from deltaiqa_lite.qa.log import QALog

N_SLICES = 500
REPO = Path(__file__).resolve().parents[2]


def _real_model() -> Path | None:
    folders = [REPO / "models"]
    if os.environ.get("DELTAIQA_LITE_TEST_MODELS"):
        folders.insert(0, Path(os.environ["DELTAIQA_LITE_TEST_MODELS"]))
    for name in ("deltaiqa-int8.onnx", "deltaiqa-fp32.onnx"):
        for folder in folders:
            if (folder / name).is_file():
                return folder / name
    return None


@pytest.mark.slow
@pytest.mark.parametrize("queue_size", [256, 1024], ids=["default-queue", "queue-1024"])
def test_burst_of_500_slices(tmp_path: Path, queue_size: int) -> None:
    storescu = dcmtk_tool("storescu")
    if storescu is None:
        pytest.skip("DCMTK storescu not installed")
    model = _real_model()
    if model is None:
        pytest.skip("no shipped model in models/ (or $DELTAIQA_LITE_TEST_MODELS)")
    burst = tmp_path / "burst"
    burst.mkdir()
    series = "1.2.826.0.1.3680043.8.498.5000"
    for i in range(N_SLICES):
        ds = ct_dataset(size=512, seed=i, series_uid=series, study_uid=series + ".1",
                        instance=i + 1, noise_hu=15.0 + 25.0 * (i % 5))
        ds.save_as(burst / f"{i:04d}.dcm", enforce_file_format=True)

    # 256 (the default) is below the burst, so the sender is held back by the
    # bounded queue; 1024 shows the receiving rate without back-pressure.
    server = ServeProcess(tmp_path, model, "--allow", "SCANNER", "--queue-size", str(queue_size))
    try:
        started = time.monotonic()
        sent = subprocess.run(check=False, args=[storescu, "-aet", "SCANNER", "-aec", "DELTAIQA", "+sd",
                               server.host, str(server.port), str(burst)],
                              capture_output=True, text=True, timeout=600)
        received_s = time.monotonic() - started
        assert sent.returncode == 0, sent.stdout + sent.stderr
        counts = server.wait_logged(N_SLICES, timeout=600)
        scored_s = time.monotonic() - started
    finally:
        code, err = server.stop()
    assert code == 0, err
    assert counts == {"ok": N_SLICES}
    assert f"received {N_SLICES}, scored {N_SLICES} ({N_SLICES} slices)" in err
    assert "failed 0" in err and "out-of-resources 0" in err
    with QALog(server.log) as log:
        rows = log.slices()
        (summary,) = log.series()
    assert len({r.sop_instance_uid for r in rows}) == N_SLICES
    assert summary.n_slices == N_SLICES and summary.series_uid == series
    stamps = sorted(datetime.fromisoformat(r.scored_at) for r in rows)
    peak = float(re.search(r"peak RSS (\d+) MiB", err).group(1))
    figures = {
        "slices": N_SLICES, "queue_size": queue_size, "model_file": model.name,
        "model": rows[0].model, "precision": rows[0].precision, "provider": rows[0].provider,
        "send_wall_s": round(received_s, 2),
        "received_slices_per_s": round(N_SLICES / received_s, 1),
        "all_scored_wall_s": round(scored_s, 2),
        "scored_slices_per_s_end_to_end": round(N_SLICES / scored_s, 1),
        "scoring_span_s": round((stamps[-1] - stamps[0]).total_seconds(), 2),
        "receiver_peak_rss_mib": peak,
        "score_mean": round(float(np.mean([r.score for r in rows])), 3),
    }
    print("\nLOAD", json.dumps(figures))
    if os.environ.get("DELTAIQA_QA_LOAD_JSON"):
        with open(os.environ["DELTAIQA_QA_LOAD_JSON"], "a") as out:
            out.write(json.dumps(figures) + "\n")
