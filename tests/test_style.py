"""The code base stays `ruff check` / `ruff format` clean (configured in pyproject.toml)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def ruff() -> str:
    """ruff from the dev extra: beside this interpreter (a venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "ruff"
    found = str(beside) if beside.exists() else shutil.which("ruff")
    assert found, "ruff not found: install the dev extra (pip install -e '.[dev]')"
    return found


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff_clean(command):
    result = subprocess.run([ruff(), *command, str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
