"""Coil-compress a whole ISMRMRD file (every readout, noise readouts included).

The compression is computed once from the calibration readouts (both calibration kinds;
all imaging readouts when the file has none) and applied to every readout, so the output
is an ordinary ISMRMRD file with ``nvirtual`` channels that any tool can read
(:mod:`recon.coils.rawfile`). SVD works for any trajectory; GCC needs Cartesian readouts of
one length (the readout is the GCC direction; noise readouts of another length get the
matrix of the central readout position, which keeps white noise white).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.backend import fftc, ifftc
from recon.coils.compress import apply_gcc, gcc_matrices, svd_compression_matrix
from recon.coils.rawfile import rewrite_readouts
from recon.errors import ConfigError, InputError
from recon.io.flags import ReadoutKind
from recon.io.ismrmrd import read_dataset
from recon.io.sort import CALIBRATION_KINDS, IMAGING_KINDS


def compress_file(
    src: str | Path,
    dst: str | Path,
    *,
    nvirtual: int | None = None,
    energy: float | None = None,
    method: str = "svd",
    window: int = 5,
    group: str = "dataset",
) -> tuple[np.ndarray, float]:
    """Write ``dst``: ``src`` with every readout compressed to virtual coils.

    Returns
    -------
    matrix : ``(nvirtual, ncoils)`` (SVD) or ``(nsamples, nvirtual, ncoils)`` (GCC)
    kept : float
        Fraction of the calibration energy kept.
    """
    if method not in ("svd", "gcc"):
        raise ConfigError(f"compression method must be 'svd' or 'gcc', not {method!r}")
    src = Path(src)
    raw = read_dataset(src, group=group)
    rows = raw.select(*CALIBRATION_KINDS)
    if rows.size == 0:
        rows = raw.select(*IMAGING_KINDS)
    if rows.size == 0:
        raise InputError(f"{src}: no calibration or imaging readouts to compress from")
    calib, _ = raw.read(rows)  # (m, nc, ns)
    ncoils = calib.shape[1]
    coils_first = calib.transpose(1, 0, 2)
    if method == "svd":
        a = svd_compression_matrix(coils_first, nvirtual, energy)
        kept = float(np.sum(np.abs(a @ coils_first.reshape(ncoils, -1)) ** 2))

        def transform(block: np.ndarray) -> np.ndarray:
            return a @ block

    else:
        a = gcc_matrices(coils_first, nvirtual, energy, window=window)
        hybrid = ifftc(coils_first, axes=-1)
        kept = float(np.sum(np.abs(np.einsum("xvc,cmx->vmx", a, hybrid)) ** 2))
        centre = a[a.shape[0] // 2]

        def transform(block: np.ndarray) -> np.ndarray:
            if block.shape[-1] == a.shape[0]:
                return apply_gcc(block, a, coil_axis=1)
            return fftc(centre @ ifftc(block, axes=-1), axes=-1)

        noise = raw.kinds == int(ReadoutKind.NOISE)
        other = raw.usable & ~noise & (raw.head.number_of_samples != a.shape[0])
        if other.any():
            raise InputError(
                f"{src}: GCC needs readouts of one length ({a.shape[0]} samples); readout "
                f"{int(np.flatnonzero(other)[0])} has another: use --method svd"
            )
    kept /= float(np.sum(np.abs(calib) ** 2))
    nout = a.shape[-2]
    rewrite_readouts(
        src, dst, transform, raw.usable, ncoils_in=ncoils, ncoils_out=nout, group=group
    )
    return a, kept
