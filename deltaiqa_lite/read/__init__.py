"""Readers: files and folders in, :class:`Slice` objects (HU or [0, 1] planes) out.

- :mod:`.dicom`  CT DICOM, classic and enhanced multi-frame, compressed or not
- :mod:`.images` LDCTIQAC TIFF (already windowed to [0, 1]), NumPy ``.npy`` in HU,
  other images through Pillow with an explicit window
- :mod:`.series` grouping into series and ordering along the slice normal
- :mod:`.rdsr`   CT Radiation Dose SRs (TID 10011): the exam's DLP, per acquisition CTDIvol

Every reader raises :class:`deltaiqa_lite.errors.InputError` (or a subclass)
with the file name and the reason; nothing here calls ``sys.exit``.

Layer: imports :mod:`deltaiqa_lite.errors` only; never the model, physics,
the scorer or anything above them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Collection, Iterable, Iterator


from deltaiqa_lite.errors import InputError
from deltaiqa_lite.read.slice import Slice

__all__ = ["Slice", "read_slices", "expand_paths", "iter_paths", "IMAGE_SUFFIXES"]

TIFF_SUFFIXES = {".tif", ".tiff"}
NPY_SUFFIXES = {".npy"}
PILLOW_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
IMAGE_SUFFIXES = TIFF_SUFFIXES | NPY_SUFFIXES | PILLOW_SUFFIXES


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    if suffix in NPY_SUFFIXES:
        return "npy"
    if suffix in PILLOW_SUFFIXES:
        return "pillow"
    # DICOM files come with any name (often none, or numbers); anything that is
    # not a known image suffix is tried as DICOM and refused clearly if it is not.
    return "dicom"


def read_slices(path: str | os.PathLike, *,
                image_window: tuple[float, float] | None = None,
                accept: Collection[str] = ()) -> Iterator[Slice]:
    """Yield the slices of one file.

    Parameters
    ----------
    path : str or os.PathLike
        A DICOM file (single or multi-frame), a TIFF (LDCTIQAC, single or
        multi-page), a ``.npy`` array of HU (2-D, or 3-D stacked along axis 0),
        or another image format that Pillow reads.
    image_window : (centre, width) in HU, optional
        Only for plain images (PNG, JPEG, integer TIFF ...): the window the
        grey levels were written with, so they can be turned back into HU.
        Without it such images are refused: their grey levels carry no HU.
    accept : collection of str, optional
        DICOM only: values or kinds the selection policy refuses that are to be
        scored on purpose (see :mod:`deltaiqa_lite.read.policy`).

    Yields
    ------
    Slice

    Raises
    ------
    InputError
        The file is missing, unreadable or refused; the message names the
        file, the element and the reason.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(str(path), "no such file or folder")
    if path.is_dir():
        if not any(True for _ in path.iterdir()):
            raise InputError(str(path), "folder is empty; no files to score")
        raise InputError(str(path), "is a folder; expand it with expand_paths() first")
    kind = _kind(path)
    if kind == "dicom":
        from deltaiqa_lite.read import dicom
        yield from dicom.read_dicom(path, accept=accept)
    elif kind == "tiff":
        from deltaiqa_lite.read import images
        yield from images.read_tiff(path, image_window=image_window)
    elif kind == "npy":
        from deltaiqa_lite.read import images
        yield from images.read_npy(path)
    else:
        from deltaiqa_lite.read import images
        yield from images.read_pillow(path, image_window=image_window)


def iter_paths(paths: Iterable[str | os.PathLike]) -> Iterator[str]:
    """Yield the files to read from files and folders, lazily (see :func:`expand_paths`).

    Folders are walked as the caller consumes, so a folder of millions of
    files is never held in memory as one list.
    """
    for given in paths:
        given_path = Path(given)
        if given_path.is_dir():
            found = False
            for root, dirs, names in os.walk(given_path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    if name.startswith(".") or name.upper() == "DICOMDIR":
                        continue
                    found = True
                    yield os.path.join(root, name)
            if not found:
                yield str(given_path)
        else:
            yield str(given_path)


def expand_paths(paths: list[str | os.PathLike]) -> list[str]:
    """Turn files and folders into the sorted list of files to read.

    Folders are walked recursively; hidden files and ``DICOMDIR`` (an index,
    not an image, and never needed) are skipped. Every other file is an input,
    so a stray non-DICOM file is reported rather than silently dropped.
    Paths that do not exist are kept, so the caller reports them.
    An empty folder is kept as itself so it is reported too.
    """
    return list(iter_paths(paths))
