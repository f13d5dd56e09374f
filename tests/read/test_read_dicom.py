"""Reader branches and refusals of deltaiqa_lite.read.dicom, on datasets built in code."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (ComprehensiveSRStorage, ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless, RTPlanStorage, generate_uid)

from dicom_builders import ct_dataset, enhanced_ct_dataset, phantom_hu, save, stored_from_hu
from deltaiqa_lite.errors import InputError, MissingCodecError, RefusedInput
from deltaiqa_lite.read import read_slices
from deltaiqa_lite.read.dicom import display_orientation, read_dicom


def read_one(path: Path):
    slices = list(read_slices(path))
    assert len(slices) == 1
    return slices[0]


# -- stored values -> HU ---------------------------------------------------------------------

@pytest.mark.parametrize("slope, intercept, signed", [
    (1.0, -1024.0, True),
    (1.0, -1024.0, False),
    (1.0, 0.0, True),
    (0.5, -1024.0, True),
    (2.0, -2048.0, False),
    (1.0, -8192.0, False),
])
def test_rescale_variants_give_hu(tmp_path, slope, intercept, signed):
    hu = phantom_hu()
    ds = ct_dataset(hu, slope=slope, intercept=intercept, signed=signed)
    assert ds.PixelRepresentation == (1 if signed else 0)
    item = read_one(save(ds, tmp_path / "ct.dcm"))
    assert item.hu.dtype == np.float32
    # Rounding of stored values loses at most half a step.
    np.testing.assert_allclose(item.hu, hu, atol=slope / 2 + 1e-4)


def test_enhanced_per_frame_rescale_beats_top_level(tmp_path):
    frames = [phantom_hu(seed=k) + 10 * k for k in range(3)]
    rescales = [(1.0, -1024.0), (0.5, -512.0), (2.0, -3000.0)]
    ds = enhanced_ct_dataset(frames, rescales=rescales, top_level_rescale=(1.0, 0.0))
    slices = list(read_dicom(save(ds, tmp_path / "enhanced.dcm")))
    assert [s.frame for s in slices] == [0, 1, 2]
    for item, hu, (slope, _) in zip(slices, frames, rescales):
        np.testing.assert_allclose(item.hu, hu, atol=slope / 2 + 1e-4)
    # The pitfall the reader exists for: pydicom's modality LUT ignores functional groups.
    from pydicom.pixels import apply_modality_lut
    naive = apply_modality_lut(ds.pixel_array[2], ds)
    assert np.abs(naive - frames[2]).max() > 1000


def test_enhanced_shared_rescale_and_positions(tmp_path):
    frames = [phantom_hu(seed=k) for k in range(2)]
    ds = enhanced_ct_dataset(frames, shared_rescale=(1.0, -1024.0),
                             positions=[(0, 0, 12.5), (0, 0, 10.0)])
    slices = list(read_dicom(save(ds, tmp_path / "shared.dcm")))
    for item, hu in zip(slices, frames):
        np.testing.assert_allclose(item.hu, hu, atol=0.5)
    assert [s.slice_location for s in slices] == [12.5, 10.0]
    assert slices[0].pixel_spacing_mm == (0.8, 0.8)
    assert slices[0].sop_instance_uid == slices[1].sop_instance_uid == ds.SOPInstanceUID


def test_monochrome1_hu_are_not_inverted(tmp_path):
    hu = phantom_hu()
    mono2 = read_one(save(ct_dataset(hu), tmp_path / "m2.dcm")).hu
    mono1 = read_one(save(ct_dataset(hu, photometric="MONOCHROME1"), tmp_path / "m1.dcm")).hu
    # The Modality LUT output is HU whatever the display polarity: air stays air.
    np.testing.assert_array_equal(mono1, mono2)
    assert mono1[0, 0] == pytest.approx(hu[0, 0], abs=0.5)


def test_pixel_padding_value_is_air(tmp_path):
    hu = phantom_hu()
    stored = stored_from_hu(hu, 1.0, -1024.0, True)
    stored[:, :10] = -2000  # outside the reconstruction circle
    item = read_one(save(ct_dataset(stored=stored, padding=-2000), tmp_path / "pad.dcm"))
    assert np.all(item.hu[:, :10] == -1000.0)
    np.testing.assert_allclose(item.hu[:, 10:], hu[:, 10:], atol=0.5)


def test_pixel_padding_range_limit(tmp_path):
    hu = phantom_hu()
    stored = stored_from_hu(hu, 1.0, 0.0, False)  # unsigned, intercept 0: 'HU' >= 0
    stored[:8, :] = 3000
    stored[-8:, :] = 3500
    ds = ct_dataset(stored=stored, slope=1.0, intercept=0.0, padding=3000, padding_limit=3500)
    item = read_one(save(ds, tmp_path / "range.dcm"))
    assert np.all(item.hu[:8] == -1000.0) and np.all(item.hu[-8:] == -1000.0)
    assert item.hu[40:50].max() > 0


def test_padding_value_read_as_unsigned_in_signed_image(tmp_path):
    stored = stored_from_hu(phantom_hu(), 1.0, -1024.0, True)
    stored[:5] = -2000
    ds = ct_dataset(stored=stored, padding=-2000)
    ds["PixelPaddingValue"].VR = "US"
    ds.PixelPaddingValue = 65536 - 2000  # what a writer that guessed US leaves
    item = read_one(save(ds, tmp_path / "us.dcm"))
    assert np.all(item.hu[:5] == -1000.0)


def test_file_without_preamble_is_read(tmp_path):
    ds = ct_dataset()
    del ds.file_meta  # a bare dataset: no preamble, no 'DICM', no File Meta
    path = tmp_path / "raw"
    pydicom.dcmwrite(path, ds, implicit_vr=True, little_endian=True)
    raw = path.read_bytes()
    assert raw[128:132] != b"DICM"
    item = read_one(path)
    assert item.sop_instance_uid == ds.SOPInstanceUID


# -- orientation --------------------------------------------------------------------------

def _stored_for_orientation(canonical: np.ndarray, iop) -> np.ndarray:
    """Lay out the canonical display image as a scanner with this IOP would store it."""
    row_dir = np.round(np.asarray(iop[:3]))
    col_dir = np.round(np.asarray(iop[3:]))
    n = canonical.shape[0]
    i, j = np.mgrid[0:n, 0:n]
    px = i * col_dir[0] + j * row_dir[0]
    py = i * col_dir[1] + j * row_dir[1]
    return canonical[(py - py.min()).astype(int), (px - px.min()).astype(int)]


@pytest.mark.parametrize("iop", [
    (1, 0, 0, 0, 1, 0),
    (-1, 0, 0, 0, 1, 0),
    (1, 0, 0, 0, -1, 0),
    (-1, 0, 0, 0, -1, 0),
    (0, 1, 0, 1, 0, 0),
    (0, -1, 0, 1, 0, 0),
    (0, 1, 0, -1, 0, 0),
    (0, -1, 0, -1, 0, 0),
])
def test_orientation_normalised_to_display(tmp_path, iop):
    canonical = phantom_hu()
    stored_hu = _stored_for_orientation(canonical, iop)
    if iop != (1, 0, 0, 0, 1, 0):
        assert not np.array_equal(stored_hu, canonical)
    item = read_one(save(ct_dataset(stored_hu, iop=iop), tmp_path / "o.dcm"))
    np.testing.assert_allclose(item.hu, canonical, atol=0.5)


def test_gantry_tilt_within_limit_is_scored(tmp_path):
    tilt = math.radians(20)
    iop = (1, 0, 0, 0, math.cos(tilt), -math.sin(tilt))
    hu = phantom_hu()
    item = read_one(save(ct_dataset(hu, iop=iop), tmp_path / "tilt.dcm"))
    np.testing.assert_allclose(item.hu, hu, atol=0.5)
    assert item.normal[2] == pytest.approx(math.cos(tilt))


def test_display_orientation_swaps_spacing_when_transposed():
    plane = np.arange(12, dtype=np.float32).reshape(3, 4)
    out, spacing = display_orientation(plane, [0, 1, 0, 1, 0, 0], (0.5, 0.7))
    assert out.shape == (4, 3) and spacing == (0.7, 0.5)
    np.testing.assert_array_equal(out, plane.T)


# -- compressed transfer syntaxes ---------------------------------------------------------

def _codec(package: str) -> None:
    pytest.importorskip(package, reason=f"{package} (codecs extra) is not installed")


def test_rle_lossless(tmp_path):
    hu = phantom_hu()
    ds = ct_dataset(hu)
    ds.compress(RLELossless)
    item = read_one(save(ds, tmp_path / "rle.dcm"))
    np.testing.assert_allclose(item.hu, hu, atol=0.5)


def test_jpeg2000_lossless(tmp_path):
    _codec("openjpeg")
    hu = phantom_hu()
    ds = ct_dataset(hu)
    ds.compress(JPEG2000Lossless)
    path = save(ds, tmp_path / "j2k.dcm")
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == JPEG2000Lossless
    np.testing.assert_allclose(read_one(path).hu, hu, atol=0.5)


@pytest.mark.parametrize("tool, option, syntax", [
    ("dcmcjpeg", "+e1", "1.2.840.10008.1.2.4.70"),   # JPEG Lossless SV1
    ("dcmcjpeg", "+el", "1.2.840.10008.1.2.4.57"),   # JPEG Lossless process 14
    ("dcmcjpls", "+el", "1.2.840.10008.1.2.4.80"),   # JPEG-LS Lossless
])
def test_jpeg_lossless_and_jpeg_ls_from_dcmtk(tmp_path, tool, option, syntax):
    _codec("libjpeg")
    if shutil.which(tool) is None:
        pytest.skip(f"dcmtk's {tool} is not installed (apt-get install dcmtk) to write {syntax}")
    hu = phantom_hu()
    source = save(ct_dataset(hu), tmp_path / "plain.dcm")
    target = tmp_path / "compressed.dcm"
    subprocess.run([tool, option, str(source), str(target)], check=True, capture_output=True)
    assert pydicom.dcmread(target).file_meta.TransferSyntaxUID == syntax
    np.testing.assert_allclose(read_one(target).hu, hu, atol=0.5)


def test_undecodable_syntax_names_it(tmp_path):
    ds = ct_dataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.92"  # JPEG 2000 Part 2 multi-component
    ds.PixelData = pydicom.encaps.encapsulate([b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    path = save(ds, tmp_path / "part2.dcm")
    with pytest.raises(InputError, match=r"part2.dcm: \(0002,0010\) Transfer Syntax UID is 'JPEG 2000 Part 2"):
        read_one(path)


def test_missing_codec_message_format():
    error = MissingCodecError("x.dcm", "(0002,0010) Transfer Syntax UID is 'JPEG Lossless'; decoding it "
                                       "needs the codecs extra: pip install 'deltaiqa-lite[codecs]'")
    assert isinstance(error, InputError) and str(error).startswith("x.dcm: (0002,0010)")


# -- refusals ------------------------------------------------------------------------------

def test_refuses_mr(tmp_path):
    path = save(ct_dataset(modality="MR"), tmp_path / "mr.dcm")
    with pytest.raises(RefusedInput, match=r"^.*mr\.dcm: \(0008,0060\) Modality is 'MR'; deltaiqa-lite scores CT only$"):
        read_one(path)


def test_refuses_localizer(tmp_path):
    path = save(ct_dataset(image_type=("ORIGINAL", "PRIMARY", "LOCALIZER")), tmp_path / "scout.dcm")
    with pytest.raises(RefusedInput, match=r"scout\.dcm: \(0008,0008\) Image Type is "
                                           r"'ORIGINAL\\PRIMARY\\LOCALIZER'; a localizer \(scout\)"):
        read_one(path)


@pytest.mark.parametrize("iop, degrees", [
    ((1, 0, 0, 0, 0, -1), 90.0),                                   # coronal
    ((0, 1, 0, 0, 0, -1), 90.0),                                   # sagittal
    ((1, 0, 0, 0, math.cos(math.radians(40)), -math.sin(math.radians(40))), 40.0),  # tilt 40
])
def test_refuses_non_axial(tmp_path, iop, degrees):
    path = save(ct_dataset(iop=iop), tmp_path / "plane.dcm")
    with pytest.raises(RefusedInput, match=rf"plane\.dcm: \(0020,0037\) Image Orientation \(Patient\) is "
                                           rf"\[.*\]: slice normal {degrees:.1f} degrees from the patient z axis "
                                           rf"\(limit 30\); deltaiqa-lite scores axial slices only"):
        read_one(path)


@pytest.mark.parametrize("sop_class, modality, name", [
    (ComprehensiveSRStorage, "SR", "Comprehensive SR Storage"),
    (RTPlanStorage, "RTPLAN", "RT Plan Storage"),
])
def test_refuses_non_image_objects(tmp_path, sop_class, modality, name):
    ds = Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.SOPClassUID = sop_class
    ds.Modality = modality
    path = save(ds, tmp_path / "object.dcm")
    with pytest.raises(RefusedInput, match=rf"object\.dcm: \(0008,0016\) SOP Class UID is '{name}'; "
                                           r"not an image, nothing to score"):
        read_one(path)


def test_refuses_rgb(tmp_path):
    ds = ct_dataset()
    rgb = np.zeros((96, 96, 3), dtype=np.uint8)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = rgb.tobytes()
    path = save(ds, tmp_path / "rgb.dcm")
    with pytest.raises(RefusedInput, match=r"rgb\.dcm: \(0028,0004\) Photometric Interpretation is 'RGB' "
                                           r"\(3 samples per pixel\); deltaiqa-lite needs greyscale CT"):
        read_one(path)


def test_refuses_missing_pixel_data(tmp_path):
    ds = ct_dataset()
    del ds.PixelData
    path = save(ds, tmp_path / "nopix.dcm")
    with pytest.raises(InputError, match=r"nopix\.dcm: \(7FE0,0010\) Pixel Data is missing$"):
        read_one(path)


def test_refuses_truncated_pixel_data(tmp_path):
    ds = ct_dataset()
    ds.PixelData = ds.PixelData[:1000]
    path = save(ds, tmp_path / "short.dcm")
    with pytest.raises(InputError, match=r"short\.dcm: \(7FE0,0010\) Pixel Data is truncated: 1000 bytes, "
                                         r"expected 18432"):
        read_one(path)


def test_refuses_truncated_file(tmp_path):
    full = save(ct_dataset(), tmp_path / "full.dcm").read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(InputError, match=r"cut\.dcm: .*(Pixel Data|cannot read DICOM)"):
        read_one(path)


def test_refuses_small_images(tmp_path):
    path = save(ct_dataset(np.zeros((32, 48), dtype=np.float32)), tmp_path / "tiny.dcm")
    with pytest.raises(RefusedInput, match=r"tiny\.dcm: \(0028,0010\) Rows x \(0028,0011\) Columns is "
                                           r"32 x 48; smaller than 64 x 64"):
        read_one(path)


def test_refuses_empty_file(tmp_path):
    path = tmp_path / "empty.dcm"
    path.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.dcm: file is empty \(0 bytes\); not a DICOM file"):
        read_one(path)


def test_refuses_non_dicom_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("this is not a DICOM file\n" * 20)
    with pytest.raises(InputError, match=r"notes\.txt: not a DICOM file"):
        read_one(path)


def test_missing_modality_accepted_only_for_ct_sop_class(tmp_path):
    hu = phantom_hu()
    item = read_one(save(ct_dataset(hu, modality=None), tmp_path / "nomod.dcm"))
    np.testing.assert_allclose(item.hu, hu, atol=0.5)
    path = save(ct_dataset(modality=None, sop_class="1.2.840.10008.5.1.4.1.1.7"), tmp_path / "sc.dcm")
    with pytest.raises(RefusedInput, match=r"\(0008,0060\) Modality is missing and \(0008,0016\) SOP Class UID "
                                           r"is 'Secondary Capture Image Storage'"):
        read_one(path)


def test_enhanced_localizer_frame_is_refused(tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    ds = enhanced_ct_dataset([phantom_hu(seed=1), phantom_hu(seed=2)])
    for index, frame_type in enumerate((["ORIGINAL", "PRIMARY", "AXIAL", "NONE"],
                                        ["ORIGINAL", "PRIMARY", "LOCALIZER", "NONE"])):
        item = Dataset()
        item.FrameType = frame_type
        ds.PerFrameFunctionalGroupsSequence[index].CTImageFrameTypeSequence = DicomSequence([item])
    path = save(ds, tmp_path / "scout.dcm")
    with pytest.raises(RefusedInput, match=r"scout.dcm: \(0008,9007\) Frame Type of frame 2/2 is "
                                           r"'ORIGINAL\\PRIMARY\\LOCALIZER\\NONE'; a localizer"):
        list(read_dicom(path))
    # Axial frame types pass.
    ds.PerFrameFunctionalGroupsSequence[1].CTImageFrameTypeSequence[0].FrameType = \
        ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    assert len(list(read_dicom(save(ds, tmp_path / "axial.dcm")))) == 2


# -- hostile headers (issue 13) ---------------------------------------------------------------

def _raw(ds: Dataset, keyword: str, vr: str, text: str) -> None:
    """Put a value into ``ds`` exactly as a hostile sender would write it (no validation)."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    tag = Tag(pydicom.datadict.tag_for_keyword(keyword))
    value = text.encode("ascii")
    value += b" " * (len(value) % 2)
    ds._dict[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)


@pytest.mark.parametrize("frames", ["1000000", "2000000"])
def test_huge_frame_count_refused_from_the_header(tmp_path, frames):
    import tracemalloc

    ds = ct_dataset()
    _raw(ds, "NumberOfFrames", "IS", frames)
    path = save(ds, tmp_path / "liar.dcm")
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=r"\(0028,0008\) Number of Frames x .* is "
                                             rf"{frames} x 96 x 96 at 16 bits = \d+ bytes; "
                                             r"above the ceiling"):
            list(read_dicom(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20  # nothing per frame was built before refusing


def test_frame_count_beyond_the_bytes_present_refused_before_the_frame_loop(tmp_path):
    import tracemalloc

    ds = ct_dataset()
    _raw(ds, "NumberOfFrames", "IS", "50000")  # 921 MB declared (under the ceiling), 18 KB present
    path = save(ds, tmp_path / "liar.dcm")
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=r"Pixel Data is truncated: 18432 bytes, expected "
                                             r"921600000 for 50000 x 96 x 96 at 16 bits"):
            list(read_dicom(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Refused from the header: no per-frame geometry was built (that alone is ~20 MB here).
    assert peak < 5 * 2**20


@pytest.mark.parametrize("keyword, text", [
    ("RescaleSlope", "NaN"), ("RescaleSlope", "0"), ("RescaleSlope", "inf"),
    ("RescaleSlope", "1e308"), ("RescaleSlope", "-1"), ("RescaleSlope", "abc"),
    ("RescaleIntercept", "NaN"), ("RescaleIntercept", "-1e300"),
])
def test_rescale_values_must_be_finite_and_plausible(tmp_path, keyword, text):
    ds = ct_dataset()
    _raw(ds, keyword, "DS", text)
    element = {"RescaleSlope": r"\(0028,1053\) Rescale Slope",
               "RescaleIntercept": r"\(0028,1052\) Rescale Intercept"}[keyword]
    with pytest.raises(InputError, match=rf"{element} is '{text}'; expected a number in \["):
        list(read_dicom(save(ds, tmp_path / "bad.dcm")))


@pytest.mark.parametrize("text", ["NaN\\0\\0\\0\\1\\0", "1\\0\\0\\0\\inf\\0", "2\\0\\0\\0\\1\\0",
                                  "1\\0\\0\\0\\1"])
def test_orientation_values_must_be_finite_direction_cosines(tmp_path, text):
    ds = ct_dataset()
    _raw(ds, "ImageOrientationPatient", "DS", text)
    with pytest.raises(InputError, match=r"\(0020,0037\) Image Orientation \(Patient\) is .*; "
                                         r"expected 6 numbers in \[-1.001, 1.001\]"):
        list(read_dicom(save(ds, tmp_path / "bad.dcm")))


def test_values_not_needed_for_scoring_are_ignored_with_a_note(tmp_path):
    from deltaiqa_lite.errors import InputWarning

    ds = ct_dataset(ipp=None)
    _raw(ds, "InstanceNumber", "IS", "abc")
    _raw(ds, "SliceLocation", "DS", "x1")
    _raw(ds, "PixelSpacing", "DS", "0\\nan")
    path = save(ds, tmp_path / "odd.dcm")
    with pytest.warns(InputWarning) as notes:
        item = read_one(path)
    assert item.hu.shape == (96, 96)
    assert item.instance_number is None and item.slice_location is None
    assert item.pixel_spacing_mm is None
    texts = [str(n.message) for n in notes if n.category is InputWarning]
    assert any("(0020,0013) Instance Number is 'abc'" in t and t.endswith("; ignored")
               for t in texts)
    assert any("(0020,1041) Slice Location is 'x1'" in t for t in texts)
    assert all(t.startswith(str(path)) for t in texts)


def test_cli_shows_warnings_once_not_raw(tmp_path, capsys, tiny_model):
    from deltaiqa_lite.cli import main
    from deltaiqa_lite.errors import WarningTally

    paths = []
    for k in range(3):
        ds = ct_dataset(seed=k)
        _raw(ds, "InstanceNumber", "IS", f"bad{k}")
        paths.append(save(ds, tmp_path / f"odd{k}.dcm"))
    # The CLI's tally, driven directly: reading through pydicom warns per file.
    with WarningTally() as tally:
        for path in paths:
            read_one(path)
    err = capsys.readouterr().err
    assert tally.total >= 6  # pydicom's VR warning and our note, per file
    assert err.count("deltaiqa-lite: warning:") == len(tally.counts) < tally.total
    assert "warn_and_log" not in err and "UserWarning" not in err  # nothing raw
    assert "repeat(s) not shown" in tally.summary()
    # And through the real command line.
    code = main(["score", *map(str, paths), "--model", str(tiny_model), "--threads", "1"])
    assert code == 0
    err = capsys.readouterr().err
    assert "(0020,0013) Instance Number is 'bad" in err and "; ignored" in err
    assert "warn_and_log" not in err and "UserWarning" not in err
    assert err.count("deltaiqa-lite: warning:") < 2 * len(paths)


def test_file_meta_without_transfer_syntax_is_read_as_encoded(tmp_path):
    # Found by tests/test_fuzz.py: a damaged File Meta without (0002,0010) gave
    # "unexpected AttributeError" instead of a reading.
    import io

    ds = ct_dataset()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    marker = b"\x02\x00\x10\x00UI"  # (0002,0010) explicit VR
    at = data.index(marker)
    length = int.from_bytes(data[at + 6:at + 8], "little")
    # Rename the element to a private-looking group-2 tag so the meta no longer has it.
    damaged = data[:at] + b"\x02\x00\x11\x00UI" + data[at + 6:]
    assert len(damaged) == len(data) and length > 0
    item = read_one(save_bytes(damaged, tmp_path / "meta.dcm"))
    assert item.hu.shape == (96, 96)


def save_bytes(data: bytes, path: Path) -> Path:
    path.write_bytes(data)
    return path
