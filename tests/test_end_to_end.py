"""End to end with the shipped models on the example slices (examples/*.dcm).

Needs models/deltaiqa-int8.onnx and models/deltaiqa-fp32.onnx (or
$DELTAIQA_LITE_TEST_MODELS); skipped with that reason otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deltaiqa_lite import Scorer
from deltaiqa_lite.cli import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
BY_DOSE = ["dose-100.dcm", "dose-050.dcm", "dose-025.dcm", "dose-010.dcm"]  # best to worst


@pytest.fixture(scope="module")
def scorers(shipped_models):
    return {precision: Scorer(shipped_models / f"deltaiqa-{precision}.onnx", provider="cpu")
            for precision in ("int8", "fp32")}


@pytest.fixture(scope="module")
def example_scores(scorers):
    paths = sorted(EXAMPLES.glob("*.dcm"))
    assert len(paths) >= 5, "examples/*.dcm missing: run python -m convert.make_examples"
    return {precision: {Path(r.path).name: r for r in scorer.score_paths(paths)}
            for precision, scorer in scorers.items()}


def test_cards_honour_the_contract(scorers):
    for precision, scorer in scorers.items():
        card = scorer.card
        assert card["precision"] == precision
        assert card["name"] == "deltaiqa" and card["architecture"] == "Delta-IQA"
        assert card["class_labels"] == ["bad", "poor", "fair", "good", "excellent"]
        assert scorer.preprocessing.input_size == 512
        outputs = {o.name: o.shape for o in scorer.session.get_outputs()}
        assert outputs["probabilities"][1] == 5


def test_scores_in_range(example_scores):
    for results in example_scores.values():
        for name, result in results.items():
            assert result.ok, result.error
            assert 0.0 <= result.score <= 4.0
            assert sum(result.probabilities) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_examples_rank_by_dose(example_scores, precision):
    scores = [example_scores[precision][name].score for name in BY_DOSE]
    assert scores == sorted(scores, reverse=True), f"{precision} scores by dose 100..10 %: {scores}"
    assert scores[0] - scores[-1] > 0.5, f"{precision}: dose barely moves the score: {scores}"


# Issue 3 asks INT8 and FP32 to agree within 0.1 on every example. The v1 INT8
# missed it (0.132 on dose-100); the v2 models (issue 14, 7-bit weights) agree
# within 0.04.
def test_int8_and_fp32_agree(example_scores):
    for name, fp32 in example_scores["fp32"].items():
        int8 = example_scores["int8"][name]
        assert abs(int8.score - fp32.score) <= 0.1, f"{name}: int8 {int8.score:.3f} fp32 {fp32.score:.3f}"


def test_cli_scores_examples(shipped_models, capsys):
    code = main(["score", *map(str, sorted(EXAMPLES.glob("*.dcm"))), "--model",
                 str(shipped_models / "deltaiqa-int8.onnx"), "--json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0
    assert len(document["slices"]) == len(list(EXAMPLES.glob("*.dcm")))
    assert document["precision"] == "int8"
    # One series per example acquisition, each with one slice.
    assert all(s["n_slices"] == 1 for s in document["series"])


def test_int8_is_the_default_model_when_shipped():
    if not (REPO / "models" / "deltaiqa-int8.onnx").is_file():
        pytest.skip("models/deltaiqa-int8.onnx is not shipped yet")
    scorer = Scorer()
    assert scorer.precision == "int8"
    assert np.isfinite(scorer.score_file(EXAMPLES / "dose-100.dcm").score)
