"""The fault suite runs real worker processes on PostgreSQL (see harness)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import Workers, require_postgresql


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before any fixture: on SQLite the test database would be set up for nothing.
    require_postgresql()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    """Worker processes for one test; any still running at teardown is killed."""
    started = Workers(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()
