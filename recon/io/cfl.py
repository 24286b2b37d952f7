"""BART ``.cfl``/``.hdr`` files.

BART stores a complex64 array in column-major (Fortran) order in ``<name>.cfl`` and its
dimensions, first (fastest) first, in the text file ``<name>.hdr``::

    # Dimensions
    256 256 1 8

Our arrays are C-ordered ``(..., ncoils, nz, ny, nx)``, readout last. The same bytes read
in the other order are BART's ``(nx, ny, nz, ncoils, ...)``, readout first, which is BART's
own convention; so :func:`write_cfl` writes the C-ordered bytes with the dimensions
reversed and :func:`read_cfl` reverses them back. No data is transposed either way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.errors import InputError
from recon.io.atomic import atomic_path


def _base(path: str | Path) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".cfl", ".hdr") else path


def write_cfl(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` (any shape, cast to complex64) as ``<base>.cfl`` + ``<base>.hdr``.

    Returns the ``.cfl`` path. The ``.hdr`` is renamed into place last, so a reader never
    sees a header without its complete data.
    """
    base = _base(path)
    array = np.ascontiguousarray(np.asarray(array), dtype=np.complex64)
    dims = list(array.shape[::-1]) or [1]
    cfl, hdr = base.with_name(base.name + ".cfl"), base.with_name(base.name + ".hdr")
    with atomic_path(cfl) as tmp:
        array.tofile(tmp)
    with atomic_path(hdr) as tmp:
        tmp.write_text("# Dimensions\n" + " ".join(str(d) for d in dims) + "\n")
    return cfl


def read_cfl(path: str | Path) -> np.ndarray:
    """Read ``<base>.cfl``/``.hdr`` into a C-ordered complex64 array (BART dims reversed).

    Trailing singleton BART dimensions are dropped (they are leading axes here).
    """
    base = _base(path)
    hdr, cfl = base.with_name(base.name + ".hdr"), base.with_name(base.name + ".cfl")
    if not hdr.is_file() or not cfl.is_file():
        raise InputError(f"{base}: BART file needs both {hdr.name} and {cfl.name}")
    lines = [ln.strip() for ln in hdr.read_text().splitlines()]
    try:
        at = lines.index("# Dimensions")
        dims = [int(d) for d in lines[at + 1].split()]
    except (ValueError, IndexError):
        raise InputError(f"{hdr}: no '# Dimensions' line followed by integers") from None
    while len(dims) > 1 and dims[-1] == 1:
        dims.pop()
    count = int(np.prod(dims))
    size = cfl.stat().st_size
    if size != 8 * count:
        raise InputError(f"{cfl}: holds {size} bytes, {hdr.name} says {dims} ({8 * count} bytes)")
    return np.fromfile(cfl, dtype=np.complex64).reshape(dims[::-1])
