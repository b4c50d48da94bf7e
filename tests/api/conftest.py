"""Fixtures of the HTTP tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.sse import SseReader


@pytest.fixture
def streams() -> Iterator[list[SseReader]]:
    """SSE readers the test opens (it appends them); all are closed afterwards."""
    opened: list[SseReader] = []
    yield opened
    for reader in opened:
        reader.close()
