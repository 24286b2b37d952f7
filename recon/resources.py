"""Locate files shipped with recon (CUDA kernels, scanner configs, benchmark suites).

In a wheel they live in ``recon/_data/``; in a source or editable install they
are the top-level ``kernels/``, ``scanner_configs/`` and ``benchmarks/`` folders of the checkout.
"""

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    installed = _PACKAGE_DIR / "_data" / name
    if installed.is_dir():
        return installed
    source_tree = _PACKAGE_DIR.parent / name
    if source_tree.is_dir():
        return source_tree
    raise FileNotFoundError(f"recon data folder {name!r} not found in {installed} or {source_tree}")


def kernels_dir() -> Path:
    """Folder holding the CUDA C sources ``*.cu``."""
    return _data_dir("kernels")


def scanner_configs_dir() -> Path:
    """Folder holding the scanner configurations ``*.toml``."""
    return _data_dir("scanner_configs")


def benchmarks_dir() -> Path:
    """Folder holding the benchmark suites (the ``benchmarks`` package)."""
    return _data_dir("benchmarks")


def kernel_source(name: str) -> str:
    """Text of the CUDA source ``kernels/<name>``."""
    return (kernels_dir() / name).read_text()
