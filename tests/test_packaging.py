"""The wheel ships the CUDA kernels and scanner configs, and recon finds them at run time."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from recon import resources

REPO = Path(__file__).resolve().parents[1]


def _source_files(folder: str, pattern: str) -> list[str]:
    return sorted(p.name for p in (REPO / folder).glob(pattern))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if not (REPO / "pyproject.toml").is_file():
        pytest.skip("not running from a source checkout")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
        ],
        check=True,
    )
    (built,) = out.glob("recon-*.whl")
    return built


@pytest.mark.parametrize(
    ("folder", "pattern"), [("kernels", "*.cu"), ("scanner_configs", "*.toml")]
)
def test_wheel_contains_data(wheel, folder, pattern):
    expected = _source_files(folder, pattern)
    assert expected, f"no {pattern} in {folder}/"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    missing = [n for n in expected if f"recon/_data/{folder}/{n}" not in names]
    assert missing == []
    assert "recon/cli/app.py" in names


def test_runtime_lookup_finds_data():
    """From an editable or a wheel install, the shipped folders are found."""
    assert sorted(p.name for p in resources.kernels_dir().glob("*.cu"))
    assert (resources.scanner_configs_dir() / "default.toml").is_file()
