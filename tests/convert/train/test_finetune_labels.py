"""Fine-tuning from the label files ``deltaiqa-lite evaluate`` reads (issue 14, item 4).

The site's images are read and preprocessed by the runtime's own code, so the
planes fine-tuning learns from must equal, bit for bit, what the runtime feeds
the shipped models. Fast tests use the data layer (no training); the one
end-to-end run of the command is marked slow.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convert.sim.data import DataError
from convert.train.finetune import MIN_SLICES, split_record, split_site
from convert.train.site_data import PREPROCESSING, read_site_data
from deltaiqa_lite.model.card import read_card
from deltaiqa_lite.validate.labels import LabelError
from deltaiqa_lite.model.preprocess import Preprocessing, prepare_hu
from deltaiqa_lite.read import read_slices
from deltaiqa_lite.score import prepare_slice
from tests.dicom_builders import ct_dataset, enhanced_ct_dataset, phantom_hu, save

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "models" / "deltaiqa.weights.h5"
SHIPPED_INT8 = ROOT / "models" / "deltaiqa-int8.onnx"


def _single(path: Path, seed: int, patient: str | None) -> Path:
    ds = ct_dataset(phantom_hu(seed=seed))
    if patient is None:
        del ds.PatientID
    else:
        ds.PatientID = patient
    path.parent.mkdir(parents=True, exist_ok=True)
    return save(ds, path)


def _multi(path: Path, seed: int, frames: int, patient: str) -> Path:
    ds = enhanced_ct_dataset([phantom_hu(seed=seed + k) for k in range(frames)])
    ds.PatientID = patient
    path.parent.mkdir(parents=True, exist_ok=True)
    return save(ds, path)


@pytest.fixture
def site(tmp_path):
    """24 labelled CT slices of 5 patients, plus one of each thing that cannot be used.

    p1/ P1: a0..a3 and extra.dcm (no label); p2/ P2: multi2.dcm, 6 frames;
    p3/ no Patient ID: c0..c3 and cut.dcm (truncated); p4/ P4: multi4.dcm, 6 frames
    (labelled without a frame: unusable); p5/ P5: e0..e3 and mr.dcm (MR, labelled);
    labels also for missing.dcm and multi2.dcm frame 9.
    """
    root = tmp_path / "site"
    scores: dict[tuple[str, int | None], float] = {}
    seed = 0
    for folder, stem, patient in (("p1", "a", "P1"), ("p3", "c", None), ("p5", "e", "P5")):
        for k in range(4):
            seed += 1
            _single(root / folder / f"{stem}{k}.dcm", seed, patient)
            scores[(f"{stem}{k}.dcm", None)] = round(0.2 * seed, 1)
    _single(root / "p1" / "extra.dcm", 90, "P1")
    _multi(root / "p2" / "multi2.dcm", 40, 6, "P2")
    _multi(root / "p4" / "multi4.dcm", 50, 6, "P4")
    for frame in range(6):
        scores[("multi2.dcm", frame)] = 0.5 * frame
        scores[("multi4.dcm", frame)] = 4.0 - 0.5 * frame
    mr = ct_dataset(phantom_hu(seed=70), modality="MR")
    mr.PatientID = "P5"
    save(mr, root / "p5" / "mr.dcm")
    full = _single(root / "p3" / "cut.dcm", 80, None).read_bytes()
    (root / "p3" / "cut.dcm").write_bytes(full[: len(full) // 2])
    return root, scores


def _write_csv(path: Path, rows: list[tuple[str, int | None, float]]) -> Path:
    lines = ["file,frame,score"] + [f"{name},{'' if frame is None else frame},{score}"
                                    for name, frame, score in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _csv_labels(tmp_path: Path, scores: dict) -> Path:
    rows = [(name, frame, score) for (name, frame), score in scores.items() if name != "multi4.dcm"]
    rows += [("multi4.dcm", None, 2.0), ("missing.dcm", None, 3.0), ("mr.dcm", None, 1.0),
             ("multi2.dcm", 9, 1.0)]
    return _write_csv(tmp_path / "labels.csv", rows)


def _runtime_planes(path: Path) -> list[np.ndarray]:
    """What ``deltaiqa-lite score`` feeds the shipped INT8 model: its reader, its card's preprocessing."""
    preprocessing = Preprocessing.from_card(read_card(SHIPPED_INT8)["preprocessing"])
    return [prepare_slice(item, preprocessing) for item in read_slices(path)]


def test_csv_labels_over_dicom_pair_report_and_match_the_runtime(site, tmp_path):
    root, scores = site
    labels = _csv_labels(tmp_path, scores)
    data = read_site_data([root], labels)

    # multi4.dcm is labelled without a frame: one score cannot say which of its 6 frames.
    assert len(data.items) == 4 * 3 + 6 == 18
    names = {data.name(item): item for item in data.items}
    assert set(names) == ({str(root / f / f"{s}{k}.dcm") for f, s in (("p1", "a"), ("p3", "c"), ("p5", "e"))
                           for k in range(4)}
                          | {f"{root / 'p2' / 'multi2.dcm'}[{k}]" for k in range(6)})
    assert names[f"{root / 'p2' / 'multi2.dcm'}[3]"].score == 1.5
    assert names[str(root / "p3" / "c2.dcm")].score == scores[("c2.dcm", None)]

    # One line per left-out item, naming the file and the reason.
    lines = data.report_lines()
    refused = [line for line in lines if line.startswith("refused: ")]
    assert len(refused) == 2
    assert f"refused: {root / 'p5' / 'mr.dcm'}: (0008,0060) Modality is 'MR'; deltaiqa-lite scores CT only" \
        in refused
    assert any(line.startswith(f"refused: {root / 'p3' / 'cut.dcm'}: ") for line in refused)
    unlabelled = [line for line in lines if line.startswith("unlabelled: ")]
    assert unlabelled[0] == f"unlabelled: {root / 'p1' / 'extra.dcm'}: no label in labels.csv"
    assert unlabelled[1:] == [f"unlabelled: {root / 'p4' / 'multi4.dcm'}[{k}]: no label in labels.csv"
                              for k in range(6)]
    assert [line for line in lines if line.startswith("unused label: ")] == [
        "unused label: missing.dcm: no image of that name in the data",
        f"unused label: mr.dcm: its image {root / 'p5' / 'mr.dcm'} was refused (listed above)",
        f"unused label: multi2.dcm[9]: {root / 'p2' / 'multi2.dcm'} has no frame 9 (frames 0..5)",
        (f"unused label: multi4.dcm: no frame given, but {root / 'p4' / 'multi4.dcm'} has 6 frames; "
         "give the frame (CSV frame column, or a stacked JSON entry)"),
    ]
    assert len(lines) == 2 + 7 + 4
    record = data.record()
    assert record == {"source": "labels", "labels": {"file": str(labels), "format": "csv"},
                      "matched": 18, "unlabelled": 7, "unused_labels": 4, "refused": 2,
                      "group_by": "patient (DICOM Patient ID), else the file's parent folder"}

    # Bit-exact: the runtime's reader and the shipped card's preprocessing, file by file.
    assert Preprocessing.from_card(read_card(SHIPPED_INT8)["preprocessing"]) == PREPROCESSING
    images, labels_array = data.arrays(data.items)
    assert images.shape == (18, 512, 512, 1) and images.dtype == np.float32
    assert labels_array.tolist() == pytest.approx([item.score for item in data.items])
    for row, item in enumerate(data.items):
        expected = _runtime_planes(item.path)[item.page]
        assert np.array_equal(images[row, ..., 0], expected), data.name(item)
    # And the DICOM decoding is right: a0.dcm stores phantom_hu(seed=1) exactly (slope 1, intercept -1024).
    a0 = names[str(root / "p1" / "a0.dcm")]
    assert np.array_equal(data.planes[a0], prepare_hu(phantom_hu(seed=1)))


def test_json_labels_flat_and_stacked_give_the_same_slices(site, tmp_path):
    root, scores = site
    content: dict = {name: score for (name, frame), score in scores.items() if frame is None}
    content["multi2.dcm"] = {"scores": [scores[("multi2.dcm", k)] for k in range(6)]}
    content["multi4.dcm"] = {"scores": [scores[("multi4.dcm", k)] for k in range(6)]}
    labels = tmp_path / "ground-truth.json"
    labels.write_text(json.dumps(content))
    data = read_site_data(root, labels)
    assert data.labels_format == "json-mixed"
    assert len(data.items) == 24 >= MIN_SLICES
    assert data.record()["unused_labels"] == 0 and data.record()["refused"] == 2
    assert data.report_lines()[2:] == [f"unlabelled: {root / 'p1' / 'extra.dcm'}: no label in ground-truth.json"]
    by_name = {data.name(item): item for item in data.items}
    assert by_name[f"{root / 'p4' / 'multi4.dcm'}[5]"].score == 1.5
    images, _ = data.arrays([by_name[f"{root / 'p4' / 'multi4.dcm'}[5]"]])
    assert np.array_equal(images[0, ..., 0], _runtime_planes(root / "p4" / "multi4.dcm")[5])


def test_groups_are_patients_else_folders_and_the_split_is_disjoint(site, tmp_path):
    root, scores = site
    labels = tmp_path / "labels.csv"
    _write_csv(labels, [(name, frame, score) for (name, frame), score in scores.items()])
    data = read_site_data(root, labels)
    groups = {data.name(item): item.group for item in data.items}
    assert groups[str(root / "p1" / "a0.dcm")] == "patient P1"
    assert groups[f"{root / 'p2' / 'multi2.dcm'}[0]"] == "patient P2"
    assert groups[str(root / "p3" / "c0.dcm")] == f"folder {root / 'p3'}"
    assert len(set(groups.values())) == 5

    split = split_site(data, seed=0)
    record = split_record(data, split, seed=0)
    assert record["labels"] == str(labels) and record["group_by"].startswith("patient")
    parts = ("train", "validation", "test")
    assert sum(len(record[p]) for p in parts) == 24
    assert sorted(n for p in parts for n in record[p]) == sorted(groups)
    for first in parts:        # no patient straddles two splits
        for second in parts:
            if first < second:
                assert not set(record["groups"][first]) & set(record["groups"][second])
    for part in parts:
        assert record["groups"][part] == sorted({groups[name] for name in record[part]})
    assert len(record["groups"]["validation"]) == len(record["groups"]["test"]) == 1
    assert split_record(data, split_site(data, seed=0), seed=0) == record   # reproducible


def test_too_few_groups_for_a_disjoint_split(tmp_path):
    root = tmp_path / "site"
    _multi(root / "only.dcm", 0, 24, "P1")
    labels = _write_csv(tmp_path / "labels.csv", [("only.dcm", k, 2.0) for k in range(24)])
    data = read_site_data(root, labels)
    assert len(data.items) == 24
    with pytest.raises(DataError, match=r"labels\.csv: 1 group\(s\) by patient .* needs at least 3"):
        split_site(data, seed=0)


def test_cli_refuses_below_min_slices_with_one_line_and_exit_2(site, tmp_path, capsys):
    from convert.__main__ import main

    root, _ = site
    labels = _write_csv(tmp_path / "few.csv", [("a0.dcm", None, 1.0), ("a1.dcm", None, 2.0),
                                               ("nowhere.dcm", None, 2.0)])
    status = main(["finetune", "--weights", str(SHIPPED), "--labels", str(labels), "--data", str(root),
                   "--output", str(tmp_path / "out")])
    assert status == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (f"finetune: error: {labels}: 2 labelled slices; fine-tuning needs at least "
                       f"{MIN_SLICES} (2 inputs refused, 23 slices without a label, 1 labels without a slice)")
    assert "finetune: unused label: nowhere.dcm: no image of that name in the data" in err
    assert not (tmp_path / "out").exists()      # refused before any work


def test_cli_bad_label_file_exits_2(site, tmp_path, capsys):
    from convert.__main__ import main

    root, _ = site
    labels = tmp_path / "labels.csv"
    labels.write_text("name,value\na0.dcm,2\n")
    assert main(["finetune", "--weights", str(SHIPPED), "--labels", str(labels), "--data", str(root),
                 "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"finetune: error: {labels}: CSV header is 'name,value'; expected 'file,score' or "
        "'file,frame,score'")


def test_other_runtime_inputs_npy_png_tiff(tmp_path):
    from PIL import Image

    root = tmp_path / "site"
    (root / "a").mkdir(parents=True)
    hu = phantom_hu(seed=3)
    np.save(root / "a" / "slice.npy", hu)
    np.save(root / "a" / "stack.npy", np.stack([phantom_hu(seed=4), phantom_hu(seed=5)]))
    unit = np.clip((hu + 1000.0) / 1400.0, 0, 1).astype(np.float32)
    Image.fromarray(unit).save(root / "a" / "ldct.tif")
    Image.fromarray(np.round(unit * 255).astype(np.uint8)).save(root / "a" / "slice.png")
    labels = _write_csv(tmp_path / "labels.csv", [("slice.npy", None, 1.0), ("stack.npy", 1, 2.0),
                                                  ("ldct.tif", None, 3.0), ("slice.png", 0, 4.0)])
    without_window = read_site_data(root, labels)
    assert [line.split(": ")[0] for line in without_window.report_lines()] == [
        "refused", "unlabelled", "unused label"]
    assert "display grey levels, not HU" in without_window.report_lines()[0]
    data = read_site_data([root / "a"], labels, image_window=(-300.0, 1400.0))
    assert {data.name(item): item.score for item in data.items} == {
        str(root / "a" / "ldct.tif"): 3.0, str(root / "a" / "slice.npy"): 1.0,
        str(root / "a" / "slice.png"): 4.0, f"{root / 'a' / 'stack.npy'}[1]": 2.0}
    assert data.report_lines() == [f"unlabelled: {root / 'a' / 'stack.npy'}[0]: no label in labels.csv"]
    for item in data.items:
        plane = data.planes[item]
        runtime = [prepare_slice(s, PREPROCESSING)
                   for s in read_slices(item.path, image_window=(-300.0, 1400.0))][item.page]
        assert np.array_equal(plane, runtime), data.name(item)
    assert np.array_equal(data.planes[next(i for i in data.items if i.path.suffix == ".npy"
                                           and i.path.stem == "slice")], prepare_hu(hu))


def test_ldctiqac_folder_form_still_reads_and_refuses_a_window(tmp_path):
    from PIL import Image

    folder = tmp_path / "train"
    (folder / "image").mkdir(parents=True)
    for k in range(3):
        Image.fromarray(np.full((80, 80), 0.25 * k, dtype=np.float32)).save(
            folder / "image" / f"{k:04d}.tif")
    (folder / "train.json").write_text(json.dumps({f"{k:04d}.tif": float(k) for k in range(3)}))
    data = read_site_data(folder)
    assert data.source == "ldctiqac-folder" and data.report_lines() == []
    assert [data.name(item) for item in data.items] == ["0000.tif", "0001.tif", "0002.tif"]
    assert data.record()["matched"] == 3 and data.record()["labels"] is None
    images, scores = data.arrays(data.items)
    assert images.shape == (3, 512, 512, 1) and scores.tolist() == [0.0, 1.0, 2.0]
    assert np.allclose(images[2], 0.5)
    with pytest.raises(DataError, match="image window applies to plain images paired with a label file"):
        read_site_data(folder, image_window=(-300.0, 1400.0))
    with pytest.raises(DataError, match="2 data paths given"):
        read_site_data([folder, folder])
    with pytest.raises(LabelError, match="no such label file"):
        read_site_data(folder, tmp_path / "absent.csv")


def test_saved_weights_hold_no_optimizer_state(tmp_path):
    """The shipped .weights.h5 is the network only (18 MB), not the training model's 54 MB."""
    import h5py
    import keras

    from convert.train.model import (
        PARAMETER_COUNT,
        build_delta_iqa,
        load_model,
        save_network_weights,
    )

    model = build_delta_iqa(seed=0)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=1e-5), loss="categorical_crossentropy")
    model.train_on_batch(np.zeros((1, 512, 512, 1), np.float32), np.eye(5, dtype=np.float32)[[2]])
    checkpoint = tmp_path / "best.weights.h5"
    model.save_weights(checkpoint)
    with h5py.File(checkpoint, "r") as h5:
        assert "optimizer" in h5          # the trap: a trained model saves AdamW's moments too
    saved = save_network_weights(checkpoint, tmp_path / "deltaiqa.weights.h5")
    with h5py.File(saved, "r") as h5:
        assert "optimizer" not in h5
        arrays = []
        h5.visititems(lambda name, obj: arrays.append(obj.size) if isinstance(obj, h5py.Dataset) else None)
    assert sum(arrays) == PARAMETER_COUNT
    assert PARAMETER_COUNT * 4 <= saved.stat().st_size < PARAMETER_COUNT * 4 * 1.02
    reloaded = load_model(saved)
    for ours, theirs in zip(reloaded.get_weights(), model.get_weights()):
        assert np.array_equal(ours, theirs)


@pytest.mark.slow
def test_cli_finetune_from_labels_end_to_end(site, tmp_path):
    root, scores = site
    content: dict = {name: score for (name, frame), score in scores.items() if frame is None}
    for stack in ("multi2.dcm", "multi4.dcm"):
        content[stack] = {"scores": [scores[(stack, k)] for k in range(6)]}
    labels = tmp_path / "ground-truth.json"
    labels.write_text(json.dumps(content))
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "convert", "finetune", "--weights", str(SHIPPED), "--labels", str(labels),
         "--data", str(root), "--output", str(out), "--steps", "2", "--eval-every", "1", "--crop", "128",
         "--batch", "2", "--quantize-method", "minmax-symmetric"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False)
    assert run.returncode in (0, 1), run.stderr[-3000:]
    assert f"finetune: refused: {root / 'p5' / 'mr.dcm'}: (0008,0060) Modality is 'MR'" in run.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    site_data = metrics["site_data"]
    assert {k: site_data[k] for k in ("slices", "groups", "source", "matched", "unlabelled",
                                      "unused_labels", "refused")} == {
        "slices": 24, "groups": 5, "source": "labels", "matched": 24, "unlabelled": 1,
        "unused_labels": 0, "refused": 2}
    assert site_data["labels"] == {"file": str(labels), "format": "json-mixed"}
    split = json.loads((out / "work" / "split.json").read_text())
    assert sum(len(split[p]) for p in ("train", "validation", "test")) == 24
    weights = out / "deltaiqa.weights.h5"
    assert weights.stat().st_size < 4_514_501 * 4 * 1.02
    assert (out / "deltaiqa-fp32.onnx").exists()
