"""Fixtures for the QA tests (builders live in qa_builders.py so tests can import them)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from qa_builders import write_ct

from deltaiqa_lite import Scorer


@pytest.fixture
def ct_file(tmp_path: Path) -> Path:
    path = tmp_path / "ct.dcm"
    write_ct(path)
    return path


@pytest.fixture(scope="module")
def scorer(tiny_model: Path) -> Scorer:
    """One small scorer per test module (the tiny model: scoring costs nothing)."""
    return Scorer(str(tiny_model), threads=1, batch_size=4)


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 2 MiB tmpfs (needs root); the test is skipped where it cannot be mounted."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
