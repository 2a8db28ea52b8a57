"""Shared fixtures for the unit tests (helpers are module-local: tests/unit is not a package)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def write(tmp_path):
    """write(name, text) -> path of a file under tmp_path holding `text`."""

    def _write(name: str, text: str) -> Path:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        return p

    return _write
