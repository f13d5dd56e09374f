"""LDCTIQAC 2023 data as the original reads it, plus the fuzzy labels it trains on.

Layouts (DESIGN.md section 2):

- train: ``image/0000.tif ...`` + ``train.json`` = ``{"0000.tif": 2.8, ...}``
- test: ``images/...`` + ``test.json``, same shape as train
- validation: multi-page TIFF stacks ``valid_0.tif ...`` + ``ground-truth.json``
  = ``{"valid_0.tif": {"scores": [..one per page..]}}``

Images are float32, already windowed to [0, 1]; each goes through the shared
``prepare_unit_image`` (centre square crop, bilinear resize to 512), the same
function the runtime uses.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deltaiqa_lite.model.preprocess import prepare_unit_image

NUM_CLASSES = 5


class DataError(ValueError):
    """A folder that is not in an LDCTIQAC layout, or an unreadable image."""


@dataclass(frozen=True)
class LabelledSlice:
    """One labelled slice: the file, the page within it (stacks), and the mean score."""

    path: Path
    page: int
    score: float
    group: str  # slices of one group (phantom/patient) never straddle two splits



def fuzzy_label(score: float, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Two-hot target from a continuous mean score, as the original builds it.

    2.8 -> 0.2 on class 2 and 0.8 on class 3; scores at or beyond the ends of
    the scale, and whole numbers, are one-hot.
    """
    target = np.zeros(num_classes, dtype=np.float32)
    top = num_classes - 1
    if score <= 0:
        target[0] = 1.0
        return target
    if score >= top:
        target[top] = 1.0
        return target
    low = int(math.floor(score))
    frac = float(score - low)
    target[low] = 1.0 - frac
    if frac > 0:
        target[low + 1] = frac
    return target


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


def _groups(folder: Path) -> dict[str, str]:
    """Phantom of each simulated slice (from simulation.json), when the folder has one."""
    meta = folder / "simulation.json"
    if not meta.exists():
        return {}
    return {r["file"]: f"phantom-{r['phantom']}" for r in _read_json(meta)["slices"]}


def read_flat(folder: Path, image_dir: str, labels_file: str) -> list[LabelledSlice]:
    labels = _read_json(folder / labels_file)
    groups = _groups(folder)
    missing = [name for name in labels if not (folder / image_dir / name).exists()]
    if missing:
        raise DataError(f"{folder / labels_file}: {len(missing)} labelled images missing from "
                        f"{image_dir}/, first {missing[0]}")
    return [LabelledSlice(folder / image_dir / name, 0, float(labels[name]),
                          groups.get(name, name)) for name in sorted(labels)]


def read_stacked(folder: Path, labels_file: str = "ground-truth.json") -> list[LabelledSlice]:
    labels = _read_json(folder / labels_file)
    slices = []
    for name in sorted(labels):
        entry = labels[name]
        if not isinstance(entry, dict) or "scores" not in entry:
            raise DataError(f"{folder / labels_file}: entry {name!r} has no 'scores' list")
        path = folder / name
        if not path.exists():
            raise DataError(f"{folder / labels_file}: stack {name} missing")
        slices += [LabelledSlice(path, page, float(score), name)
                   for page, score in enumerate(entry["scores"])]
    return slices


def read_folder(folder: str | Path) -> list[LabelledSlice]:
    """Find the LDCTIQAC layout of ``folder`` (train, test or validation) and list its slices."""
    folder = Path(folder)
    if (folder / "train.json").exists() and (folder / "image").is_dir():
        return read_flat(folder, "image", "train.json")
    if (folder / "test.json").exists() and (folder / "images").is_dir():
        return read_flat(folder, "images", "test.json")
    if (folder / "ground-truth.json").exists():
        return read_stacked(folder)
    raise DataError(f"{folder}: no LDCTIQAC layout found (expected image/ + train.json, "
                    "images/ + test.json, or valid_*.tif + ground-truth.json)")


def load_image(item: LabelledSlice) -> np.ndarray:
    """The network input plane of one slice, [512, 512] float32 in [0, 1]."""
    import tifffile

    try:
        with tifffile.TiffFile(item.path) as tif:
            if item.page >= len(tif.pages):
                raise DataError(f"{item.path}: page {item.page} requested, the stack has "
                                f"{len(tif.pages)}")
            image = tif.pages[item.page].asarray()
    except tifffile.TiffFileError as exc:
        raise DataError(f"{item.path}: not a readable TIFF ({exc})") from None
    if image.ndim != 2:
        raise DataError(f"{item.path}: expected a single-channel image, got shape {image.shape}")
    return prepare_unit_image(image.astype(np.float32))


def load_arrays(items: list[LabelledSlice], dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, 512, 512, 1]`` and mean scores ``[N]``.

    ``dtype`` float16 halves the memory of a large training set (10,000 slices:
    5 GB instead of 10); crops are taken back to float32 for the network.
    """
    images = np.empty((len(items), 512, 512, 1), dtype=dtype)
    for n, item in enumerate(items):
        images[n, ..., 0] = load_image(item)
    scores = np.array([item.score for item in items], dtype=np.float32)
    return images, scores


def evaluation_subset(items: list[LabelledSlice], count: int | None, seed: int = 0) -> list[LabelledSlice]:
    """At most ``count`` of ``items``, drawn at random for ``seed`` and kept in their order.

    Validation and held-out test splits of a large simulated set (1,000+ slices)
    are scored many times; a fixed random subset keeps that affordable on a CPU.
    """
    if count is None or len(items) <= count:
        return list(items)
    keep = np.sort(np.random.default_rng([seed, 17]).choice(len(items), size=count, replace=False))
    return [items[i] for i in keep]


def regions_of(items: list[LabelledSlice], folder: str | Path) -> list[str] | None:
    """The body region of each slice from the folder's ``simulation.json`` (None without one)."""
    record = Path(folder) / "simulation.json"
    if not record.exists():
        return None
    region = {r["file"]: r.get("region", "unknown") for r in json.loads(record.read_text())["slices"]}
    return [region.get(item.path.name, "unknown") for item in items]


def split_by_group(items: list[LabelledSlice], fractions=(0.8, 0.1, 0.1),
                   seed: int = 0) -> tuple[list, list, list]:
    """Train/validation/test lists, disjoint by group (phantom), reproducible for a seed."""
    groups = sorted({item.group for item in items})
    order = np.random.default_rng(seed).permutation(len(groups))
    shuffled = [groups[i] for i in order]
    n_val = max(1, round(len(groups) * fractions[1]))
    n_test = max(1, round(len(groups) * fractions[2]))
    test_groups = set(shuffled[:n_test])
    val_groups = set(shuffled[n_test:n_test + n_val])
    train = [i for i in items if i.group not in test_groups | val_groups]
    val = [i for i in items if i.group in val_groups]
    test = [i for i in items if i.group in test_groups]
    return train, val, test
