"""Fine-tuning the shipped weights on a small labelled set (the site workflow of issue 14)."""

import json
from pathlib import Path

import pytest

from convert.sim import simulate_v2
from convert.sim.data import DataError
from convert.train.finetune import finetune

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "models" / "deltaiqa.weights.h5"
# The reference weights 0.1.0, trained on simulator v1 only (ellipse abdomens, one kernel).
V1_WEIGHTS_COMMIT = "1b94835"


def _v1_weights(tmp_path: Path) -> Path:
    """models/deltaiqa.weights.h5 as of V1_WEIGHTS_COMMIT, from git history."""
    from model_builders import file_from_git

    return file_from_git(V1_WEIGHTS_COMMIT, "models/deltaiqa.weights.h5", tmp_path / "v1.weights.h5")


def test_too_few_slices_is_refused(tmp_path):
    data = tmp_path / "site"
    simulate_v2.simulate_dataset(data, count=2, seed=0, workers=1, log=lambda *_: None)
    with pytest.raises(DataError, match="2 labelled slices; fine-tuning needs at least 20"):
        finetune(SHIPPED, data, tmp_path / "out", log=lambda *_: None)


@pytest.mark.slow
def test_finetune_on_small_simulated_set_improves_held_out(tmp_path):
    # Weights that learnt v1 only (ellipse abdomens, one kernel: the models 0.1.0); a small
    # v2 set (textured regions, three kernels) stands in for a site's own labelled slices.
    # The shipped 0.2.0 weights already learnt v2, so they would have nothing to adapt to.
    start = _v1_weights(tmp_path)
    from convert.sim.data import load_arrays, read_folder
    from convert.checks.evaluation import expected_score, quality_metrics
    from convert.train.model import load_model
    from convert.train.train import _predictor

    data, unseen = tmp_path / "site", tmp_path / "unseen"
    simulate_v2.simulate_dataset(data, count=40, seed=21, workers=1, log=lambda *_: None)
    simulate_v2.simulate_dataset(unseen, count=16, seed=22, workers=1, log=lambda *_: None)
    out = tmp_path / "finetune"
    report = finetune(start, data, out, seed=0, steps=40, eval_every=10, batch=8, crop=192,
                      patience=20, log=lambda *_: None)
    assert report["site_data"]["slices"] == 40
    assert report["splits"] == {"train": 32, "validation": 4, "test": 4, "disjoint_by": "phantom"}
    # Validation selects the checkpoint: never worse than the starting weights there.
    assert report["validation"]["sum"] >= report["before"]["validation"]["sum"]
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["finetuned_from"]["sha256"] and saved["before"] == report["before"]
    # Held out: 16 slices of 4 phantoms the fine-tuning never saw (another seed).
    images, labels = load_arrays(read_folder(unseen))
    metrics = {}
    for name, weights in (("before", start), ("after", out / "deltaiqa.weights.h5")):
        metrics[name] = quality_metrics(expected_score(_predictor(load_model(weights))(images)), labels)
    assert metrics["after"]["mae"] < metrics["before"]["mae"], metrics
