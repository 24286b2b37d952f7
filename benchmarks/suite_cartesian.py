"""Cartesian parallel imaging and CS: recon against SigPy, BART (when on the PATH) and pygrappa.

Same data, same iteration counts, same process:

- ``cg-sense``: CG-SENSE (``pics`` without regulariser) vs ``sigpy.mri.app.SenseRecon``,
  on the 8x variable-density data and on R=3 line data (where our readout FFT leaves the
  loop);
- ``l1-wavelet``: FISTA + db4 with cycle spinning vs ``sigpy.mri.app.L1WaveletRecon``;
- ``tv``: primal-dual TV vs ``sigpy.mri.app.TotalVariationRecon``;
  each also vs ``bart pics`` when ``bart`` is on the PATH;
- ``grappa``: calibration + image-domain application (RSS of per-coil images) vs
  ``pygrappa.mdgrappa``, ``pygrappa.cgrappa`` and ``pygrappa.grappa`` (kernel 5x5, their
  default, i.e. about 2 acquired lines x 5 at R=3, matched by our 5x2; our default 5x4 is
  reported too); ``grappa-apply``: one more repetition with the weights reused (fMRI).

Data: Shepp-Logan phantom with SigPy's birdcage maps (normalised, ``sum |S|^2 = 1``),
white noise, 8x variable-density random mask (CS cases) or R=3 lines + 24 ACS (GRAPPA).
The k-space is divided by the BART-like scale first so one lambda means the same for every
implementation. ``nrmse`` is against the phantom (after a least-squares scale); the notes give
the NRMSE between our output and the peer's. Targets: >= 3x SigPy, >= 10x pygrappa, no slower
than BART, at matching quality.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.harness import Row, measure
from recon.backend import fftc, ifftc, rss
from recon.cartesian.grappa import caipi_mask, find_acs, grappa
from recon.cartesian.sampling import variable_density_mask
from recon.iterative.blas import single_threaded_blas
from recon.iterative.pics import pics
from recon.iterative.scaling import estimate_scale
from recon.metrics import scaled_nrmse

SUITE = "cartesian"


def _data(n: int, ncoils: int, seed: int = 0):
    import sigpy
    import sigpy.mri

    x = sigpy.shepp_logan((n, n)).astype(np.complex64)
    maps = sigpy.mri.birdcage_maps((ncoils, n, n), r=1.2).astype(np.complex64)
    maps /= np.sqrt(np.sum(np.abs(maps) ** 2, axis=0))
    k = fftc(maps * x, axes=(1, 2))
    gen = np.random.default_rng(seed)
    k += 0.005 * (gen.standard_normal(k.shape) + 1j * gen.standard_normal(k.shape))
    return x, maps, k.astype(np.complex64)


def _row(case, impl, m, ref, ours=None, notes=""):
    err = scaled_nrmse(m.result, ref)
    if ours is not None:
        notes = (notes + " " if notes else "") + f"vs recon {scaled_nrmse(m.result, ours):.3f}"
    return Row(SUITE, case, impl, m.median_s, m.peak_mib, nrmse=err, notes=notes)


def _bart_pics(k, maps, regularizer: str, iterations: int) -> np.ndarray:
    """``bart pics`` on ``(ny, nx, 1, ncoils)`` cfl files; returns the ``(ny, nx)`` image."""
    from recon.io.cfl import read_cfl, write_cfl

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        write_cfl(d / "k", np.transpose(k, (1, 2, 0))[:, :, None, :])
        write_cfl(d / "s", np.transpose(maps, (1, 2, 0))[:, :, None, :])
        cmd = ["bart", "pics", "-S", "-i", str(iterations), *regularizer.split()]
        subprocess.run(
            [*cmd, str(d / "k"), str(d / "s"), str(d / "x")], check=True, capture_output=True
        )
        return read_cfl(d / "x").reshape(k.shape[1:])


def _cs_cases(quick: bool) -> list[Row]:
    import sigpy.mri.app as app

    n, nc, its = (128, 12, 30) if quick else (256, 32, 50)
    x, maps, k = _data(n, nc)
    mask = variable_density_mask((n, n), 8, calib=20, seed=1)
    ku = k * mask
    ku /= estimate_scale(ku, 2)
    ref = np.abs(x)
    weights = mask.astype(np.float32)
    repeats = 2 if quick else 3
    cases = [
        ("cg-sense", "", app.SenseRecon, {}, "-l2 -r 0.0"),
        ("l1-wavelet", "l1-wavelet:0.002", app.L1WaveletRecon, {"lamda": 0.002}, "-R W:3:0:0.002"),
        ("tv", "tv:0.005", app.TotalVariationRecon, {"lamda": 0.005}, "-R T:3:0:0.005"),
    ]
    rows = []
    for case, spec, peer, kwargs, bart_reg in cases:
        label = f"{case} {n}^2 x{nc} 8x {its} it"
        mine = measure(
            lambda spec=spec: np.abs(pics(ku, maps, regularizers=spec, iterations=its)[0]),
            repeats=repeats,
        )
        rows.append(_row(label, "recon", mine, ref))
        rows[-1].ratio = 1.0
        theirs = measure(
            lambda peer=peer, kwargs=kwargs: np.abs(
                peer(ku, maps, weights=weights, max_iter=its, show_pbar=False, **kwargs).run()
            ),
            repeats=repeats,
        )
        rows.append(_row(label, "sigpy", theirs, ref, mine.result))
        rows[-1].ratio = theirs.median_s / mine.median_s
        if shutil.which("bart"):
            bart = measure(
                lambda bart_reg=bart_reg: np.abs(_bart_pics(ku, maps, bart_reg, its)), repeats=1
            )
            rows.append(_row(label, "bart", bart, ref, mine.result))
            rows[-1].ratio = bart.median_s / mine.median_s
    return rows


def _sense_lines(quick: bool) -> list[Row]:
    """CG-SENSE on R=3 line data (2D Cartesian as acquired): the readout FFT leaves the loop."""
    import sigpy.mri.app as app

    n, nc, its = (128, 12, 30) if quick else (256, 32, 50)
    x, maps, k = _data(n, nc, seed=4)
    lines = caipi_mask((n,), 3, acs=24)
    ku = k * lines[:, None]
    ku /= estimate_scale(ku, 2)
    weights = np.broadcast_to(lines[:, None], (n, n)).astype(np.float32)
    label = f"cg-sense {n}^2 x{nc} R=3 lines {its} it"
    mine = measure(lambda: np.abs(pics(ku, maps, regularizers="", iterations=its)[0]), repeats=2)
    rows = [_row(label, "recon", mine, np.abs(x))]
    rows[-1].ratio = 1.0
    theirs = measure(
        lambda: np.abs(
            app.SenseRecon(ku, maps, weights=weights, max_iter=its, show_pbar=False).run()
        ),
        repeats=2,
    )
    rows.append(_row(label, "sigpy", theirs, np.abs(x), mine.result))
    rows[-1].ratio = theirs.median_s / mine.median_s
    return rows


def _grappa_cases(quick: bool) -> list[Row]:
    n, nc = (128, 16) if quick else (256, 32)
    x, _maps, k = _data(n, nc, seed=2)
    mask = caipi_mask((n,), 3, acs=24)
    ku = k * mask[:, None]
    ref = np.abs(x)
    label = f"grappa {n}^2 x{nc} R=3"
    # Kernel 5x2 (readout x acquired lines): the source count of pygrappa's 5x5 window at R=3.
    mine = measure(lambda: grappa(ku, ry=3, kernel=(2, 5)), repeats=3)
    rows = [_row(label, "recon", mine, ref, notes="kernel 5x2")]
    rows[-1].ratio = 1.0
    default = measure(lambda: grappa(ku, ry=3), repeats=3)
    rows.append(_row(label, "recon 5x4", default, ref, mine.result, notes="default kernel"))
    try:
        import pygrappa
    except ImportError:
        rows[-1].notes = "pygrappa not installed (pip install recon[bench])"
        return rows
    _, sy = find_acs(mask)
    kk = np.ascontiguousarray(np.moveaxis(ku, 0, -1), dtype=np.complex128)
    calib = np.ascontiguousarray(np.moveaxis(ku[:, sy], 0, -1), dtype=np.complex128)
    for name in ("mdgrappa", "cgrappa", "grappa"):
        fn = getattr(pygrappa, name)

        def run(fn=fn):
            # Same BLAS policy as ours (one thread): spinning OpenBLAS threads on a shared
            # machine would otherwise make the peer look 10x slower than it is.
            with single_threaded_blas(np):
                filled = fn(kk, calib, kernel_size=(5, 5), coil_axis=-1)
            return rss(ifftc(np.moveaxis(filled, -1, 0), axes=(1, 2)), 0)

        theirs = measure(
            run, repeats=1 if name == "grappa" else 2, warmup=0 if name == "grappa" else 1
        )
        rows.append(_row(label, f"pygrappa.{name}", theirs, ref, mine.result))
        rows[-1].ratio = theirs.median_s / mine.median_s
    return rows


def _grappa_reuse(quick: bool) -> list[Row]:
    """Per-repetition cost once the weights exist (fMRI series), combined with coil maps."""
    from recon.cartesian.grappa import GrappaRecon, calibrate, detect_lattice

    n, nc = (128, 16) if quick else (256, 32)
    x, maps, k = _data(n, nc, seed=3)
    mask = caipi_mask((n,), 3, acs=24)
    _, sy = find_acs(mask)
    recon = GrappaRecon(calibrate(k[:, sy], ry=3), (n, n), detect_lattice(mask, 3), maps)
    ku = k * mask[:, None]
    m = measure(lambda: recon(ku), repeats=5)
    row = _row(f"grappa-apply {n}^2 x{nc} R=3", "recon", m, x)
    row.throughput, row.unit = 1.0 / m.median_s, "frames/s"
    return [row]


def run(quick: bool = True) -> list[Row]:
    """All cases; quick sizes finish in well under a minute on 2 cores."""
    return _cs_cases(quick) + _sense_lines(quick) + _grappa_cases(quick) + _grappa_reuse(quick)


if __name__ == "__main__":
    from benchmarks.runner import SuiteOutcome, markdown_table

    print(markdown_table([SuiteOutcome(SUITE, run(quick=True), 0.0)]))
