"""Checks every SR test uses: dciodvfy (dicom3tools) with the warnings we accept, explained."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

DCIODVFY = shutil.which("dciodvfy")
needs_dciodvfy = pytest.mark.skipif(
    DCIODVFY is None, reason="dciodvfy not installed (apt-get install dicom3tools)")

# Warnings accepted, and why:
# - our private coding scheme 99DIQA is not in dciodvfy's list of defined
#   designators; it is declared in the SR's Coding Scheme Identification
#   Sequence (0008,0110) and documented in docs/sr.md, as PS3.3 C.12.1 asks;
# - Study Date/Time/ID "needed to build DICOMDIR": copied from the source images,
#   which may have them empty (Type 2); the SR never invents them.
ACCEPTED_WARNINGS = (
    "Unrecognized defined term <99DIQA> for value 1 of attribute <Coding Scheme Designator>",
    "Missing attribute or value that would be needed to build DICOMDIR - Study Date",
    "Missing attribute or value that would be needed to build DICOMDIR - Study Time",
    "Missing attribute or value that would be needed to build DICOMDIR - Study ID",
)


def content_items(ds) -> Iterator:
    """Every SR content item (dataset with a Value Type), depth first."""
    for item in ds.get("ContentSequence", []):
        yield item
        yield from content_items(item)


def dciodvfy_problems(path: str | Path) -> list[str]:
    """dciodvfy's errors and unexplained warnings on one file (empty: valid)."""
    out = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, check=False,
                         timeout=60)
    lines = (out.stdout + out.stderr).splitlines()
    assert any(line.strip() == "Comprehensive3DSR" for line in lines), lines  # IOD recognised
    return [line for line in lines if line.startswith(("Error", "Warning"))
            and not any(accepted in line for accepted in ACCEPTED_WARNINGS)]
