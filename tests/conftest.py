"""Shared fixtures: the real data folder, seeded generators, GPU skipping."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from recon.backend import gpu_available
from recon.resources import benchmarks_dir

# `benchmarks` is importable as installed with recon (wheel) or from the checkout (editable).
sys.path.insert(0, str(benchmarks_dir().parent))


def shared_data_dir() -> Path:
    """``../shared/data`` beside the checkout, or ``$RECON_SHARED_DATA``."""
    override = os.environ.get("RECON_SHARED_DATA")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_file():
    """Return a function giving the path of a real data file, skipping when absent."""

    def _get(name: str) -> Path:
        path = shared_data_dir() / name
        if not path.is_file():
            pytest.skip(f"real data {name} not available in {path.parent}")
        return path

    return _get


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator (tests are deterministic)."""
    return np.random.default_rng(20261125)


def pytest_collection_modifyitems(config, items):
    if gpu_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU with CuPy")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip_gpu)
