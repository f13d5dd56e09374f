"""The outside-training flag follows the model card's training domain (v1 constants without one)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from dicom_builders import ct_dataset, save
from model_builders import CARD, make_tiny_model
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from deltaiqa_lite import physics
from deltaiqa_lite.errors import ModelError
from deltaiqa_lite.physics import (
    FLAG_OUTSIDE_TRAINING,
    V1_TRAINING_DOMAIN,
    TrainingDomain,
)
from deltaiqa_lite.score import Scorer

SIZE = 512
HEAD_PHANTOM = "113690"

# A card's training.domain as convert/card/domain.py writes it for simulator v2 data (the
# ranges of data/sim-v2-1200: Dw 119.7-383.9 mm, fields 250-500 mm, plus 10 mm margins).
V2_DOMAIN = {
    "source": "simulator v2 (test)", "simulator_version": 2,
    "regions": ["head", "neck", "chest", "abdomen", "pelvis"],
    "body_parts": ["HEAD", "BRAIN", "SKULL", "NECK", "CHEST", "THORAX", "LUNG", "ABDOMEN", "PELVIS",
                   "ABDOMENPELVIS", "WHOLEBODY"],
    "head": True, "water_equivalent_diameter_mm": [109.7, 393.9], "field_of_view_mm": [240.0, 510.0],
}


def v2_card() -> dict:
    return {**CARD, "training": {"source": "python -m convert train", "domain": V2_DOMAIN}}


def cylinder(diameter_mm: float, field_mm: float, *, hu: float = 0.0, seed: int = 0) -> tuple[np.ndarray, float]:
    """A water cylinder with 15 HU noise in air, in a ``field_mm`` wide 512 x 512 slice, and its spacing."""
    spacing = field_mm / SIZE
    centre = (SIZE - 1) / 2.0
    y, x = (np.mgrid[0:SIZE, 0:SIZE] - centre) * spacing
    plane = np.where(np.hypot(x, y) <= diameter_mm / 2.0, hu, -1000.0).astype(np.float32)
    plane += np.random.default_rng(seed).normal(0.0, 15.0, plane.shape).astype(np.float32)
    return plane, spacing


def flags(diameter_mm: float, field_mm: float, domain: TrainingDomain | None, **header) -> list[str]:
    plane, spacing = cylinder(diameter_mm, field_mm)
    # No network score, so the noise-disagreement flag stays out of the way.
    return physics.measure_slice(plane, (spacing, spacing), **header).finish(None, domain=domain).flags


@pytest.fixture(scope="module")
def v2() -> TrainingDomain:
    return TrainingDomain.from_card(v2_card(), source="v2.onnx")


def test_card_domain_read_and_normalised(v2):
    assert v2.head is True
    assert v2.water_equivalent_diameter_mm == (109.7, 393.9) and v2.field_of_view_mm == (240.0, 510.0)
    assert {"HEAD", "CHEST", "ABDOMENPELVIS"} <= v2.body_parts and "KNEE" not in v2.body_parts
    spaced = {**V2_DOMAIN, "body_parts": ["Abdomen ", "chest"]}
    assert TrainingDomain.from_card({"training": {"domain": spaced}}).body_parts == {"ABDOMEN", "CHEST"}


@pytest.mark.parametrize("card", [CARD, {**CARD, "training": {}}, {**CARD, "training": None},
                                  {**CARD, "training": {"source": "external weights"}}])
def test_card_without_domain_falls_back_to_v1(card):
    domain = TrainingDomain.from_card(card)
    assert domain is V1_TRAINING_DOMAIN
    assert domain.water_equivalent_diameter_mm == physics.TRAINING_DW_MM
    assert domain.field_of_view_mm == physics.TRAINING_FOV_MM
    assert domain.body_parts == physics.TRAINING_BODY_PARTS and domain.head is False


@pytest.mark.parametrize("key, value, message", [
    ("water_equivalent_diameter_mm", [300.0, 200.0], r"water_equivalent_diameter_mm is \[300.0, 200.0\]"),
    ("field_of_view_mm", [250.0], r"field_of_view_mm is \[250.0\]; expected \[low, high\]"),
    ("field_of_view_mm", ["250", 500], "field_of_view_mm is"),
    ("body_parts", "ABDOMEN", "body_parts is 'ABDOMEN'; expected a list"),
    ("head", "yes", "head is 'yes'; expected true or false"),
])
def test_malformed_domain_is_a_model_error_naming_the_model(key, value, message):
    card = {**CARD, "training": {"domain": {**V2_DOMAIN, key: value}}}
    with pytest.raises(ModelError, match=r"^bad\.onnx: model card training\.domain\." + message):
        TrainingDomain.from_card(card, source="bad.onnx")
    with pytest.raises(ModelError, match="training.domain is 'v2'; expected a JSON object"):
        TrainingDomain.from_card({"training": {"domain": "v2"}}, source="bad.onnx")


def test_head_slice_on_16cm_phantom_inside_v2_outside_v1(v2):
    # A 170 mm head in a 250 mm field, CTDI on the 16 cm phantom, Body Part HEAD.
    head = {"body_part": "HEAD", "ctdi_phantom": HEAD_PHANTOM}
    assert flags(170, 250, v2, **head) == []
    assert FLAG_OUTSIDE_TRAINING in flags(170, 250, None, **head)
    # The 16 cm phantom alone (no body part) is outside only where the domain has no head.
    assert flags(170, 250, v2, ctdi_phantom=HEAD_PHANTOM) == []
    no_head = TrainingDomain(v2.body_parts - {"HEAD", "BRAIN", "SKULL"}, v2.water_equivalent_diameter_mm,
                             v2.field_of_view_mm, head=False)
    assert flags(170, 250, no_head, ctdi_phantom=HEAD_PHANTOM) == [FLAG_OUTSIDE_TRAINING]
    assert flags(170, 250, no_head, body_part="HEAD") == [FLAG_OUTSIDE_TRAINING]


def test_dw_140_inside_v2_outside_v1(v2):
    # A 350 mm field is inside both; only Dw (140 mm) decides.
    plane, spacing = cylinder(140, 350)
    measured = physics.measure_slice(plane, (spacing, spacing), body_part="ABDOMEN")
    assert measured.result.water_equivalent_diameter_mm == pytest.approx(140.0, rel=0.02)
    assert measured.finish(None, domain=v2).flags == []
    assert measured.finish(None).flags == [FLAG_OUTSIDE_TRAINING]
    assert measured.finish(None, domain=V1_TRAINING_DOMAIN).flags == [FLAG_OUTSIDE_TRAINING]
    # Below the v2 range too: a 100 mm body.
    assert flags(100, 350, v2) == [FLAG_OUTSIDE_TRAINING]


@pytest.mark.parametrize("field_mm, in_v1, in_v2", [(480, False, True), (520, False, False),
                                                    (260, False, True), (230, False, False),
                                                    (400, True, True)])
def test_field_of_view_against_each_domain(v2, field_mm, in_v1, in_v2):
    # A 220 mm body (Dw inside both domains): the field alone decides.
    assert (FLAG_OUTSIDE_TRAINING not in flags(220, field_mm, None)) is in_v1
    assert (FLAG_OUTSIDE_TRAINING not in flags(220, field_mm, v2)) is in_v2


@pytest.mark.parametrize("part, in_v1, in_v2", [("CHEST", False, True), ("NECK", False, True),
                                                ("ABDOMEN", True, True), ("KNEE", False, False),
                                                (None, True, True)])
def test_body_part_against_each_domain(v2, part, in_v1, in_v2):
    assert (FLAG_OUTSIDE_TRAINING not in flags(250, 400, None, body_part=part)) is in_v1
    assert (FLAG_OUTSIDE_TRAINING not in flags(250, 400, v2, body_part=part)) is in_v2


def test_physics_flags_keyword_default_is_v1():
    result = physics.PhysicsResult(water_equivalent_diameter_mm=140.0)
    assert physics.physics_flags(result, 2.0) == [FLAG_OUTSIDE_TRAINING]
    assert physics.physics_flags(result, 2.0, domain=None) == [FLAG_OUTSIDE_TRAINING]
    assert physics.physics_flags(result, 2.0, domain=TrainingDomain.from_card(v2_card())) == []


def _head_dicom(tmp_path, name: str) -> str:
    plane, spacing = cylinder(170, 250, hu=35.0, seed=3)
    ds = ct_dataset(np.round(plane), ipp=(-125.0, -125.0, 0.0))
    ds.PixelSpacing = [spacing, spacing]
    ds.CTDIvol = 40.0
    ds.BodyPartExamined = "HEAD"
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator = HEAD_PHANTOM, "DCM"
    item.CodeMeaning = "IEC Head Dosimetry Phantom"
    ds.CTDIPhantomTypeCodeSequence = DicomSequence([item])
    return str(save(ds, tmp_path / name))


def test_scorer_takes_the_domain_from_the_card(tmp_path):
    """A head slice: outside training for a v1 model (no domain in its card), inside for a v2 one."""
    v1_model = make_tiny_model(tmp_path / "v1.onnx")
    v2_model = make_tiny_model(tmp_path / "v2.onnx", card=json.loads(json.dumps(v2_card())))
    path = _head_dicom(tmp_path, "head.dcm")
    v1_scorer, v2_scorer = Scorer(v1_model, provider="cpu"), Scorer(v2_model, provider="cpu")
    assert v1_scorer.training_domain is V1_TRAINING_DOMAIN
    assert v2_scorer.training_domain.head and v2_scorer.training_domain.source == "simulator v2 (test)"
    (old,) = v1_scorer.score_paths([path])
    (new,) = v2_scorer.score_paths([path])
    assert old.ok and new.ok and old.score == new.score
    assert old.water_equivalent_diameter_mm == pytest.approx(new.water_equivalent_diameter_mm)
    assert FLAG_OUTSIDE_TRAINING in old.flags
    assert FLAG_OUTSIDE_TRAINING not in new.flags


def test_scorer_refuses_a_malformed_domain(tmp_path):
    card = {**CARD, "training": {"domain": {**V2_DOMAIN, "field_of_view_mm": "250-500"}}}
    model = make_tiny_model(tmp_path / "bad.onnx", card=card)
    with pytest.raises(ModelError, match=r"bad\.onnx: model card training\.domain\.field_of_view_mm is '250-500'"):
        Scorer(model, provider="cpu")


def test_info_prints_the_training_domain_of_each_card():
    from deltaiqa_lite.commands.info import _domain_line

    card = {"training": {"domain": {"body_parts": ["HEAD", "NECK", "CHEST"], "head": True,
                                    "regions": ["head", "neck", "chest"],
                                    "water_equivalent_diameter_mm": [110.0, 394.0],
                                    "field_of_view_mm": [240.0, 510.0]}}}
    assert _domain_line(card) == ("training domain: regions head, neck, chest; Dw 110-394 mm; "
                                  "field of view 240-510 mm")
    assert _domain_line({"training": {}}) == (
        "training domain (none in the card: the simulator v1 domain): "
        f"{len(physics.TRAINING_BODY_PARTS)} body parts, no head; Dw 180-390 mm; field of view 300-470 mm")
    assert _domain_line({"training": {"domain": {"body_parts": "HEAD"}}}).startswith(
        "training domain: unreadable (")
