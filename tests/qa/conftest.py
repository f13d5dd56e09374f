"""Fixtures for the QA tests (builders live in qa_builders.py so tests can import them)."""

from __future__ import annotations

from pathlib import Path

import pytest
from qa_builders import write_ct


@pytest.fixture
def ct_file(tmp_path: Path) -> Path:
    path = tmp_path / "ct.dcm"
    write_ct(path)
    return path
