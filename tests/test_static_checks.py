"""The promises the code makes about itself: `mypy --strict` and ruff pass on `fedcore/`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


def test_mypy_strict_passes_on_the_library(tmp_path: Path) -> None:
    pytest.importorskip("mypy", reason="mypy is a [dev] dependency")
    result = _run("mypy", "--cache-dir", str(tmp_path / "cache"), "fedcore")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_passes_on_the_library() -> None:
    pytest.importorskip("ruff", reason="ruff is a [dev] dependency")
    result = _run("ruff", "check", "--no-cache", "fedcore")
    assert result.returncode == 0, result.stdout + result.stderr
