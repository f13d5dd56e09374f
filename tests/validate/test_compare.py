"""compare: two models on the same slices."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnx")
scipy_stats = pytest.importorskip("scipy.stats")

import tiny_delta_model  # noqa: E402
from deltaiqa_lite.cli import main  # noqa: E402
from deltaiqa_lite.validate.compare import compare  # noqa: E402
from deltaiqa_lite.score import Scorer  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return (tiny_delta_model.build(folder / "a.onnx", seed=3),
            tiny_delta_model.build(folder / "b.onnx", seed=4))


@pytest.fixture(scope="module")
def slices(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slices")
    for index, noise in enumerate((5.0, 20.0, 45.0, 80.0, 150.0, 250.0)):
        np.save(folder / f"s{index}.npy", tiny_delta_model.phantom(index, noise))
    (folder / "zz-broken.npy").write_bytes(b"nope")
    return folder


def test_compare_two_models(models, slices):
    a = Scorer(str(models[0]), provider="cpu")
    b = Scorer(str(models[1]), provider="cpu")
    comparison = compare(a, b, [slices])
    results_a = [r for r in a.score_paths([slices]) if r.ok]
    results_b = [r for r in b.score_paths([slices]) if r.ok]
    score_a = np.array([r.score for r in results_a])
    score_b = np.array([r.score for r in results_b])
    assert len(comparison.pairs) == 6
    assert comparison.mean_abs_difference == pytest.approx(np.mean(np.abs(score_b - score_a)))
    assert comparison.max_abs_difference == pytest.approx(np.max(np.abs(score_b - score_a)))
    assert comparison.mean_difference == pytest.approx(np.mean(score_b - score_a))
    assert comparison.class_agreement == pytest.approx(
        np.mean([ra.likert == rb.likert for ra, rb in zip(results_a, results_b)]))
    assert comparison.plcc == pytest.approx(scipy_stats.pearsonr(score_a, score_b).statistic, abs=1e-9)
    assert comparison.krocc == pytest.approx(scipy_stats.kendalltau(score_a, score_b).statistic, abs=1e-9)
    assert comparison.class_confusion.sum() == 6
    assert [(side, name.split("/")[-1]) for side, name, _ in comparison.failed] == [
        ("A", "zz-broken.npy"), ("B", "zz-broken.npy")]


def test_model_against_itself_agrees_fully(models, slices):
    a = Scorer(str(models[0]), provider="cpu")
    comparison = compare(a, a, [slices])
    assert comparison.max_abs_difference == 0.0
    assert comparison.class_agreement == 1.0
    assert comparison.plcc == pytest.approx(1.0)


def test_cli_compare(models, slices, tmp_path, capsys):
    report_file = tmp_path / "compare.json"
    status = main(["compare", "--model-a", str(models[0]), "--model-b", str(models[1]),
                   "--provider-a", "cpu", "--provider-b", "cpu", str(slices), "-o", str(report_file)])
    captured = capsys.readouterr()
    assert status == 1
    assert "model A:" in captured.err and "zz-broken.npy" in captured.err
    assert "max |B - A|" in captured.out and "class agreement" in captured.out
    report = json.loads(report_file.read_text())
    assert report["counts"] == {"inputs": 7, "compared_slices": 6, "failed": 2}, report["failed"]
    assert len(report["slices"]) == 6
    status = main(["compare", "--model-a", str(models[0]), "--model-b", str(models[0]),
                   "--provider-a", "cpu", "--provider-b", "cpu", str(slices / "s0.npy"),
                   "--format", "json"])
    assert status == 0
    assert json.loads(capsys.readouterr().out)["max_abs_difference"] == 0.0


def test_compare_shipped_int8_with_fp32(shipped_models):
    from pathlib import Path

    examples = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.dcm"))
    if not examples:
        pytest.skip("no examples/*.dcm")
    fp32 = Scorer(shipped_models / "deltaiqa-fp32.onnx", provider="cpu")
    int8 = Scorer(shipped_models / "deltaiqa-int8.onnx", provider="cpu")
    comparison = compare(fp32, int8, examples)
    assert len(comparison.pairs) == len(examples) and not comparison.failed
    difference = np.array([r8.score - r32.score for r32, r8 in
                           zip(fp32.score_paths(examples), int8.score_paths(examples))])
    assert comparison.max_abs_difference == pytest.approx(np.abs(difference).max())
    assert comparison.mean_difference == pytest.approx(difference.mean())
    assert comparison.a.precision == "fp32" and comparison.b.precision == "int8"
