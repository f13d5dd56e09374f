"""The training domain in the model card, derived from the simulator's own data and settings."""

from __future__ import annotations

import json

import pytest
from tiny_delta_model import card as tiny_card

from convert.card import domain
from convert.sim import anatomy, simulate, simulate_v2
from convert.card.card import add_training_domain, build_card
from convert.sim.data import DataError
from deltaiqa_lite import physics
from deltaiqa_lite.physics import FLAG_OUTSIDE_TRAINING, TrainingDomain

MARGIN_DW, MARGIN_FOV = domain.DW_MARGIN_MM, domain.FOV_MARGIN_MM


def _quiet(_message: str) -> None:
    pass


def _simulate_v2(out, monkeypatch, *, regions, fov_range, count):
    """A tiny v2 data set made with the given simulator settings (in-process, so the patch holds)."""
    monkeypatch.setattr(simulate_v2, "REGIONS", regions)
    monkeypatch.setattr(simulate_v2, "REGION_WEIGHTS", tuple(1.0 / len(regions) for _ in regions))
    monkeypatch.setattr(simulate_v2, "FOV_RANGE", fov_range)
    simulate_v2.simulate_dataset(out, count, seed=0, workers=1, variants=1, log=_quiet)
    return json.loads((out / "simulation.json").read_text())


@pytest.fixture(scope="module")
def head_neck(tmp_path_factory):
    """A v2 data set of head and neck slices only, and its domain."""
    with pytest.MonkeyPatch.context() as patch:
        simulation = _simulate_v2(tmp_path_factory.mktemp("head-neck"), patch, regions=("head", "neck"),
                                  fov_range=simulate_v2.FOV_RANGE, count=4)
    return simulation, domain.training_domain(simulation)


def test_v2_domain_follows_the_simulated_slices_and_settings(head_neck):
    simulation, found = head_neck
    slices = simulation["slices"]
    regions = [r for r in ("head", "neck") if any(s["region"] == r for s in slices)]
    assert found["simulator_version"] == 2 and found["regions"] == regions
    assert found["head"] is ("head" in regions)
    # Body parts of the trained regions only: no abdomen, chest or pelvis alone.
    assert ("NECK" in found["body_parts"]) is ("neck" in regions)
    assert ("HEAD" in found["body_parts"]) is ("head" in regions)
    assert not {"ABDOMEN", "CHEST", "PELVIS", "ABDOMENPELVIS"} & set(found["body_parts"])
    # Ranges: the extremes over the slices plus the documented margins...
    dws = [s["water_equivalent_diameter_mm"] for s in slices]
    fovs = [s["fov_mm"] for s in slices]
    assert found["water_equivalent_diameter_mm"] == pytest.approx([min(dws) - MARGIN_DW, max(dws) + MARGIN_DW])
    assert found["field_of_view_mm"] == pytest.approx([min(fovs) - MARGIN_FOV, max(fovs) + MARGIN_FOV])
    # ...and within what the simulator's settings allow (field range, head/neck sizes).
    low, high = simulation["summary"]["settings"]["fov_range_mm"]
    assert low - MARGIN_FOV <= found["field_of_view_mm"][0] <= found["field_of_view_mm"][1] <= high + MARGIN_FOV
    assert found["water_equivalent_diameter_mm"][1] < 230.0      # no trunk-sized patient in a head/neck set


def test_v2_domain_changes_with_the_settings(head_neck, tmp_path, monkeypatch):
    """Other regions and another field range give another domain: derived, not copied."""
    simulation = _simulate_v2(tmp_path, monkeypatch, regions=("abdomen",), fov_range=(400.0, 440.0), count=1)
    found = domain.training_domain(simulation)
    assert found["regions"] == ["abdomen"] and found["head"] is False
    assert "ABDOMEN" in found["body_parts"] and "HEAD" not in found["body_parts"]
    assert 400.0 - MARGIN_FOV <= found["field_of_view_mm"][0] <= found["field_of_view_mm"][1] <= 440.0 + MARGIN_FOV
    other = head_neck[1]
    assert found["field_of_view_mm"] != other["field_of_view_mm"]
    assert found["water_equivalent_diameter_mm"][0] > other["water_equivalent_diameter_mm"][1] - 2 * MARGIN_DW


def test_runtime_does_not_flag_its_own_v2_training_slice(head_neck, monkeypatch):
    """A slice of the data set, measured by the runtime: inside its domain, outside v1's."""
    simulation, found = head_neck
    card_domain = TrainingDomain.from_card(json.loads(json.dumps({"training": {"domain": found}})))
    monkeypatch.setattr(simulate_v2, "REGIONS", ("head", "neck"))
    monkeypatch.setattr(simulate_v2, "REGION_WEIGHTS", (0.5, 0.5))
    record = simulation["slices"][0]
    scan = simulate_v2.TexturedScan(seed=0, phantom_index=record["phantom"])   # the same phantom again
    assert scan.phantom.region == record["region"]
    acquired = scan.acquire(0.5, simulate_v2.FULL_VIEWS, "standard")
    spacing = (scan.geometry.pixel_mm, scan.geometry.pixel_mm)
    part = {"head": "HEAD", "neck": "NECK"}[record["region"]]
    measured = physics.measure_slice(acquired["hu"], spacing, body_part=part, ctdi_phantom="113690")
    assert measured.result.water_equivalent_diameter_mm == pytest.approx(
        record["water_equivalent_diameter_mm"], abs=2.0)
    assert FLAG_OUTSIDE_TRAINING not in measured.finish(None, domain=card_domain).flags
    assert FLAG_OUTSIDE_TRAINING in measured.finish(None).flags                   # v1 fallback


def test_v1_domain_redraws_the_phantoms_and_measures_them_like_the_runtime(tmp_path):
    simulate.simulate_dataset(tmp_path, 1, seed=3, workers=1, variants=1, log=_quiet)
    simulation = json.loads((tmp_path / "simulation.json").read_text())
    found = domain.training_domain(simulation)
    assert found["simulator_version"] == 1 and found["regions"] == list(simulate.REGIONS) == ["abdomen"]
    assert found["head"] is False and "ABDOMEN" in found["body_parts"] and "HEAD" not in found["body_parts"]
    # One phantom: the range is its Dw +- margin; the runtime measures the same Dw on its slice.
    scan = simulate.PhantomScan(3, 0)
    acquired = scan.acquire(1.0, simulate.FULL_VIEWS)
    spacing = (acquired["pixel_spacing_mm"], acquired["pixel_spacing_mm"])
    measured = physics.measure_slice(acquired["hu"], spacing).result.water_equivalent_diameter_mm
    low, high = found["water_equivalent_diameter_mm"]
    assert high - low == pytest.approx(2 * MARGIN_DW, abs=0.1)
    assert (low + high) / 2 == pytest.approx(measured, abs=2.0)
    assert found["field_of_view_mm"] == pytest.approx([scan.phantom.fov_mm - MARGIN_FOV,
                                                       scan.phantom.fov_mm + MARGIN_FOV], abs=0.06)
    # A record that the simulator would no longer draw is refused, not silently used.
    simulation["slices"][0]["body_width_mm"] += 5.0
    with pytest.raises(DataError, match="phantom 0: recorded body width .* the v1 simulator changed"):
        domain.training_domain(simulation)


def test_v1_fallback_constants_cover_the_v1_simulator():
    """The runtime's v1 constants (for cards without a domain) hold 300 v1 phantoms' Dw and fields."""
    simulation = {"summary": {"seed": 0}, "slices": [{"phantom": index} for index in range(300)]}
    found = domain.domain_v1(simulation)
    dw = [v + s * MARGIN_DW for v, s in zip(found["water_equivalent_diameter_mm"], (1, -1))]
    fov = [v + s * MARGIN_FOV for v, s in zip(found["field_of_view_mm"], (1, -1))]
    assert physics.TRAINING_DW_MM[0] <= dw[0] < dw[1] <= physics.TRAINING_DW_MM[1]
    assert physics.TRAINING_FOV_MM[0] <= fov[0] < fov[1] <= physics.TRAINING_FOV_MM[1]
    assert set(physics.TRAINING_BODY_PARTS) & set(found["body_parts"]) >= {"ABDOMEN", "ABDOMENPELVIS"}


def test_every_simulator_region_has_body_parts():
    for region in (*anatomy.REGIONS, *simulate.REGIONS):
        single = [v for v, covered in domain.BODY_PART_REGIONS.items() if covered == (region,)]
        assert single, region
        assert set(single) <= set(domain.body_parts_for([region]))
    with pytest.raises(DataError, match="region\\(s\\) 'knee' have no Body Part Examined"):
        domain.body_parts_for(["abdomen", "knee"])


@pytest.mark.parametrize("simulation, message", [
    ({"summary": {"version": 2}, "slices": []}, "has no slices"),
    ({"summary": {"version": 2}, "slices": [{"file": "0000.tif", "region": "head", "fov_mm": 250.0}]},
     "slice 0000.tif lacks water_equivalent_diameter_mm"),
    ({"summary": {"version": 4}, "slices": [{}]}, "summary.version is 4; expected 1, 2 or 3"),
    ({"summary": {}, "slices": [{"phantom": 0}]}, "summary has no seed"),
])
def test_unusable_simulation_json_is_refused(simulation, message):
    with pytest.raises(DataError, match=message):
        domain.training_domain(simulation)


def _simulation_v2_document() -> dict:
    slices = [{"file": "0000.tif", "region": "head", "water_equivalent_diameter_mm": 170.0, "fov_mm": 250.0},
              {"file": "0001.tif", "region": "pelvis", "water_equivalent_diameter_mm": 330.0, "fov_mm": 420.0}]
    return {"summary": {"version": 2, "settings": simulate_v2.settings()}, "slices": slices}


def test_add_training_domain_to_an_existing_card(tmp_path):
    card = tiny_card()
    card["training"] = {"source": "python -m convert train", "seed": 4}
    path = tmp_path / "simulation.json"
    path.write_text(json.dumps(_simulation_v2_document()))
    assert add_training_domain(card, path) is card
    assert card["training"]["seed"] == 4                       # the rest of the record is kept
    stored = card["training"]["domain"]
    assert stored["regions"] == ["head", "pelvis"] and stored["head"] is True
    assert stored["water_equivalent_diameter_mm"] == [160.0, 340.0]
    assert stored["field_of_view_mm"] == [240.0, 430.0]
    runtime = TrainingDomain.from_card(json.loads(json.dumps(card)))
    assert runtime.water_equivalent_diameter_mm == (160.0, 340.0) and runtime.head
    assert {"HEAD", "PELVIS", "ABDOMENPELVIS"} <= runtime.body_parts and "NECK" not in runtime.body_parts
    bare = add_training_domain({"name": "site model"}, _simulation_v2_document())
    assert bare["training"]["domain"] == stored


def test_build_card_records_the_domain_of_the_training_data(tmp_path):
    """The export path (build_card -> training_record) fills training.domain from simulation.json."""
    data = tmp_path / "sim"
    data.mkdir()
    document = _simulation_v2_document()
    (data / "simulation.json").write_text(json.dumps(document))
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"data": str(data), "seed": 0}))
    card = build_card(precision="fp32", source_weights=run / "deltaiqa.weights.h5", source_sha256="0" * 64)
    assert card["training"]["domain"] == domain.training_domain(document)
    assert card["training"]["simulator_version"] == 2
    # Weights without a training record: no domain, so the runtime uses the v1 fallback.
    (run / "metrics.json").unlink()
    assert "domain" not in build_card(precision="fp32", source_weights=run / "x.weights.h5",
                                      source_sha256="0" * 64)["training"]


def test_training_record_of_a_site_finetune_over_several_folders(tmp_path):
    """A fine-tune report may name several image folders (label-file form): no simulated data, no domain."""
    import json

    from convert.card.card import training_record

    (tmp_path / "metrics.json").write_text(json.dumps({
        "finetuned_from": {"weights": "w.h5", "sha256": "0" * 64}, "data": [str(tmp_path / "a"), str(tmp_path / "b")],
        "settings": {}, "seed": 0, "splits": {}}))
    record = training_record(tmp_path / "deltaiqa.weights.h5")
    assert record["source"] == "python -m convert finetune"
    assert "domain" not in record and "data" not in record


def test_v3_domain_comes_from_its_slices_like_v2():
    slices = [{"file": "00000.tif", "region": "head", "water_equivalent_diameter_mm": 180.0, "fov_mm": 250.0},
              {"file": "00001.tif", "region": "abdomen", "water_equivalent_diameter_mm": 448.0, "fov_mm": 500.0}]
    found = domain.training_domain({"summary": {"version": 3, "settings": {"regions": ["head", "abdomen"]}},
                                    "slices": slices})
    assert found["simulator_version"] == 3 and found["regions"] == ["head", "abdomen"]
    assert found["water_equivalent_diameter_mm"] == [170.0, 458.0] and found["head"] is True
