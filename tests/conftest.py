"""Shared test helpers: where the repository's flows and fixtures are."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOWS = ROOT / "flows"
FIXTURES = Path(__file__).resolve().parent / "flows"


@pytest.fixture
def seguros_text() -> str:
    """The shipped Spanish insurance flow, as text."""
    return (FLOWS / "seguros.yaml").read_text("utf-8")
