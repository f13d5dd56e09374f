"""Build-time tests: they need TensorFlow and the build extra (``pip install .[build]``)."""

import pytest

pytest.importorskip("tensorflow", reason="build tests need the build extra: pip install .[build]")


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/convert" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.build)
