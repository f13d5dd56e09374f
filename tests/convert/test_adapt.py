"""``convert adapt``: site self-calibration on unlabelled public CT, no reader scores."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from convert import adapt
from convert.__main__ import main
from convert.checks.real_anatomy import _testdata_path
from convert.sim.data import DataError
from convert.sim.simulate_v3 import nps_amplitude, shaped_noise

MODELS = Path(__file__).resolve().parents[2] / "models"
# The distinct real CT slices of pydicom's test data: two heads, a neck, an abdomen (four patients).
PUBLIC_CT = ("J2K_pixelrep_mismatch.dcm", "693_UNCR.dcm", "bad_sequence.dcm", "explicit_VR-UN.dcm")


@pytest.fixture
def site(tmp_path):
    folder = tmp_path / "site"
    folder.mkdir()
    for name in PUBLIC_CT:
        shutil.copyfile(_testdata_path(name), folder / name)
    return folder


@pytest.mark.parametrize("kernel", ["soft", "standard", "sharp"])
def test_nearest_kernel_recovers_the_texture_of_inserted_noise(kernel):
    hu = np.full((512, 512), 45.0, dtype=np.float32)
    hu += 20.0 * shaped_noise(nps_amplitude(kernel, 1.0, 1.0), np.random.default_rng(3))
    found, distances = adapt.nearest_kernel(adapt.radial_nps(hu))
    assert found == kernel, distances


def test_too_few_usable_ct_slices_are_refused_with_one_line(tmp_path, capsys):
    folder = tmp_path / "site"
    folder.mkdir()
    shutil.copyfile(_testdata_path("693_UNCR.dcm"), folder / "head.dcm")
    (folder / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"1 usable CT slices .* adaptation needs at least 4"):
        adapt.AdaptData([folder], log=lambda *_: None).require()
    assert main(["adapt", "--data", str(folder), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "adapt: error:" in err and "usable CT slices" in err and "notes.txt" in err
    assert not (tmp_path / "out").exists()


def test_never_writes_over_the_starting_models(site, tmp_path, capsys):
    models = tmp_path / "models"
    models.mkdir()
    assert main(["adapt", "--data", str(site), "--output", str(models), "--models", str(models)]) == 2
    assert "never replace the starting ones" in capsys.readouterr().err


def test_copies_are_labelled_by_the_rule_on_their_measured_noise(site):
    data = adapt.AdaptData([site], log=lambda *_: None)
    assert len(data.slices) == 4
    # Regions from Body Part Examined; 693_UNCR has none.
    assert sorted(s["region"] for s in data.slices) == ["abdomen", "head", "neck", "unknown"]
    sites, records = adapt.make_samples(data, "standard", 6, seed=0, log=lambda *_: None)
    assert len(records) == 24
    labelled = [r for r in records if r["label"] is not None]
    assert len(sites.items) == len(labelled) >= 20
    assert len({i.group for i in sites.items}) == 4              # one group per patient
    from deltaiqa_lite.physics.label_rule import likert_label
    for record in labelled:
        assert record["label"] == likert_label(record["measured_noise_hu"])
    # Only very noisy copies go without a measurable noise level (no window stays homogeneous).
    for record in records:
        if record["label"] is None:
            assert record["inserted_sd_hu"] > 90 and record["unmeasured"], record
    labels = np.array([r["label"] for r in labelled])
    assert labels.min() <= 1.0 and labels.max() >= 3.0           # spread over the scale
    assert np.mean(labels >= 2.0) > 0.3


@pytest.mark.build
@pytest.mark.slow
def test_adapt_on_public_ct_end_to_end_better_on_an_unseen_patient(site, tmp_path):
    before_models = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in MODELS.iterdir()}
    out = tmp_path / "adapted"
    status = main(["adapt", "--data", str(site), "--output", str(out), "--models", str(MODELS),
                   "--samples-per-slice", "16", "--steps", "60", "--eval-every", "10", "--batch", "8",
                   "--patience", "4", "--no-real-anatomy"])
    # 0, or 1 when the INT8 export fails its gate: then neither INT8 nor a card is written
    # (no build without every gate passed); the weights, FP32 and metrics are kept for study.
    assert status in (0, 1)
    for name in ("deltaiqa.weights.h5", "deltaiqa-fp32.onnx", "metrics.json"):
        assert (out / name).exists(), name
    for name in ("deltaiqa-int8.onnx", "MODEL_CARD.md", "model-card.json"):
        assert (out / name).exists() == (status == 0), name
    metrics = json.loads((out / "metrics.json").read_text())
    adaptation = metrics["adaptation"]
    assert adaptation["usable_slices"] == 4
    assert adaptation["copies"] + adaptation["copies_unmeasured"] == 64 and adaptation["copies"] >= 56
    if status == 0:
        card = json.loads((out / "model-card.json").read_text())
        assert card["fp32"]["adaptation"]["usable_slices"] == 4
    # Early stopping keeps the starting weights unless a step agrees better with the rule on the
    # validation patient, a patient the weights never trained on: never worse there.
    assert metrics["validation"]["mae"] <= metrics["before"]["validation"]["mae"]
    before, after = adaptation["held_out_agreement_before"], adaptation["held_out_agreement_after"]
    assert set(before) == {"fp32", "int8"} and set(after) == ({"fp32", "int8"} if status == 0 else {"fp32"})
    assert before["fp32"].keys() == after["fp32"].keys()
    # And better on the held-out patient, whom neither training nor early stopping saw (models
    # 0.3.0 on the Zen 4 build machine: mean |score - rule| 0.239 before, 0.123 after). Models
    # 0.2.0 gained nothing here: they read a padded head's noise from its corners.
    for region, entry in after["fp32"].items():
        assert entry["mean_abs_diff"] < before["fp32"][region]["mean_abs_diff"], region
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in MODELS.iterdir()} == before_models
