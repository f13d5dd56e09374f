"""Selection policy (deltaiqa_lite/read/policy.py): one header per rule, classic and enhanced."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from dicom_builders import ct_dataset, enhanced_ct_dataset, phantom_hu, save
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import SecondaryCaptureImageStorage

from deltaiqa_lite.errors import RefusedInput
from deltaiqa_lite.read.dicom import read_dicom
from deltaiqa_lite.read.policy import RULES, PolicyRefusal, decide, normalise_accept

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


def _read(path: Path, accept=()) -> list:
    return list(read_dicom(path, accept=accept))


# -- classic CT Image Storage: one Image Type value family per case -----------------------------

CLASSIC_REFUSED = [
    # (Image Type, kind, value that --accept names)
    (("ORIGINAL", "PRIMARY", "LOCALIZER", "CT_SOM5 TOP"), "localizer", "LOCALIZER"),
    (("DERIVED", "SECONDARY", "PROJECTION IMAGE"), "projection", "PROJECTION IMAGE"),
    (("DERIVED", "SECONDARY", "MIP"), "MIP", "MIP"),
    (("DERIVED", "SECONDARY", "REFORMATTED", "MAXIP"), "MIP", "MAXIP"),
    (("DERIVED", "SECONDARY", "AXIAL", "MINIP"), "MinIP", "MINIP"),
    (("DERIVED", "SECONDARY", "MNIP"), "MinIP", "MNIP"),
    (("DERIVED", "SECONDARY", "REFORMATTED", "AVERAGE"), "thick-slab average", "AVERAGE"),
    (("DERIVED", "SECONDARY", "AXIAL", "CBV"), "perfusion map", "CBV"),
    (("DERIVED", "SECONDARY", "AXIAL", "TTP"), "perfusion map", "TTP"),
    (("DERIVED", "PRIMARY", "AXIAL", "SUBTRACTION"), "parametric map", "SUBTRACTION"),
    (("DERIVED", "PRIMARY", "AXIAL", "VMI", "ENERGY"), "virtual monoenergetic", "VMI"),
    (("DERIVED", "PRIMARY", "AXIAL", "MAT_REMOVED"), "material map", "MAT_REMOVED"),
    (("DERIVED", "PRIMARY", "AXIAL", "EFF_ATOMIC_NUM"), "material map", "EFF_ATOMIC_NUM"),
    (("DERIVED", "SECONDARY", "SCREEN SAVE"), "secondary capture", "SCREEN SAVE"),
]


@pytest.mark.parametrize("image_type, kind, key", CLASSIC_REFUSED)
def test_classic_image_type_refused_and_accepted(tmp_path, image_type, kind, key):
    path = save(ct_dataset(image_type=image_type), tmp_path / "image.dcm")
    shown = "\\\\".join(image_type)
    with pytest.raises(PolicyRefusal, match=rf"image\.dcm: \(0008,0008\) Image Type is '{shown}'; .*"
                                            rf"\(--accept {key} scores it anyway\)$") as refused:
        _read(path)
    assert (refused.value.kind, refused.value.key) == (kind, key)
    assert isinstance(refused.value, RefusedInput)
    (accepted,) = _read(path, accept=[key.lower()])  # any case
    assert accepted.policy_override == key
    (by_kind,) = _read(path, accept=[kind])
    assert by_kind.policy_override == key


@pytest.mark.parametrize("image_type", [
    ("ORIGINAL", "PRIMARY", "AXIAL"),
    ("DERIVED", "SECONDARY", "AXIAL"),                       # our examples, iterative / DL recons
    ("ORIGINAL", "PRIMARY", "AXIAL", "CT_SOM5 SPI"),
    ("DERIVED", "PRIMARY", "AXIAL", "ENERGY_PROP_WT", "NONE"),  # multi-energy mixed image
    ("ORIGINAL", "SECONDARY", "AXIAL", "FILTERED"),
])
def test_axial_reconstructions_are_scored_without_note(tmp_path, image_type):
    (item,) = _read(save(ct_dataset(image_type=image_type), tmp_path / "axial.dcm"))
    assert item.policy_override is None and item.policy_note is None


def test_examples_are_scored():
    paths = sorted(EXAMPLES.glob("*.dcm"))
    assert len(paths) >= 5
    for path in paths:
        assert pydicom.dcmread(path, stop_before_pixels=True).ImageType == ["DERIVED", "SECONDARY", "AXIAL"]
        (item,) = _read(path)
        assert item.policy_override is None and item.policy_note is None


def test_missing_or_unknown_image_type_is_scored_with_a_note(tmp_path):
    ds = ct_dataset()
    del ds.ImageType
    (item,) = _read(save(ds, tmp_path / "untyped.dcm"))
    assert item.policy_note.startswith("(0008,0008) Image Type is missing; scored")
    (item,) = _read(save(ct_dataset(image_type=("DERIVED", "SECONDARY", "REFORMATTED")), tmp_path / "ref.dcm"))
    assert "value 3 is 'REFORMATTED', not AXIAL" in item.policy_note
    (item,) = _read(save(ct_dataset(image_type=("ORIGINAL", "PRIMARY")), tmp_path / "two.dcm"))
    assert item.policy_note == ("(0008,0008) Image Type has no value 3 (AXIAL or LOCALIZER); "
                                "scored as an axial CT image")


def test_secondary_capture_sop_class_is_refused_even_as_ct(tmp_path):
    ds = ct_dataset(sop_class=SecondaryCaptureImageStorage, image_type=("DERIVED", "SECONDARY"))
    path = save(ds, tmp_path / "dose.dcm")
    with pytest.raises(PolicyRefusal, match=r"dose\.dcm: \(0008,0016\) SOP Class UID is 'Secondary Capture "
                                            r"Image Storage'; a secondary capture") as refused:
        _read(path)
    assert refused.value.kind == "secondary capture"
    (item,) = _read(path, accept=["secondary capture"])
    assert item.policy_override == "SECONDARY_CAPTURE"


def test_off_axial_is_a_rule_that_accept_can_override(tmp_path):
    path = save(ct_dataset(iop=(1, 0, 0, 0, 0, -1)), tmp_path / "coronal.dcm")
    with pytest.raises(PolicyRefusal, match=r"slice normal 90\.0 degrees from the patient z axis \(limit 30\); "
                                            r"deltaiqa-lite scores axial slices only") as refused:
        _read(path)
    assert refused.value.kind == "off-axial"
    (item,) = _read(path, accept=["off-axial"])
    assert item.policy_override == "OFF-AXIAL"


def test_first_unaccepted_rule_refuses(tmp_path):
    path = save(ct_dataset(image_type=("DERIVED", "SECONDARY", "MIP"), iop=(0, 1, 0, 0, 0, -1)),
                tmp_path / "sagittal-mip.dcm")
    with pytest.raises(PolicyRefusal, match=r"Image Orientation \(Patient\)"):
        _read(path, accept=["MIP"])
    (item,) = _read(path, accept=["MIP", "OFF_AXIAL"])
    assert item.policy_override == "MIP,OFF-AXIAL"


# -- enhanced CT: Frame Type and the CT Image Frame Type attributes, per frame ------------------

def _enhanced(frame_types, **frame_attributes) -> Dataset:
    """Two-frame Enhanced CT with a CT Image Frame Type item per frame."""
    ds = enhanced_ct_dataset([phantom_hu(seed=s) for s in range(len(frame_types))])
    for item, frame_type in zip(ds.PerFrameFunctionalGroupsSequence, frame_types):
        frame = Dataset()
        frame.FrameType = list(frame_type)
        frame.PixelPresentation = frame_attributes.get("PixelPresentation", "MONOCHROME")
        frame.VolumetricProperties = frame_attributes.get("VolumetricProperties", "VOLUME")
        frame.VolumeBasedCalculationTechnique = frame_attributes.get("VolumeBasedCalculationTechnique", "NONE")
        item.CTImageFrameTypeSequence = DicomSequence([frame])
    return ds


AXIAL = ("ORIGINAL", "PRIMARY", "AXIAL", "NONE")


@pytest.mark.parametrize("frame_type, attributes, element, kind, key", [
    (("DERIVED", "PRIMARY", "AXIAL", "MAXIMUM"), {}, r"\(0008,9007\) Frame Type", "MIP", "MAXIMUM"),
    (("DERIVED", "PRIMARY", "AXIAL", "MINIMUM"), {}, r"\(0008,9007\) Frame Type", "MinIP", "MINIMUM"),
    (("DERIVED", "PRIMARY", "AXIAL", "MEAN"), {}, r"\(0008,9007\) Frame Type", "thick-slab average", "MEAN"),
    (("DERIVED", "PRIMARY", "PERFUSION", "RCBV"), {}, r"\(0008,9007\) Frame Type", "perfusion map", "RCBV"),
    (("DERIVED", "PRIMARY", "AXIAL", "Z_SCORE"), {}, r"\(0008,9007\) Frame Type", "parametric map", "Z_SCORE"),
    (("DERIVED", "PRIMARY", "AXIAL", "VMI", "ENERGY"), {}, r"\(0008,9007\) Frame Type",
     "virtual monoenergetic", "VMI"),
    (("DERIVED", "PRIMARY", "AXIAL", "MAT_SPECIFIC", "MATERIAL"), {}, r"\(0008,9007\) Frame Type",
     "material map", "MAT_SPECIFIC"),
    (AXIAL, {"PixelPresentation": "COLOR"}, r"\(0008,9205\) Pixel Presentation", "colour map", "COLOR"),
    (AXIAL, {"PixelPresentation": "MIXED"}, r"\(0008,9205\) Pixel Presentation", "colour map", "MIXED"),
    (AXIAL, {"VolumetricProperties": "DISTORTED"}, r"\(0008,9206\) Volumetric Properties", "projection",
     "DISTORTED"),
    (AXIAL, {"VolumeBasedCalculationTechnique": "MAX_IP"}, r"\(0008,9207\) Volume Based Calculation Technique",
     "MIP", "MAX_IP"),
    (AXIAL, {"VolumeBasedCalculationTechnique": "MIN_IP"}, r"\(0008,9207\) Volume Based Calculation Technique",
     "MinIP", "MIN_IP"),
    (AXIAL, {"VolumeBasedCalculationTechnique": "VOLUME_RENDER"},
     r"\(0008,9207\) Volume Based Calculation Technique", "projection", "VOLUME_RENDER"),
    (AXIAL, {"VolumeBasedCalculationTechnique": "CURVED_MPR"},
     r"\(0008,9207\) Volume Based Calculation Technique", "curved reformat", "CURVED_MPR"),
])
def test_enhanced_frame_refused_names_the_frame(tmp_path, frame_type, attributes, element, kind, key):
    # Frame 1 is a plain axial frame, frame 2 the refused kind: the message names frame 2/2.
    path = save(_enhanced([AXIAL, frame_type], **attributes), tmp_path / "enhanced.dcm")
    if attributes:  # CT Image Frame Type attributes apply to both frames here
        where = "of frame 1/2"
    else:
        where = "of frame 2/2"
    with pytest.raises(PolicyRefusal, match=rf"enhanced\.dcm: {element} {where} is '.*{key}.*'; ") as refused:
        _read(path)
    assert (refused.value.kind, refused.value.key) == (kind, key)
    items = _read(path, accept=[key])
    assert [i.frame for i in items] == [0, 1]
    assert items[1].policy_override == key


def test_enhanced_axial_frames_are_scored(tmp_path):
    items = _read(save(_enhanced([AXIAL, ("DERIVED", "SECONDARY", "AXIAL", "RESAMPLED")]), tmp_path / "ok.dcm"))
    assert [(i.policy_override, i.policy_note) for i in items] == [(None, None), (None, None)]


def test_enhanced_perfusion_source_frames_are_scored_with_a_note(tmp_path):
    items = _read(save(_enhanced([("ORIGINAL", "PRIMARY", "PERFUSION", "NONE")] * 2), tmp_path / "dyn.dcm"))
    assert all("PERFUSION without a map value" in i.policy_note for i in items)


def test_derivation_code_in_the_frame_refuses(tmp_path):
    ds = _enhanced([AXIAL, AXIAL])
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "113078", "DCM", "Maximum intensity projection"
    derivation = Dataset()
    derivation.DerivationCodeSequence = DicomSequence([code])
    ds.SharedFunctionalGroupsSequence[0].DerivationImageSequence = DicomSequence([derivation])
    path = save(ds, tmp_path / "derived.dcm")
    with pytest.raises(PolicyRefusal, match=r"\(0008,9215\) Derivation Code Sequence of frame 1/2 is "
                                            r"\(DCM 113078, 'Maximum intensity projection'\); derived by maximum"):
        _read(path)
    assert _read(path, accept=["113078"])[0].policy_override == "113078"


def test_decide_is_pure_over_the_header():
    ds = ct_dataset(image_type=("DERIVED", "SECONDARY", "MIP"))
    with pytest.raises(PolicyRefusal):
        decide("x.dcm", ds)
    assert decide("x.dcm", ds, accept=normalise_accept(["mip"])).override == "MIP"
    assert "ImageType" in ds and ds.ImageType == ["DERIVED", "SECONDARY", "MIP"]  # untouched


def test_rule_table_is_well_formed():
    kinds = {rule.kind for rule in RULES}
    assert {"localizer", "off-axial", "MIP", "MinIP", "projection", "thick-slab average", "perfusion map",
            "parametric map", "virtual monoenergetic", "material map", "colour map",
            "secondary capture"} <= kinds
    for rule in RULES:
        assert rule.values and all(v == v.upper() for v in rule.values), rule
        assert rule.reason and "\n" not in rule.reason
    # No value may mean two kinds for the same element.
    seen: dict[tuple[str, str], str] = {}
    for rule in RULES:
        for value in rule.values:
            assert seen.setdefault((rule.element, value), rule.kind) == rule.kind, value


# -- the real thing: pydicom-data's eCT_Supplemental.dcm (a cerebral blood flow map) ----------

def _ect_supplemental() -> Path:
    pytest.importorskip("data_store", reason="pydicom-data is not installed (test extra)")
    from pydicom.data import get_testdata_file

    path = get_testdata_file("eCT_Supplemental.dcm")
    if path is None:
        pytest.skip("eCT_Supplemental.dcm not available offline")
    return Path(path)


def test_ect_supplemental_perfusion_map_is_refused():
    path = _ect_supplemental()
    with pytest.raises(PolicyRefusal, match=r"eCT_Supplemental\.dcm: \(0008,9007\) Frame Type of frame 1/2 is "
                                            r"'DERIVED\\PRIMARY\\PERFUSION\\RCBF'; a perfusion map") as refused:
        _read(path)
    assert refused.value.kind == "perfusion map"
    # Accepting RCBF alone is not enough: the frames are also meant for colour display.
    with pytest.raises(PolicyRefusal, match=r"\(0008,9205\) Pixel Presentation of frame 1/2 is 'COLOR'") as colour:
        _read(path, accept=["RCBF"])
    assert colour.value.kind == "colour map"
    items = _read(path, accept=["RCBF", "COLOR"])
    assert len(items) == 2 and all(i.policy_override == "RCBF,COLOR" for i in items)
    assert all(i.policy_note is None for i in items)


# -- the score command: refused_kind, --accept and policy_override in the output ---------------

def test_score_cli_accept_records_policy_override(tmp_path, tiny_model, capsys):
    from deltaiqa_lite.cli import main

    mip = save(ct_dataset(image_type=("DERIVED", "SECONDARY", "MIP")), tmp_path / "mip.dcm")
    axial = save(ct_dataset(image_type=("DERIVED", "SECONDARY", "AXIAL")), tmp_path / "axial.dcm")
    argv = ["score", str(axial), str(mip), "--model", str(tiny_model), "--provider", "cpu", "--json"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    records = {Path(r["path"]).name: r for r in json.loads(captured.out)["slices"]}
    assert records["mip.dcm"]["status"] == "error" and records["mip.dcm"]["refused_kind"] == "MIP"
    assert records["axial.dcm"]["refused_kind"] is None and records["axial.dcm"]["policy_override"] is None
    assert "(--accept MIP scores it anyway)" in captured.err

    assert main(argv + ["--accept", "mip"]) == 0
    records = {Path(r["path"]).name: r for r in json.loads(capsys.readouterr().out)["slices"]}
    assert records["mip.dcm"]["status"] == "ok" and records["mip.dcm"]["policy_override"] == "MIP"
    assert 0.0 <= records["mip.dcm"]["score"] <= 4.0
    assert records["axial.dcm"]["policy_override"] is None

    assert main(argv + ["--accept", "mip", "--format", "table"]) == 0
    assert "(accepted MIP)" in capsys.readouterr().out
