"""The full pipeline on a simulated 7 T fMRI series: repetitions per second, calibrate once.

Case ``fmri``: :func:`recon.sim.simulate` writes a 2D single-slice series of 40 repetitions,
32 coils, GRAPPA R=3 with 24 embedded calibration lines, correlated noise and noise
readouts, and a 3 % block-design activation. Implementations, same process, same file:

- ``pipeline``: :func:`recon.pipeline.reconstruct` with the Siemens Terra config (32 -> 16
  virtual coils, GRAPPA 5x4), one unit per repetition, weights calibrated once; sorting
  each repetition from the file is included;
- ``pipeline-32``: the automatically chosen default config (no coil compression);
- ``grappa_chain``: :func:`recon.cartesian.chain.grappa_chain` on the whole series sorted
  into memory at once (it calibrates once per slice too; the sorting is included).

``throughput`` is repetitions per second; ``nrmse`` is against the simulator's object of each
repetition (weighted by ``sqrt(S^H Psi^-1 S)`` as the RSS of prewhitened coils is), the median
over repetitions; ``ratio`` is the peer's time over the pipeline's (> 1: the pipeline is faster).

Case ``sms-epi``: :func:`recon.sim.epi.simulate_epi` writes a multiband 7 T EPI run (32 coils,
in-plane R=3, multiband 3 with CAIPI factor 3, 20 repetitions, ramp sampling, odd/even phase
errors, a single-band reference; 64 x 64 x 6 slices quick, 96 x 96 x 12 full). Implementations:

- ``pipeline``: :func:`recon.pipeline.reconstruct` with the automatically chosen config (one
  unit per true slice and repetition; reference, split-slice and in-plane GRAPPA kernels
  calibrated once through the context cache);
- ``reconstruct_sms_epi``: :func:`recon.cartesian.epi.reconstruct_sms_epi`, the same algorithm
  frame by frame without the pipeline's stages.

``throughput`` is volumes per second (all slices of one repetition); ``nrmse`` the median over
slices and repetitions of the scaled NRMSE inside the object against the simulated magnitude.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np

from benchmarks.harness import Row, measure
from recon.backend import rss
from recon.metrics import scaled_nrmse

SUITE = "pipeline"
REPETITIONS = 40
EPI_REPETITIONS = 20


def _references(truth) -> np.ndarray:
    """Ground truth of every repetition, ``(nrep, ny, nx)`` magnitude, RSS-weighted."""
    w = np.linalg.inv(np.linalg.cholesky(truth.noise_covariance))
    weight = rss(np.tensordot(w, truth.coil_maps, axes=(1, 0)), axis=0)[0]
    frames = truth.image[0] * (1 + truth.activation[0] * truth.timecourse[:, None, None])
    return np.abs(frames) * weight


def _quality(images: np.ndarray, references: np.ndarray, inside: np.ndarray) -> float:
    images = images.reshape(references.shape)
    return float(
        np.median([scaled_nrmse(x, r, inside) for x, r in zip(images, references, strict=True)])
    )


def _epi_quality(images: np.ndarray, truth) -> float:
    """Median scaled NRMSE inside the object over slices and repetitions of ``images``
    ``(nrep, nslices, ny, nx)`` against the simulated magnitude."""
    magnitude = np.abs(truth.image)
    inside = magnitude > 0.05 * magnitude.max()
    errors = [
        scaled_nrmse(frame[s], magnitude[s] * (1 + truth.activation[s] * course), inside[s])
        for frame, course in zip(images, truth.timecourse, strict=True)
        for s in range(len(magnitude))
    ]
    return float(np.median(errors))


def _epi_rows(quick: bool, repeats: int, warmup: int) -> list[Row]:
    """Rows of the multiband EPI case (see the module docstring)."""
    from recon.cartesian.epi import reconstruct_sms_epi
    from recon.io.ismrmrd import read_dataset
    from recon.pipeline import plan_run, reconstruct
    from recon.sim.epi import EpiSpec, simulate_epi

    n, nslices = (64, 6) if quick else (96, 12)
    spec = EpiSpec(
        matrix=n, slices=nslices, ncoils=32, accel=3, calib=32, multiband=3,
        repetitions=EPI_REPETITIONS, slice_spacing_mm=10.0,
    )  # fmt: skip
    case = f"sms-epi {n}x{n}x{nslices} 32ch R=3 MB=3 x{EPI_REPETITIONS}"
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        truth = simulate_epi(Path(folder) / "sms.h5", spec)
        raw = read_dataset(truth.path)
        plan = plan_run(raw, device="cpu")
        mine = measure(lambda: reconstruct(plan, measure_memory=False), repeats=repeats,
                       warmup=warmup)  # fmt: skip
        peer = measure(lambda: reconstruct_sms_epi(raw), repeats=repeats, warmup=warmup)
    return [
        Row(SUITE, case, "pipeline", mine.median_s, mine.peak_mib,
            nrmse=_epi_quality(mine.result.images, truth), ratio=1.0,
            throughput=EPI_REPETITIONS / mine.median_s, unit="vol/s",
            notes=f"config {plan.config.name}, calibrations {mine.result.calibrations}"),
        Row(SUITE, case, "reconstruct_sms_epi", peer.median_s, peer.peak_mib,
            nrmse=_epi_quality(peer.result.images, truth), ratio=peer.median_s / mine.median_s,
            throughput=EPI_REPETITIONS / peer.median_s, unit="vol/s",
            notes=f"calibrations {dict(peer.result.counts)}"),
    ]  # fmt: skip


def run(quick: bool = True) -> list[Row]:
    """Rows for the fMRI case (quick: 48 x 48, one timed run; full: 128 x 128, median of 3)
    and the multiband EPI case."""
    from recon.cartesian.chain import grappa_chain
    from recon.io.ismrmrd import read_dataset
    from recon.io.sort import sort_cartesian
    from recon.pipeline import plan_run, reconstruct
    from recon.sim import SimSpec, simulate

    n = 48 if quick else 128
    repeats, warmup = (1, 0) if quick else (3, 1)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = SimSpec(matrix=n, ncoils=32, accel=3, repetitions=REPETITIONS, noise_std=0.003)
        truth = simulate(Path(folder) / "fmri.h5", spec)
        references = _references(truth)
        inside = np.abs(truth.image[0]) > 0.05 * np.abs(truth.image).max()
        raw = read_dataset(truth.path)
        case = f"fmri {n}x{n} 32ch R=3 x{REPETITIONS}"
        terra = plan_run(raw, config="siemens_terra_nova32", device="cpu")
        automatic = plan_run(raw, device="cpu")

        def ours():
            return reconstruct(terra, measure_memory=False)

        def ours32():
            return reconstruct(automatic, measure_memory=False)

        def chain():
            return grappa_chain(sort_cartesian(raw), pf_method="pocs")

        mine = measure(ours, repeats=repeats, warmup=warmup)
        rows.append(
            Row(
                SUITE,
                case,
                "pipeline",
                mine.median_s,
                mine.peak_mib,
                nrmse=_quality(mine.result.images, references, inside),
                ratio=1.0,
                throughput=REPETITIONS / mine.median_s,
                unit="rep/s",
                notes=f"config {terra.config.name}, calibrations {mine.result.calibrations}",
            )
        )
        for impl, fn, images, note in (
            ("pipeline-32", ours32, lambda m: m.result.images, f"config {automatic.config.name}"),
            ("grappa_chain", chain, lambda m: m.result, "whole series in memory"),
        ):
            peer = measure(fn, repeats=repeats, warmup=warmup)
            rows.append(
                Row(
                    SUITE,
                    case,
                    impl,
                    peer.median_s,
                    peer.peak_mib,
                    nrmse=_quality(images(peer), references, inside),
                    ratio=peer.median_s / mine.median_s,
                    throughput=REPETITIONS / peer.median_s,
                    unit="rep/s",
                    notes=note,
                )
            )
    rows.extend(_epi_rows(quick, repeats, warmup))
    return rows


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
