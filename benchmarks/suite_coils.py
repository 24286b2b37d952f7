"""ESPIRiT calibration: recon.coils.sensitivity.espirit_maps vs SigPy (and BART when present).

Same k-space, same parameters (kernel, calibration width, threshold 0.02 of sigma_max, crop
0.8), same process. Cases: a 32-coil 2-D slice and a 32-coil 3-D volume (full mode:
256 x 256 and 40^3; quick mode: 128 x 128 and 16^3 so the suite stays under a minute).
The 3-D calibration uses kernel 4 and width 10 (16 in full mode): SigPy takes the full SVD
of the calibration matrix, which at BART's 6^3 kernel and 24^3 region (6859 x 6912) takes
minutes for every implementation alike.

Where the time goes: SigPy forms every image-size kernel image and the per-pixel
``nc x nc`` matrices at full size (``N^d nc^2`` complex values, 512 MiB for 256^2 x 32
coils) and runs 100 power iterations. Ours evaluates the same operator from its
``(2k-1)^d`` Fourier coefficients block by block (exact, see ``espirit_lags``) and stops
the power iteration on a residual test, starting from the operator's strongest column.

``nrmse`` is against the true maps (normalised, phase-referenced to the dominant coil)
inside the object; ``peak_mib`` is what tracemalloc sees (NumPy allocations). ``bart
ecalib`` runs as a subprocess (time includes its file I/O; memory not measured).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import Row, measure
from recon.backend import fftc
from recon.coils.sensitivity import dominant_coil_vector, espirit_maps, phase_reference
from recon.metrics import nrmse

SUITE = "coils"


def _case(shape: tuple[int, ...], ncoils: int = 32, seed: int = 0):
    """Phantom, normalised birdcage-like maps (rings along z in 3-D) and k-space."""
    import sigpy
    import sigpy.mri

    if len(shape) == 2:
        image = sigpy.shepp_logan(shape).astype(np.complex64)
        maps = sigpy.mri.birdcage_maps((ncoils, *shape), r=1.2).astype(np.complex64)
    else:
        image = sigpy.shepp_logan(shape).astype(np.complex64)
        rings = 4
        per = ncoils // rings
        ring = sigpy.mri.birdcage_maps((per, *shape[1:]), r=1.2).astype(np.complex64)
        z = (np.arange(shape[0]) - shape[0] / 2) / shape[0]
        maps = np.concatenate(
            [
                ring[:, None] * np.exp(-((z - c) ** 2) / 0.18)[None, :, None, None]
                for c in np.linspace(-0.4, 0.4, rings)
            ]
        ).astype(np.complex64)
    maps /= np.sqrt(np.sum(np.abs(maps) ** 2, axis=0))
    k = fftc(maps * image, axes=tuple(range(1, len(shape) + 1)))
    gen = np.random.default_rng(seed)
    k += 1e-4 * np.abs(k).max() * (gen.standard_normal(k.shape) + 1j * gen.standard_normal(k.shape))
    return image, maps, k.astype(np.complex64)


def _error(maps: np.ndarray, truth: np.ndarray, k: np.ndarray, inside: np.ndarray, width: int):
    centre = tuple(slice(n // 2 - width // 2, n // 2 + width // 2) for n in k.shape[1:])
    u = dominant_coil_vector(k[(slice(None), *centre)])
    return nrmse(phase_reference(maps, u)[:, inside], phase_reference(truth, u)[:, inside])


def _bart(k: np.ndarray, kernel: int, calib: int) -> tuple[float, np.ndarray] | None:
    bart = shutil.which("bart")
    if bart is None:
        return None
    from recon.io.cfl import read_cfl, write_cfl

    with tempfile.TemporaryDirectory() as tmp:
        # BART dims: x, y, z, coils (reversed from our C order (coils, z, y, x))
        kb = k if k.ndim == 4 else k[:, None]
        write_cfl(Path(tmp) / "k", kb)
        start = time.perf_counter()
        subprocess.run(
            [bart, "ecalib", "-m1", f"-k{kernel}", f"-r{calib}", "-c0.8",
             str(Path(tmp) / "k"), str(Path(tmp) / "maps")],
            check=True, capture_output=True,
        )  # fmt: skip
        elapsed = time.perf_counter() - start
        maps = read_cfl(Path(tmp) / "maps").reshape(kb.shape)
    return elapsed, maps.reshape(k.shape)


def _rows(case: str, shape: tuple[int, ...], kernel: int, calib: int, repeats: int) -> list[Row]:
    import sigpy.mri

    image, truth, k = _case(shape)
    inside = np.abs(image) > 1e-3
    options = dict(kernel_width=kernel, calib_width=calib, thresh=0.02, crop=0.8)
    ours = measure(lambda: espirit_maps(k, shape, **options), repeats=repeats, warmup=1)
    sig = measure(
        lambda: sigpy.mri.app.EspiritCalib(k, show_pbar=False, max_iter=100, **options).run(),
        repeats=1,
        warmup=0,
    )
    diff = _error(ours.result, sig.result, k, inside, calib)
    rows = [
        Row(SUITE, case, "recon", ours.median_s, ours.peak_mib,
            nrmse=_error(ours.result, truth, k, inside, calib), ratio=1.0,
            notes=f"vs sigpy {diff:.4f}"),
        Row(SUITE, case, "sigpy", sig.median_s, sig.peak_mib,
            nrmse=_error(sig.result, truth, k, inside, calib),
            ratio=sig.median_s / ours.median_s,
            notes=f"memory {sig.peak_mib / max(ours.peak_mib, 1e-9):.1f}x ours"),
    ]  # fmt: skip
    bart = _bart(k, kernel, calib)
    if bart is not None:
        elapsed, maps = bart
        rows.append(
            Row(SUITE, case, "bart", elapsed, float("nan"),
                nrmse=_error(maps, truth, k, inside, calib), ratio=elapsed / ours.median_s,
                notes="subprocess, includes file I/O")
        )  # fmt: skip
    return rows


def run(quick: bool = True) -> list[Row]:
    """ESPIRiT on a 32-coil slice and a 32-coil volume, ours vs SigPy (and BART)."""
    if quick:
        return [
            *_rows("espirit-2d-128-32c", (128, 128), 6, 24, repeats=3),
            *_rows("espirit-3d-16-32c", (16, 16, 16), 4, 10, repeats=3),
        ]
    return [
        *_rows("espirit-2d-256-32c", (256, 256), 6, 24, repeats=3),
        *_rows("espirit-3d-40-32c", (40, 40, 40), 4, 16, repeats=1),
    ]


if __name__ == "__main__":
    import sys

    for row in run(quick="--full" not in sys.argv):
        print(row)
