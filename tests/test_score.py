"""Scorer with a tiny ONNX graph: scoring rule, batches with broken files, threads, series summaries."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from pydicom.uid import generate_uid

from model_builders import CARD, make_tiny_model, tiny_probabilities
from dicom_builders import ct_dataset, enhanced_ct_dataset, phantom_hu, save
from deltaiqa_lite import DeltaIQAError, InputError, Scorer, SliceResult
from deltaiqa_lite.errors import ModelError
from deltaiqa_lite.model.preprocess import Preprocessing, prepare_hu
from deltaiqa_lite.score import likert_from_probabilities, summarise_series


@pytest.fixture(scope="module")
def scorer(tiny_model):
    return Scorer(tiny_model, provider="cpu", batch_size=3, threads=1)


# onnxruntime sums 512*512 float32 values for the mean; the test's float64 mean
# differs by ~1e-5 relative, which the logit weights (16) turn into ~1e-3 in score.
TOL = 2e-3


def expected_for(hu: np.ndarray) -> tuple[float, int, np.ndarray]:
    mean = float(prepare_hu(hu, Preprocessing()).mean())
    p = tiny_probabilities(mean)
    return float((p * np.arange(5)).sum()), int(p.argmax()), p


def test_scorer_reads_card_and_providers(scorer, tiny_model):
    assert scorer.card["name"] == "tiny-test"
    assert scorer.preprocessing == Preprocessing(-300.0, 1400.0, 512, "bilinear-half-pixel")
    assert scorer.providers == ["CPUExecutionProvider"]
    assert scorer.model_path == tiny_model
    assert scorer.session.get_inputs()[0].name == "image"


@pytest.mark.parametrize("level_hu", [-1000.0, -300.0, 100.0, 400.0])
def test_score_array_follows_scoring_rule(scorer, level_hu):
    hu = np.full((300, 400), level_hu, dtype=np.float32)
    result = scorer.score_array(hu, name="flat")
    score, likert, p = expected_for(hu)
    assert result.status == "ok" and result.error is None
    assert result.score == pytest.approx(score, abs=TOL)
    assert result.likert == likert
    assert result.label == CARD["class_labels"][likert]
    np.testing.assert_allclose(result.probabilities, p, atol=TOL)
    assert 0.0 <= result.score <= 4.0
    assert (result.model, result.precision, result.provider) == ("tiny-test-fp32", "fp32", "CPUExecutionProvider")


def test_likert_from_probabilities():
    scores, classes = likert_from_probabilities(np.array([[0, 0, 0.2, 0.8, 0], [1, 0, 0, 0, 0]]))
    np.testing.assert_allclose(scores, [2.8, 0.0])
    assert classes.tolist() == [3, 0]


def test_score_file_reads_dicom(scorer, tmp_path):
    hu = phantom_hu()
    ds = ct_dataset(hu)
    result = scorer.score_file(save(ds, tmp_path / "ct.dcm"))
    score, _, _ = expected_for(hu)
    assert result.score == pytest.approx(score, abs=TOL)
    assert result.sop_instance_uid == ds.SOPInstanceUID and result.series_uid == ds.SeriesInstanceUID
    assert result.slice_location == 0.0


def test_score_file_raises_input_error(scorer, tmp_path):
    path = save(ct_dataset(modality="MR"), tmp_path / "mr.dcm")
    with pytest.raises(InputError, match=r"mr\.dcm: \(0008,0060\) Modality is 'MR'"):
        scorer.score_file(path)


def test_batch_with_broken_files_reports_every_input_in_order(scorer, tmp_path):
    good = save(ct_dataset(phantom_hu(seed=1)), tmp_path / "good.dcm")
    mr = save(ct_dataset(modality="MR"), tmp_path / "mr.dcm")
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    text = tmp_path / "readme.txt"
    text.write_text("not dicom " * 50)
    multi = save(enhanced_ct_dataset([phantom_hu(seed=k) for k in range(4)]), tmp_path / "multi.dcm")
    missing = tmp_path / "missing.dcm"
    inputs = [good, mr, empty, multi, text, missing, good]
    results = scorer.score_paths(inputs)
    assert [r.path for r in results] == [str(good), str(mr), str(empty)] + [str(multi)] * 4 + \
        [str(text), str(missing), str(good)]
    assert [r.status for r in results] == ["ok", "error", "error"] + ["ok"] * 4 + ["error", "error", "ok"]
    assert [r.frame for r in results[3:7]] == [0, 1, 2, 3]
    errors = {r.path: r.error for r in results if not r.ok}
    assert errors[str(mr)].endswith("(0008,0060) Modality is 'MR'; deltaiqa-lite scores CT only")
    assert errors[str(empty)] == f"{empty}: file is empty (0 bytes); not a DICOM file"
    assert errors[str(missing)] == f"{missing}: no such file or folder"
    assert "not a DICOM file" in errors[str(text)]
    for result in results:
        if result.ok:
            assert result.score is not None and 0 <= result.score <= 4
        else:
            assert result.score is None and result.probabilities is None
    assert results[0].score == pytest.approx(results[-1].score, abs=1e-6)


def test_batch_size_and_reader_threads_do_not_change_results(tiny_model, tmp_path):
    paths = [save(ct_dataset(phantom_hu(seed=k) + 50 * k), tmp_path / f"{k}.dcm") for k in range(7)]
    reference = Scorer(tiny_model, provider="cpu", batch_size=1, reader_threads=1).score_paths(paths)
    batched = Scorer(tiny_model, provider="cpu", batch_size=4, reader_threads=3).score_paths(paths)
    assert [r.path for r in batched] == [str(p) for p in paths]
    np.testing.assert_allclose([r.score for r in batched], [r.score for r in reference], atol=1e-5)
    assert len({round(r.score, 4) for r in reference}) > 3  # inputs really differ


def test_folder_input_is_walked(scorer, tmp_path):
    (tmp_path / "series" / "sub").mkdir(parents=True)
    save(ct_dataset(), tmp_path / "series" / "1")
    save(ct_dataset(), tmp_path / "series" / "sub" / "2")
    results = scorer.score_paths(tmp_path / "series")
    assert [r.path for r in results] == [str(tmp_path / "series" / "1"), str(tmp_path / "series" / "sub" / "2")]


def test_concurrent_calls_match_serial(scorer):
    images = [np.full((128, 128), v, dtype=np.float32) for v in np.linspace(-900, 300, 12)]
    serial = [scorer.score_array(image).score for image in images]
    barrier = threading.Barrier(4)

    def work(index: int) -> float:
        if index < 4:
            barrier.wait()
        return scorer.score_array(images[index]).score

    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(work, range(len(images))))
    np.testing.assert_allclose(parallel, serial, atol=1e-6)


def test_predict_checks_shape(scorer):
    with pytest.raises(DeltaIQAError, match=r"predict expects a batch of shape \[N, 512, 512, 1\], got \(2, 512, 512\)"):
        scorer.predict(np.zeros((2, 512, 512), dtype=np.float32))
    out = scorer.predict(np.zeros((7, 512, 512, 1), dtype=np.float32))  # more than batch_size: chunked
    assert out.shape == (7, 5)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)


def test_score_series_summaries(scorer, tmp_path):
    series = generate_uid()
    levels = [-400.0, -200.0, 0.0, 200.0]
    for k, level in enumerate(levels):
        save(ct_dataset(np.full((96, 96), level, dtype=np.float32), series_uid=series, ipp=(0, 0, -k)),
             tmp_path / f"{k}.dcm")
    (tmp_path / "broken.dcm").write_bytes(b"junk")
    summaries = scorer.score_series(tmp_path, flag_below=2.0)
    assert [s.series_uid for s in summaries] == [series, None]
    main = summaries[0]
    # Ordered along the normal: z = -3, -2, -1, 0 -> levels reversed.
    expected = [expected_for(np.full((96, 96), lv, dtype=np.float32))[0] for lv in reversed(levels)]
    np.testing.assert_allclose([s.score for s in main.slices], expected, atol=TOL)
    assert (main.n_slices, main.n_ok, main.n_failed) == (4, 4, 0)
    scores = [s.score for s in main.slices]
    assert main.mean == pytest.approx(np.mean(scores), abs=1e-9)
    assert main.median == pytest.approx(np.median(scores), abs=1e-9)
    assert main.minimum == pytest.approx(min(scores), abs=1e-9)
    assert main.p10 == pytest.approx(np.percentile(scores, 10), abs=1e-9)
    assert main.n_below == sum(e < 2.0 for e in expected)
    assert 0 < main.n_below < 4
    assert summaries[1].n_failed == 1 and summaries[1].mean is None


def test_summarise_series_by_hand():
    results = [SliceResult(path=str(k), score=s, status="ok") for k, s in enumerate([1.0, 2.0, 3.0, 4.0])]
    results.append(SliceResult(path="bad", status="error", error="bad: broken"))
    summary = summarise_series("1.2.3", results, flag_below=2.5)
    assert (summary.n_slices, summary.n_ok, summary.n_failed) == (5, 4, 1)
    assert (summary.mean, summary.median, summary.minimum) == (2.5, 2.5, 1.0)
    assert summary.p10 == pytest.approx(1.3)
    assert summary.n_below == 2
    assert summarise_series("x", results).n_below is None


def test_model_without_card_is_refused(tmp_path):
    path = make_tiny_model(tmp_path / "nocard.onnx", card=None)
    with pytest.raises(ModelError, match=r"nocard\.onnx: no model card \(metadata_props\['model_card'\] is missing"):
        Scorer(path, provider="cpu")


def test_model_breaking_the_contract_is_refused(tmp_path):
    path = make_tiny_model(tmp_path / "wrong.onnx", input_name="input_1")
    with pytest.raises(ModelError, match=r"expected input 'image' and output 'probabilities', found inputs \['input_1'\]"):
        Scorer(path, provider="cpu")
    path = make_tiny_model(tmp_path / "size.onnx", input_size=256)
    with pytest.raises(ModelError, match=r"input 'image' has shape \['N', 256, 256, 1\], expected \[N, 512, 512, 1\]"):
        Scorer(path, provider="cpu")


def test_refused_slice_is_reported_under_its_series(scorer, tmp_path):
    series = generate_uid()
    save(ct_dataset(np.full((96, 96), 0.0, dtype=np.float32), series_uid=series, ipp=(0, 0, 0)),
         tmp_path / "ct.dcm")
    scout = ct_dataset(np.full((96, 96), 0.0, dtype=np.float32), series_uid=series, ipp=(0, 0, 1))
    scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    save(scout, tmp_path / "scout.dcm")
    (summary,) = scorer.score_series(tmp_path)
    assert summary.series_uid == series
    assert (summary.n_slices, summary.n_ok, summary.n_failed) == (2, 1, 1)
    refused = [s for s in summary.slices if s.status == "error"][0]
    assert refused.sop_instance_uid == str(scout.SOPInstanceUID)
    assert "a localizer (scout) is not an axial slice" in refused.error
