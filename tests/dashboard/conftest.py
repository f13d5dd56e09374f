"""Fixtures of the dashboard tests; the QA builders (CT files) live in tests/qa."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "qa"))
