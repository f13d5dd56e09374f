"""A site's labelled slices for fine-tuning, in either of the two forms a site keeps them.

1. An LDCTIQAC layout folder (:func:`convert.sim.data.read_folder`): TIFFs already
   windowed to [0, 1], read as the training code reads them.
2. The label file that ``deltaiqa-lite evaluate`` reads
   (:func:`deltaiqa_lite.validate.labels.read_labels`: LDCTIQAC JSON, flat or stacked,
   or CSV ``file[,frame],score``) over the images it names: DICOM (single- or
   multi-frame), LDCTIQAC TIFF, ``.npy`` in HU, PNG and other plain images
   with a window. Every file goes through the runtime's own reader and
   preprocessing (:func:`deltaiqa_lite.score.read_file`: the readers of
   :mod:`deltaiqa_lite.read`, then :func:`deltaiqa_lite.score.prepare_slice`),
   and labels pair with slices through :func:`deltaiqa_lite.validate.labels.match_labels`,
   exactly as ``evaluate`` pairs them. So the fine-tuned weights learn from the
   very [0, 1] planes the shipped models see at run time, and a label that
   ``evaluate`` would use is the label fine-tuning uses.

Nothing is dropped silently: every refused or unreadable input, every slice
without a label and every label without a slice is one line of
:meth:`SiteData.report_lines` (file and reason) and a count in
:meth:`SiteData.record`, which goes into the model card.

Groups keep the split disjoint by patient: the DICOM Patient ID (0010,0020)
where a file has one, else the file's parent folder (one folder per patient
is the usual export layout).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convert.sim.data import DataError, LabelledSlice, load_arrays, read_folder
from deltaiqa_lite.validate.labels import LabelKey, ReferenceLabels, match_labels, read_labels
from deltaiqa_lite.model.preprocess import Preprocessing
from deltaiqa_lite.read import expand_paths
from deltaiqa_lite.score import read_file

__all__ = ["SiteData", "SiteIssue", "read_labelled_images", "read_layout_folder", "read_site_data"]

# What convert/card/card.py writes into every model it exports: the fine-tuned model's
# card will say this, so its training planes are made with it.
PREPROCESSING = Preprocessing()


@dataclass(frozen=True)
class SiteIssue:
    """One input, slice or label that fine-tuning cannot use, and why."""

    item: str
    reason: str

    def __str__(self) -> str:
        return f"{self.item}: {self.reason}"


@dataclass
class SiteData:
    """The labelled slices of a site, what was left out, and where they came from.

    Attributes
    ----------
    source : {"ldctiqac-folder", "labels"}
    data : list of str
        The folder(s) or files given.
    items : list of LabelledSlice
        The usable slices: image, frame (0 for single-slice files), score, group.
    names : dict
        Display name of each item (``file`` or ``file[frame]``), as the runtime names slices.
    planes : dict or None
        Network input planes ``[512, 512]`` of each item, already made by the
        runtime's reader and preprocessing (label-file form); None for an
        LDCTIQAC folder, whose TIFFs are read when :meth:`arrays` needs them.
    labels, labels_format : str or None
        Label file and its format (``json-flat``, ``json-stacked``, ``json-mixed``, ``csv``).
    group_by : str
        What the groups are, for the report and ``split.json``.
    refused, unlabelled, unused : list of SiteIssue
        Inputs refused or unreadable; slices without a label; labels without a slice.
    files, slices_read : int
        Files read and slices found in them (label-file form).
    """

    source: str
    data: list[str]
    items: list[LabelledSlice]
    names: dict[LabelledSlice, str]
    group_by: str
    planes: dict[LabelledSlice, np.ndarray] | None = None
    labels: str | None = None
    labels_format: str | None = None
    refused: list[SiteIssue] = field(default_factory=list)
    unlabelled: list[SiteIssue] = field(default_factory=list)
    unused: list[SiteIssue] = field(default_factory=list)
    files: int = 0
    slices_read: int = 0

    @property
    def folder(self) -> Path | None:
        """The one folder given, else None."""
        return Path(self.data[0]) if len(self.data) == 1 and Path(self.data[0]).is_dir() else None

    def name(self, item: LabelledSlice) -> str:
        return self.names[item]

    def arrays(self, items: Sequence[LabelledSlice], dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
        """Images ``[N, 512, 512, 1]`` in [0, 1] (``dtype``) and mean scores ``[N]`` of ``items``."""
        if self.planes is None:
            return load_arrays(list(items), dtype=dtype)
        images = np.stack([self.planes[item] for item in items])[..., None].astype(dtype, copy=False)
        return images, np.array([item.score for item in items], dtype=np.float32)

    def report_lines(self) -> list[str]:
        """One line per left-out item: ``refused``, ``unlabelled`` or ``unused label``, file, reason."""
        return ([f"refused: {issue}" for issue in self.refused]
                + [f"unlabelled: {issue}" for issue in self.unlabelled]
                + [f"unused label: {issue}" for issue in self.unused])

    def record(self) -> dict:
        """The site data's origin and counts, for ``metrics.json`` and the model card."""
        return {
            "source": self.source,
            "labels": ({"file": self.labels, "format": self.labels_format}
                       if self.labels is not None else None),
            "matched": len(self.items),
            "unlabelled": len(self.unlabelled),
            "unused_labels": len(self.unused),
            "refused": len(self.refused),
            "group_by": self.group_by,
        }

    def require(self, minimum: int) -> None:
        """Raise :class:`DataError` (one line) when fewer than ``minimum`` slices are usable."""
        if len(self.items) >= minimum:
            return
        where = self.labels if self.labels is not None else ", ".join(self.data)
        left_out = (f" ({len(self.refused)} inputs refused, {len(self.unlabelled)} slices without a "
                    f"label, {len(self.unused)} labels without a slice)" if self.source == "labels" else "")
        raise DataError(f"{where}: {len(self.items)} labelled slices; fine-tuning needs at least "
                        f"{minimum}{left_out}")


def read_site_data(data: str | os.PathLike | Sequence[str | os.PathLike],
                   labels: str | os.PathLike | None = None, *,
                   image_window: tuple[float, float] | None = None) -> SiteData:
    """Read a site's labelled slices: an LDCTIQAC folder, or a label file over image files.

    Parameters
    ----------
    data : path or sequence of paths
        Without ``labels``: one LDCTIQAC layout folder. With ``labels``: image
        files and folders (walked recursively, as ``deltaiqa-lite evaluate`` does).
    labels : path, optional
        Label file (LDCTIQAC JSON or CSV), see :mod:`deltaiqa_lite.validate.labels`.
    image_window : (centre, width) in HU, optional
        Window that plain images (PNG, JPEG, integer TIFF) were saved with.

    Returns
    -------
    SiteData

    Raises
    ------
    DataError
        No LDCTIQAC layout in the folder, or several paths (or an image window) without ``labels``.
    deltaiqa_lite.validate.labels.LabelError
        The label file is malformed, or two inputs share a file name.
    """
    paths = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    if labels is not None:
        return read_labelled_images(paths, labels, image_window=image_window)
    if image_window is not None:
        raise DataError("an image window applies to plain images paired with a label file; "
                        "an LDCTIQAC folder holds TIFFs already windowed to [0, 1]")
    if len(paths) != 1:
        raise DataError(f"{len(paths)} data paths given; an LDCTIQAC layout is one folder "
                        "(pair image files with a label file through labels=, --labels on the command line)")
    return read_layout_folder(paths[0])


def read_layout_folder(folder: str | os.PathLike) -> SiteData:
    """An LDCTIQAC layout folder, as :func:`convert.sim.data.read_folder` reads it."""
    folder = Path(folder)
    items = read_folder(folder)
    pages = Counter(item.path for item in items)
    names = {item: item.path.name if pages[item.path] == 1 else f"{item.path.name}[{item.page}]"
             for item in items}
    simulated = (folder / "simulation.json").exists()
    return SiteData(source="ldctiqac-folder", data=[str(folder)], items=items, names=names,
                    group_by="phantom (simulation.json)" if simulated else "file (a stack's pages stay together)",
                    files=len(pages), slices_read=len(items))


def _group(path: str, is_dicom: bool) -> str:
    """The patient of a file: its DICOM Patient ID, else its parent folder."""
    if is_dicom:
        import pydicom
        from pydicom.errors import InvalidDicomError

        try:
            # Only the header up to Patient ID: the pixels were read (and checked) by the runtime.
            patient = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"],
                                      force=True).get("PatientID")
        except (InvalidDicomError, OSError, ValueError, EOFError):
            patient = None
        if patient is not None and str(patient).strip():
            return f"patient {str(patient).strip()}"
    return f"folder {Path(path).parent}"


def _unused_reason(key: LabelKey, frames: dict[str, tuple[str, int]],
                   refused: dict[str, str]) -> str:
    """Why no slice took this label."""
    if key.name in frames:
        path, count = frames[key.name]
        if key.frame is None:
            return (f"no frame given, but {path} has {count} frames; give the frame "
                    "(CSV frame column, or a stacked JSON entry)")
        return f"{path} has no frame {key.frame} (frames 0..{count - 1})"
    if key.name in refused:
        return f"its image {refused[key.name]} was refused (listed above)"
    return "no image of that name in the data"


def read_labelled_images(paths: Sequence[str | os.PathLike], labels: str | os.PathLike | ReferenceLabels, *,
                         image_window: tuple[float, float] | None = None,
                         preprocessing: Preprocessing = PREPROCESSING) -> SiteData:
    """Read image files with the runtime's readers, preprocess them, and pair them with labels.

    Parameters
    ----------
    paths : sequence of path
        Files and folders (walked recursively; hidden files and DICOMDIR skipped).
    labels : path or ReferenceLabels
        Label file, or labels already read.
    image_window : (centre, width) in HU, optional
        For plain images (PNG ...), as ``deltaiqa-lite score --image-window``.
    preprocessing : Preprocessing
        Window, input size and resize rule (default: what ``convert`` writes into model cards).

    Returns
    -------
    SiteData
    """
    reference = labels if isinstance(labels, ReferenceLabels) else read_labels(labels)
    files = expand_paths(list(paths))
    inputs: list[tuple[str, int | None]] = []
    planes: list[np.ndarray] = []
    groups: list[str] = []
    refused: list[SiteIssue] = []
    for path in files:
        prepared = read_file(path, preprocessing, image_window, physics=False)
        if prepared.error is not None:
            refused.append(SiteIssue(prepared.error.path, prepared.error.reason))
            continue
        first = prepared.slices[0]
        group = _group(path, first.sop_instance_uid is not None or first.series_uid is not None)
        for item, plane in zip(prepared.slices, prepared.planes):
            inputs.append((item.path, item.frame))
            planes.append(plane)
            groups.append(group)
    match = match_labels(inputs, reference)

    def display(path: str, frame: int | None) -> str:
        return path if frame is None else f"{path}[{frame}]"

    items: list[LabelledSlice] = []
    names: dict[LabelledSlice, str] = {}
    by_item: dict[LabelledSlice, np.ndarray] = {}
    for index, key in sorted(match.pairs.items()):
        path, frame = inputs[index]
        item = LabelledSlice(Path(path), frame or 0, reference.scores[key], groups[index])
        items.append(item)
        names[item] = display(path, frame)
        by_item[item] = planes[index]
    label_name = Path(reference.source).name
    unlabelled = [SiteIssue(display(*inputs[index]), f"no label in {label_name}")
                  for index in match.unlabelled]
    frames: dict[str, tuple[str, int]] = {}
    for path, _frame in inputs:
        name = Path(path).name
        frames[name] = (path, frames.get(name, (path, 0))[1] + 1)
    refused_by_name = {Path(issue.item).name: issue.item for issue in refused}
    unused = [SiteIssue(str(key), _unused_reason(key, frames, refused_by_name)) for key in match.unused]
    return SiteData(source="labels", data=[str(p) for p in paths], items=items, names=names,
                    planes=by_item, labels=reference.source, labels_format=reference.format,
                    group_by="patient (DICOM Patient ID), else the file's parent folder",
                    refused=refused, unlabelled=unlabelled, unused=unused, files=len(files),
                    slices_read=len(inputs))
