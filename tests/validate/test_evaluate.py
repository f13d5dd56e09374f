"""evaluate: scores vs reference labels, leftovers listed, table/JSON/CSV/PNG outputs, CLI."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

pytest.importorskip("onnx")
scipy_stats = pytest.importorskip("scipy.stats")

import tiny_delta_model  # noqa: E402
from deltaiqa_lite.cli import main  # noqa: E402
from deltaiqa_lite.validate.evaluate import evaluate, to_json, write_outputs, write_table  # noqa: E402
from deltaiqa_lite.validate.labels import read_labels  # noqa: E402
from deltaiqa_lite.score import Scorer  # noqa: E402

NOISE_HU = (5.0, 15.0, 30.0, 50.0, 80.0, 120.0, 200.0)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return tiny_delta_model.build(tmp_path_factory.mktemp("models") / "tiny-fp32.onnx", seed=3)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A site's folder: HU slices with reference scores, a stack, a broken file, an unlabelled one."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("site")
    images = folder / "images"
    images.mkdir()
    rows = ["file,frame,score"]
    for index, noise in enumerate(NOISE_HU):
        np.save(images / f"slice{index:02d}.npy", tiny_delta_model.phantom(index, noise))
        rows.append(f"slice{index:02d}.npy,,{max(0.0, 4.0 - index * 0.6):.1f}")
    pages = [Image.fromarray(np.clip((tiny_delta_model.phantom(10 + s, 20.0 * (s + 1)) + 1000) / 1400, 0, 1)
                             .astype(np.float32), mode="F") for s in range(3)]
    pages[0].save(images / "valid_0.tif", save_all=True, append_images=pages[1:])
    rows += ["valid_0.tif,0,3.4", "valid_0.tif,1,2.2", "valid_0.tif,2,1.0"]
    rows.append("missing.npy,,2.0")
    np.save(images / "extra.npy", tiny_delta_model.phantom(99, 10.0))
    (images / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (folder / "ground-truth.json").write_text(
        json.dumps({"valid_0.tif": {"scores": [3.4, 2.2, 1.0]}}), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def scorer(tiny_model):
    return Scorer(str(tiny_model), provider="cpu")


def test_evaluate_pairs_scores_with_labels(site, scorer):
    labels = read_labels(site / "labels.csv")
    evaluation = evaluate(scorer, [site / "images"], labels, resamples=200, seed=1)
    assert evaluation.n_inputs == 12  # 7 npy + 3 pages + extra + broken
    assert len(evaluation.pairs) == 10
    assert [name.split("/")[-1] for name in evaluation.unlabelled] == ["extra.npy"]
    assert evaluation.unused_labels == ["missing.npy"]
    assert len(evaluation.failed) == 1 and "broken.npy" in evaluation.failed[0][1]
    # Same figures as scoring independently and computing with SciPy.
    results = {r.name.split("/")[-1]: r for r in scorer.score_paths([site / "images"]) if r.ok}
    expected = {key.name if key.frame is None else f"{key.name}[{key.frame}]": value
                for key, value in labels.scores.items()}
    names = [p.name.split("/")[-1] for p in evaluation.pairs]
    scores = np.array([results[n].score for n in names])
    reference = np.array([expected[n] for n in names])
    a = evaluation.agreement
    assert a.n == 10
    assert a.plcc == pytest.approx(scipy_stats.pearsonr(scores, reference).statistic, abs=1e-9)
    assert a.srocc == pytest.approx(scipy_stats.spearmanr(scores, reference).statistic, abs=1e-9)
    assert a.krocc == pytest.approx(scipy_stats.kendalltau(scores, reference).statistic, abs=1e-9)
    assert a.mae == pytest.approx(np.mean(np.abs(scores - reference)))
    assert a.accuracy == pytest.approx(np.mean(np.floor(scores + 0.5) == np.floor(reference + 0.5)))
    assert a.confusion.sum() == 10
    assert set(a.intervals) == {"plcc", "srocc", "krocc", "correlation_sum", "accuracy", "mae"}


def test_stacked_ldctiqac_labels_match_pages(site, scorer):
    evaluation = evaluate(scorer, [site / "images" / "valid_0.tif"],
                          read_labels(site / "ground-truth.json"), resamples=0)
    assert [p.label_key for p in evaluation.pairs] == ["valid_0.tif[0]", "valid_0.tif[1]",
                                                       "valid_0.tif[2]"]
    assert [p.reference for p in evaluation.pairs] == [3.4, 2.2, 1.0]
    assert evaluation.unlabelled == [] and evaluation.unused_labels == []


def test_outputs_table_json_csv_png(site, scorer, tmp_path):
    import io

    from PIL import Image

    evaluation = evaluate(scorer, [site / "images"], read_labels(site / "labels.csv"), resamples=100)
    written = write_outputs(evaluation, tmp_path / "report")
    assert [p.name for p in written] == ["evaluation.json", "evaluation.txt", "slices.csv",
                                         "confusion-matrix.png"]
    report = json.loads(written[0].read_text())
    assert report == json.loads(json.dumps(to_json(evaluation)))
    assert report["counts"] == {"inputs": 12, "evaluated": 10, "failed": 1, "unlabelled": 1,
                                "unused_labels": 1}
    assert report["unused_labels"] == ["missing.npy"]
    assert report["unlabelled_inputs"][0].endswith("extra.npy")
    assert np.array(report["confusion_matrix"]).sum() == 10
    assert report["metrics"]["plcc"]["ci_low"] <= report["metrics"]["plcc"]["value"] \
        <= report["metrics"]["plcc"]["ci_high"]
    assert len(written[2].read_text().splitlines()) == 11  # header + 10 slices
    table = io.StringIO()
    write_table(table, evaluation)
    text = table.getvalue()
    for needle in ("PLCC+SROCC+KROCC", "labels without a scored input (1):", "missing.npy",
                   "scored inputs without a label (1):", "failed inputs (1):", "confusion matrix"):
        assert needle in text
    with Image.open(written[3]) as png:
        pixels = np.asarray(png.convert("RGB"))
    assert png.size[0] > 300 and png.size[1] > 300
    # Some cell is shaded (not white, not grey text): the matrix was drawn.
    assert ((pixels[..., 2] > 90) & (pixels[..., 0] < 60)).any()


def test_cli_evaluate(site, tiny_model, tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["evaluate", "--labels", str(site / "labels.csv"), str(site / "images"),
                   "--model", str(tiny_model), "--provider", "cpu", "--format", "json",
                   "--bootstrap", "50", "--output", str(out)])
    captured = capsys.readouterr()
    assert status == 1  # broken.npy failed; everything else reported
    report = json.loads(captured.out)
    assert report["counts"]["evaluated"] == 10
    assert report["rules"]["bootstrap"]["resamples"] == 50
    assert "broken.npy" in captured.err and "1 scored inputs had no label" in captured.err
    assert (out / "confusion-matrix.png").is_file()
    # Same seed, same intervals.
    main(["evaluate", "--labels", str(site / "labels.csv"), str(site / "images"), "--model",
          str(tiny_model), "--provider", "cpu", "--format", "json", "--bootstrap", "50"])
    again = json.loads(capsys.readouterr().out)
    assert again["metrics"] == report["metrics"]


def test_cli_evaluate_all_ok_table(site, tiny_model, capsys):
    status = main(["evaluate", "--labels", str(site / "ground-truth.json"),
                   str(site / "images" / "valid_0.tif"), "--model", str(tiny_model),
                   "--provider", "cpu", "--bootstrap", "0"])
    out = capsys.readouterr().out
    assert status == 0
    assert "slices evaluated 3" in out and "KROCC" in out
    assert "only 3 labelled slices" in out


@pytest.mark.parametrize("label_text,message", [
    ('{"other.tif": 2.0}', "no scored input matched a label"),
    ('{"a.tif": 7}', "outside the Likert range"),
])
def test_cli_evaluate_label_problems_exit_2(site, tiny_model, tmp_path, capsys, label_text, message):
    labels = tmp_path / "labels.json"
    labels.write_text(label_text, encoding="utf-8")
    status = main(["evaluate", "--labels", str(labels), str(site / "images" / "slice00.npy"),
                   "--model", str(tiny_model), "--provider", "cpu"])
    assert status == 2
    assert message in capsys.readouterr().err


def test_evaluate_examples_with_shipped_model(shipped_models, tmp_path):
    """The README example: the simulator labels in the examples' headers as a site's label file."""
    from pathlib import Path

    import pydicom

    examples = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.dcm"))
    if not examples:
        pytest.skip("no examples/*.dcm")
    rows = ["file,score"]
    for path in examples:
        comment = str(pydicom.dcmread(path, stop_before_pixels=True).ImageComments)
        rows.append(f"{path.name},{float(comment.rsplit('simulator label', 1)[1]):.1f}")
    labels_file = tmp_path / "site-labels.csv"
    labels_file.write_text("\n".join(rows) + "\n", encoding="utf-8")
    scorer = Scorer(shipped_models / "deltaiqa-int8.onnx", provider="cpu")
    evaluation = evaluate(scorer, examples, read_labels(labels_file), resamples=100)
    assert evaluation.agreement.n == len(examples)
    assert not evaluation.failed and not evaluation.unlabelled and not evaluation.unused_labels
    scores = np.array([p.score for p in evaluation.pairs])
    reference = np.array([p.reference for p in evaluation.pairs])
    assert evaluation.agreement.srocc == pytest.approx(
        scipy_stats.spearmanr(scores, reference).statistic, abs=1e-9)


def test_physics_baseline_on_examples(shipped_models, tmp_path):
    """noise_score vs the simulator labels of the examples: correlations computed and reported."""
    from pathlib import Path

    import pydicom



    examples = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.dcm"))
    if not examples:
        pytest.skip("no examples/*.dcm")
    rows = ["file,score"]
    for path in examples:
        comment = str(pydicom.dcmread(path, stop_before_pixels=True).ImageComments)
        rows.append(f"{path.name},{float(comment.rsplit('simulator label', 1)[1]):.1f}")
    labels_file = tmp_path / "site-labels.csv"
    labels_file.write_text("\n".join(rows) + "\n", encoding="utf-8")
    scorer = Scorer(shipped_models / "deltaiqa-int8.onnx", provider="cpu")
    evaluation = evaluate(scorer, examples, read_labels(labels_file), resamples=0)
    baseline = evaluation.physics
    assert baseline.n == len(examples) and baseline.n_missing == 0
    noise_scores = np.array([p.noise_score for p in evaluation.pairs])
    reference = np.array([p.reference for p in evaluation.pairs])
    assert baseline.plcc == pytest.approx(scipy_stats.pearsonr(noise_scores, reference).statistic, abs=1e-9)
    assert baseline.srocc == pytest.approx(scipy_stats.spearmanr(noise_scores, reference).statistic, abs=1e-9)
    assert baseline.krocc == pytest.approx(scipy_stats.kendalltau(noise_scores, reference).statistic, abs=1e-9)
    assert baseline.network_correlation_sum == pytest.approx(evaluation.agreement.correlation_sum, abs=1e-9)
    assert to_json(evaluation)["physics_baseline"]["n"] == len(examples)
    buffer = io.StringIO()
    write_table(buffer, evaluation)
    assert "physics baseline" in buffer.getvalue()


def test_physics_baseline_without_noise_levels_says_why():
    from deltaiqa_lite.validate.evaluate import PairedSlice, physics_baseline

    pairs = [PairedSlice(path=f"{k}.tif", frame=None, score=2.0 + 0.1 * k, likert=2, reference=2.0 + 0.2 * k,
                         label_key=f"{k}.tif", physics_note="(0028,0030) Pixel Spacing is missing")
             for k in range(5)]
    baseline = physics_baseline(pairs)
    assert baseline.n == 0 and baseline.n_missing == 5 and baseline.correlation_sum is None
    assert "Pixel Spacing is missing" in baseline.reason
