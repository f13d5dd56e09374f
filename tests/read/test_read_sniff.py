"""Issue 24, item 6: cheap refusals. Non-DICOM and zero-filled files are refused from their
first kilobytes, before pydicom's forced parse (which crawls through a 1 GB zero file for
about 13 minutes). The bound is checked on the bytes this process reads (/proc/self/io),
not on time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydicom.filewriter import dcmwrite

from deltaiqa_lite.errors import InputError
from deltaiqa_lite.qa.header import read_qa_header
from deltaiqa_lite.read import read_slices
from deltaiqa_lite.read.dicom import SNIFF_BYTES, sniff_refusal
from dicom_builders import ct_dataset

GIB = 1 << 30


def _bytes_read() -> int:
    with open("/proc/self/io") as stream:
        return int(next(line for line in stream if line.startswith("rchar:")).split()[1])


@pytest.fixture
def zeros(tmp_path: Path) -> Path:
    path = tmp_path / "IM0001"
    with open(path, "wb") as handle:
        handle.truncate(GIB)  # sparse: 1 GiB of zeros that take no disk space
    return path


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux /proc/self/io")
def test_zero_filled_gigabyte_refused_from_its_first_kilobytes(zeros: Path) -> None:
    """Item 6: the QA header reader (watch, serve) and the scorer's reader (score)."""
    before = _bytes_read()
    with pytest.raises(InputError, match=r"IM0001: the first 4096 bytes are all zero"):
        read_qa_header(zeros)
    with pytest.raises(InputError, match=r"IM0001: the first 4096 bytes are all zero"):
        list(read_slices(zeros))
    assert _bytes_read() - before < 16 * SNIFF_BYTES


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux /proc/self/io")
def test_large_non_dicom_refused_cheaply(tmp_path: Path) -> None:
    """Item 6: a large file that is not DICOM (text) is refused without parsing it."""
    path = tmp_path / "export.log"
    path.write_bytes(b"scanner log line\n" * 2_000_000)  # 34 MB
    before = _bytes_read()
    with pytest.raises(InputError, match="no 'DICM' prefix at byte 128"):
        read_qa_header(path)
    assert _bytes_read() - before < 16 * SNIFF_BYTES


def test_dataset_without_preamble_still_read(tmp_path: Path) -> None:
    """Item 6 must not refuse what was read before: a dataset without preamble and 'DICM'."""
    ds = ct_dataset()
    path = tmp_path / "raw.dcm"
    del ds.file_meta
    dcmwrite(path, ds, implicit_vr=True, little_endian=True)
    assert path.read_bytes()[128:132] != b"DICM"
    assert sniff_refusal(path) is None
    assert read_qa_header(path).sop_instance_uid == ds.SOPInstanceUID
