"""End to end with the shipped models on the example slices (examples/*.dcm).

Needs models/deltaiqa-int8.onnx and models/deltaiqa-fp32.onnx (or
$DELTAIQA_LITE_TEST_MODELS); skipped with that reason otherwise.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
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
    assert len(paths) >= 5, "examples/*.dcm missing: run python -m convert.checks.examples"
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


def _agreement(fp32: dict, int8: dict) -> dict:
    """The build gate's figures (deltaiqa-lite compare) of INT8 against FP32 on the examples."""
    names = sorted(fp32)
    a = np.array([fp32[n] for n in names])
    b = np.array([int8[n] for n in names])
    return {"mean": float(np.abs(b - a).mean()), "max": float(np.abs(b - a).max()),
            "rounded": float(np.mean(np.rint(a) == np.rint(b)))}


def _assert_within_gate(fp32: dict, int8: dict, where: str) -> None:
    for name in fp32:
        assert abs(int8[name] - fp32[name]) <= 0.1, f"{where}: {name}: int8 {int8[name]:.3f} fp32 {fp32[name]:.3f}"
    figures = _agreement(fp32, int8)
    # Issue 9's bar on every CPU: mean <= 0.05, worst <= 0.15, rounded agreement >= 0.97.
    assert figures["mean"] <= 0.05 and figures["max"] <= 0.15 and figures["rounded"] >= 0.97, (where, figures)


def test_int8_and_fp32_agree(example_scores):
    scores = {p: {name: r.score for name, r in example_scores[p].items()} for p in ("fp32", "int8")}
    _assert_within_gate(scores["fp32"], scores["int8"], "this CPU")


QEMU = shutil.which("qemu-x86_64")


@pytest.mark.slow
@pytest.mark.skipif(QEMU is None or platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="needs qemu-x86_64 (Debian qemu-user) on an x86_64 host")
def test_int8_and_fp32_agree_on_an_emulated_avx2_cpu(example_scores, shipped_models):
    """The shipped INT8 model on qemu's Haswell (AVX2, no AVX-512, no VNNI): onnxruntime picks its
    saturating u8s8 kernels there, whatever CPU runs CI. FP32 is CPU-independent; it runs natively."""
    paths = [str(p) for p in sorted(EXAMPLES.glob("*.dcm"))]
    done = subprocess.run(
        [QEMU, "-cpu", "Haswell", sys.executable, "-m", "deltaiqa_lite", "score", *paths,
         "--model", str(shipped_models / "deltaiqa-int8.onnx"), "--provider", "cpu", "--threads", "1",
         "--json"], capture_output=True, text=True, timeout=900, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    errors = [line for line in done.stderr.splitlines() if "TCG doesn't support" not in line]
    assert done.returncode == 0, "\n".join(errors[-20:])
    haswell = {Path(s["path"]).name: s["score"] for s in json.loads(done.stdout)["slices"]}
    fp32 = {name: r.score for name, r in example_scores["fp32"].items()}
    assert sorted(haswell) == sorted(fp32)
    _assert_within_gate(fp32, haswell, "qemu Haswell")


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
