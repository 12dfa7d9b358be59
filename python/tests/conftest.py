from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo() -> Path:
    """The repository root (pipelines/ lives there)."""
    return REPO


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Runs the test in a fresh folder, so relative outputs land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
