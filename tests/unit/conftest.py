"""Unit tests may change the environment only through monkeypatch, which undoes it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


def _environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name != "PYTEST_CURRENT_TEST"}


@pytest.fixture(autouse=True)
def environment_is_restored() -> Iterator[None]:
    """Set up before and torn down after monkeypatch: every write must have been undone."""
    before = _environment()
    yield
    assert _environment() == before
