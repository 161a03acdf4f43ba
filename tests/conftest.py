"""Shared test helpers: where the repository's flows and fixtures are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI explores the same examples every run, so that a red run is reproducible and not luck;
# locally each run explores new ones (and keeps failures in .hypothesis/).
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parents[1]
FLOWS = ROOT / "flows"
FIXTURES = Path(__file__).resolve().parent / "flows"


@pytest.fixture
def seguros_text() -> str:
    """The shipped Spanish insurance flow, as text."""
    return (FLOWS / "seguros.yaml").read_text("utf-8")
