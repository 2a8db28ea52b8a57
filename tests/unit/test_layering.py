"""Layering: the import contracts in pyproject.toml ([tool.importlinter]) hold.

The contracts themselves (only harden.kube imports kubernetes, only the CLI and views import typer
and rich, pure stages reach no I/O module, and the layer order) live in pyproject.toml, where
`lint-imports` in tests/run.sh reads them too; this test makes a plain `pytest` enforce them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _lint_imports() -> str:
    beside = Path(sys.executable).parent / "lint-imports"
    found = str(beside) if beside.exists() else shutil.which("lint-imports")
    if found is None:
        pytest.fail("lint-imports is not installed: pip install -e '.[test]'")
    return found


def run_contracts(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_lint_imports(), "--no-cache", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)


def test_import_contracts_are_kept() -> None:
    result = run_contracts()
    assert result.returncode == 0, result.stdout + result.stderr
    # All four, so a contract dropped from pyproject.toml (or one no longer read) shows here too.
    assert "Contracts: 4 kept, 0 broken." in result.stdout, result.stdout
