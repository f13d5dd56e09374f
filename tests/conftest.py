"""Fixtures for the runtime tests: a tiny ONNX model, and the shipped models for end-to-end tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from model_builders import make_tiny_model

REPO = Path(__file__).resolve().parents[1]
# Where end-to-end tests find the shipped models: models/ of the repository, or
# $DELTAIQA_LITE_TEST_MODELS (a folder with deltaiqa-int8.onnx and deltaiqa-fp32.onnx)
# while the real models are not in models/ yet.
TEST_MODELS_ENV = "DELTAIQA_LITE_TEST_MODELS"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny.onnx")


@pytest.fixture(scope="session")
def shipped_models(tmp_path_factory) -> Path:
    """Folder holding deltaiqa-int8.onnx and deltaiqa-fp32.onnx, or skip with the reason."""
    override = os.environ.get(TEST_MODELS_ENV)
    folder = Path(override) if override else REPO / "models"
    names = ("deltaiqa-int8.onnx", "deltaiqa-fp32.onnx")
    if not all((folder / n).is_file() for n in names):
        pytest.skip(f"shipped models not in {folder} (set {TEST_MODELS_ENV} to a folder with {', '.join(names)})")
    if override:
        # Copy so nothing is ever written next to the originals.
        target = tmp_path_factory.mktemp("shipped")
        for name in names:
            shutil.copy2(folder / name, target / name)
        return target
    return folder


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL cluster for the session (initdb + pg_ctl on a free port), or skip."""
    from pg_server import postgres_bin, start_postgres

    pytest.importorskip("psycopg", reason="the postgres extra (psycopg 3) is not installed")
    if postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries not installed (Debian package postgresql)")
    server = start_postgres()
    yield server
    server.stop()


_database_counter = iter(range(1, 1_000_000))


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A new, empty database on the session's PostgreSQL."""
    return postgres_server.create_database(f"t{next(_database_counter)}")


@pytest.fixture(params=["sqlite", "postgresql"])
def log_target(request, tmp_path: Path) -> str:
    """A QA log location on each backend: an SQLite file, a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "qa.sqlite")
    return request.getfixturevalue("postgres_url")
