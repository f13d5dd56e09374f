"""The measure's pure logic: thresholds, three-valued out-of-range, category mapping, exam values."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from deltaiqa_lite.errors import CategoryMapError
from deltaiqa_lite.physics import exam


def test_eighteen_categories_with_the_published_thresholds():
    assert len(exam.CATEGORIES) == 18
    assert len({c.loinc for c in exam.CATEGORIES.values()}) == 18
    # Spot checks against AlaraCommonFunctions 1.5.000 ("CT Scan Qualifies").
    assert exam.CATEGORIES["Abdomen and Pelvis Routine Dose"] == exam.Category(
        "Abdomen and Pelvis Routine Dose", "LA31753-9", 29, 644)
    assert exam.CATEGORIES["Head Routine Dose"].noise_hu == 115
    assert exam.CATEGORIES["Simultaneous Head and Neck High Dose"].size_adjusted_dose_mgy_cm == 3092
    assert exam.CATEGORIES["Simultaneous Thoracic and Lumbar Spine"].loinc == "LA31851-1"


@pytest.mark.parametrize("noise, sad, expected", [
    (28.9, 643.9, False),       # both known, both below
    (29.0, 100.0, True),        # noise at the threshold counts
    (10.0, 644.0, True),        # SAD at the threshold counts
    (30.0, None, True),         # noise alone decides when it is out
    (20.0, None, None),         # noise below, SAD unknown: unknown (CQL null)
    (None, None, None),
])
def test_out_of_range_is_three_valued(noise, sad, expected):
    result, reasons = exam.out_of_range("Abdomen and Pelvis Routine Dose", noise, sad)
    assert result is expected
    if expected:
        assert any(">=" in r for r in reasons)
    if expected is None:
        assert "unknown" in reasons[0]


def test_reasons_name_what_is_out():
    result, reasons = exam.out_of_range("Chest Low Dose", 60.0, 400.0)
    assert result is True and reasons == ["noise 60.0 HU >= 55 HU", "size-adjusted dose 400.0 mGy.cm >= 377 mGy.cm"]


def test_uncategorized_has_no_thresholds():
    assert exam.out_of_range(exam.UNCATEGORIZED, 500.0, None)[0] is None


@pytest.mark.parametrize("description, category", [
    ("CT CHEST ABDOMEN PELVIS W CONTRAST", "Simultaneous Chest and Abdomen and Pelvis"),
    ("CT HEAD AND NECK ANGIO", "Simultaneous Head and Neck Routine Dose"),
    ("Low Dose Chest CT", "Chest Low Dose"),
    ("CT^Thorax", "Chest Routine Dose"),
    ("CT ABD/PELVIS", "Abdomen and Pelvis Routine Dose"),
    ("CT Head w/o", "Head Routine Dose"),
    ("CT C-SPINE", "Neck or Cervical Spine"),
    ("CT L-Spine", "Thoracic or Lumbar Spine"),
    ("CT KNEE LT", "Extremity"),
    ("Calcium Score", "Cardiac Low Dose"),
    ("QA phantom", exam.UNCATEGORIZED),
    ("PEDIATRIC", exam.UNCATEGORIZED),      # 'pe' is a whole word only
])
def test_default_mapping(description, category):
    rules = exam.load_category_rules()
    assert exam.categorize(exam.ExamText(descriptions=(description,)), rules) == category


def test_site_file_codes_and_first_rule_wins(tmp_path: Path):
    site = tmp_path / "site.toml"
    site.write_text('[[rule]]\ncategory = "Abdomen and Pelvis Low Dose"\nwords = ["stone"]\ncodes = ["RPID123"]\n'
                    '[[rule]]\ncategory = "Abdomen and Pelvis Routine Dose"\nwords = ["abdomen"]\n')
    rules = exam.load_category_rules(site)
    assert exam.categorize(exam.ExamText(descriptions=("Abdomen stone",)), rules) == "Abdomen and Pelvis Low Dose"
    assert exam.categorize(exam.ExamText(descriptions=("x",), procedure_codes=("RPID123",)), rules) \
        == "Abdomen and Pelvis Low Dose"
    assert exam.categorize(exam.ExamText(body_parts=("ABDOMEN",)), rules) == "Abdomen and Pelvis Routine Dose"


@pytest.mark.parametrize("text, message", [
    ('[[rule]]\ncategory = "Abdomen"\nwords = ["x"]\n', "rule 1 has category 'Abdomen'"),
    ('[[rule]]\ncategory = "Extremity"\n', "neither 'words' nor 'codes'"),
    ('[[rule]\n', "not valid TOML"),
    ('title = "empty"\n', "no [[rule]] tables"),
])
def test_bad_site_file_says_why(tmp_path: Path, text, message):
    site = tmp_path / "bad.toml"
    site.write_text(text)
    with pytest.raises(CategoryMapError, match="bad.toml") as caught:
        exam.load_category_rules(site)
    assert message in str(caught.value)


def test_python_3_10_gets_a_clear_message(tmp_path: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tomllib", None)   # import tomllib fails as on 3.10
    with pytest.raises(CategoryMapError, match="needs Python 3.11"):
        exam.load_category_rules(tmp_path / "x.toml")


def test_exam_values():
    assert exam.exam_noise([10.0, None, 30.0, 12.0]) == 12.0
    assert exam.exam_noise([None]) is None
    assert exam.middle_value([0.0, 5.0, 10.0, 15.0, 20.0], [300, 310, 320, None, 340]) == 320
    # mean CTDIvol 10 mGy over (20 - 0) + 5 mm = 2.5 cm
    assert exam.estimated_dlp([9.0, 11.0, None], [0.0, 20.0], 5.0) == pytest.approx(25.0)
    sad, reason = exam.size_adjusted_dose(500.0, 300.0)
    assert sad is None and "no public definition" in reason
