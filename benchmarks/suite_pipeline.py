"""The full pipeline on a simulated 7 T fMRI series: repetitions per second, calibrate once.

Case ``fmri``: 2D single slice, 32 coils (:mod:`recon.sim` Biot-Savart array and brain
phantom), GRAPPA R=3 with 24 calibration lines in the first repetition only, correlated
noise and noise readouts, written as a real ISMRMRD file. Implementations, same process,
same file:

- ``pipeline``: :func:`recon.pipeline.reconstruct` with the automatically chosen config
  (Siemens Terra, 32 -> 16 virtual coils, GRAPPA 5x4), one unit per repetition, weights
  calibrated once; the sorting of each repetition from the file is included;
- ``pipeline-32``: the same without coil compression (``--set chain...`` without
  ``compress``), the cost of 32 physical coils;
- ``grappa_chain``: :func:`recon.cartesian.grappa_chain` on the whole series sorted into
  memory at once (calibrates once per slice as well; the sorting is included).

``throughput`` is repetitions per second; ``nrmse`` is against the simulator's object
(RSS of the prewhitened noiseless coil images, median over repetitions); ``ratio`` is the
peer's time over the pipeline's.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np

from benchmarks.harness import Row, measure
from recon.backend import fftc, rss
from recon.metrics import scaled_nrmse

SUITE = "pipeline"
NOISE_FLAG, CALIB_FLAG, CALIB_IMAGING_FLAG = 1 << 18, 1 << 19, 1 << 20


def _header(n: int, ncoils: int, repetitions: int) -> str:
    import ismrmrd.xsd as X

    from recon.io.rawwrite import cartesian_header

    doc = X.CreateFromDocument(
        cartesian_header((n, n, 1), (220.0, 220.0, 3.0), ncoils=ncoils, repetitions=repetitions)
    )
    doc.acquisitionSystemInformation.systemVendor = "Siemens"
    doc.acquisitionSystemInformation.systemModel = "MAGNETOM Terra"
    doc.encoding[0].parallelImaging = X.parallelImagingType(
        accelerationFactor=X.accelerationFactorType(
            kspace_encoding_step_1=3, kspace_encoding_step_2=1
        ),
        calibrationMode=X.calibrationModeType.EMBEDDED,
    )
    return X.ToXML(doc)


def write_fmri(path: Path, *, n: int, ncoils: int = 32, repetitions: int = 40) -> tuple:
    """Write the fMRI series; returns ``(objects (nrep, n, n), reference weighting (n, n))``."""
    from recon.io.rawwrite import RawWriter, new_headers
    from recon.sim.coils import coil_sensitivities
    from recon.sim.noise import correlated_noise, noise_covariance
    from recon.sim.phantom import brain_phantom

    rng = np.random.default_rng(7)
    maps = coil_sensitivities(ncoils, (n, n))
    base = brain_phantom((n, n), seed=1)
    psi = noise_covariance(ncoils, seed=2)
    sigma = 0.01 * float(np.abs(base).max())
    y, x = np.mgrid[:n, :n] - n / 2
    blob = np.exp(-((y - n / 8) ** 2 + (x + n / 10) ** 2) / (2 * (n / 16) ** 2))
    lines = np.arange(n)
    lattice = lines % 3 == 0
    acs = np.abs(lines - n // 2) < 12
    objects = []
    with RawWriter(path, _header(n, ncoils, repetitions)) as writer:
        nnoise = -(-32768 // n)
        head = new_headers(nnoise, ncoils=ncoils, nsamples=n)
        head["flags"] = NOISE_FLAG
        head["sample_time_us"] = 5.0
        noise = correlated_noise(psi, (nnoise, n), rng).transpose(1, 0, 2)
        writer.append(head, sigma * noise)
        for r in range(repetitions):
            obj = base * (1 + 0.03 * np.sin(2 * np.pi * r / 10) * blob)
            objects.append(obj)
            k = fftc(maps * obj, axes=(1, 2))
            take = lattice | (acs if r == 0 else False)
            rows = np.flatnonzero(take)
            head = new_headers(len(rows), ncoils=ncoils, nsamples=n)
            head["idx"]["kspace_encode_step_1"] = rows
            head["idx"]["repetition"] = r
            head["sample_time_us"] = 5.0
            flags = np.zeros(len(rows), np.uint64)
            flags[acs[rows] & lattice[rows]] = CALIB_IMAGING_FLAG
            flags[acs[rows] & ~lattice[rows]] = CALIB_FLAG
            head["flags"] = flags
            data = k[:, rows].transpose(1, 0, 2)
            data = data + sigma * correlated_noise(psi, (len(rows), n), rng).transpose(1, 0, 2)
            writer.append(head, data.astype(np.complex64))
    w = np.linalg.inv(np.linalg.cholesky(psi))
    weight = rss(np.tensordot(w, maps, axes=(1, 0)), axis=0)
    return np.array(objects), weight


def _quality(images: np.ndarray, objects: np.ndarray, weight: np.ndarray) -> float:
    inside = np.abs(objects[0]) > 0.05 * np.abs(objects[0]).max()
    errors = [
        scaled_nrmse(images[r].reshape(weight.shape), np.abs(objects[r]) * weight, inside)
        for r in range(len(objects))
    ]
    return float(np.median(errors))


def run(quick: bool = True) -> list[Row]:
    """Rows for the fMRI case (quick: 64 x 64, one timed run; full: 128 x 128, median of 3)."""
    from recon.cartesian.chain import grappa_chain
    from recon.io.ismrmrd import read_dataset
    from recon.io.sort import sort_cartesian
    from recon.pipeline import plan_run, reconstruct

    n = 64 if quick else 128
    repetitions = 40
    repeats, warmup = (1, 0) if quick else (3, 1)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(folder) / "fmri.h5"
        objects, weight = write_fmri(path, n=n, repetitions=repetitions)
        raw = read_dataset(path)
        case = f"fmri {n}x{n} 32ch R=3 x{repetitions}"
        plan = plan_run(raw, device="cpu")
        no_compress = plan_run(
            raw,
            device="cpu",
            overrides=[
                "chain.cartesian_2d_accelerated=prewhiten,grappa,partial_fourier,fft,combine"
            ],
        )

        def ours():
            return reconstruct(plan, measure_memory=False)

        def ours32():
            return reconstruct(no_compress, measure_memory=False)

        def chain():
            return grappa_chain(sort_cartesian(raw), pf_method="pocs")

        mine = measure(ours, repeats=repeats, warmup=warmup)
        calibrations = mine.result.calibrations
        rows.append(
            Row(
                SUITE,
                case,
                "pipeline",
                mine.median_s,
                mine.peak_mib,
                nrmse=_quality(mine.result.images, objects, weight),
                ratio=1.0,
                throughput=repetitions / mine.median_s,
                unit="rep/s",
                notes=f"config {plan.config.name}, calibrations {calibrations}",
            )
        )
        for impl, fn, images in (
            ("pipeline-32", ours32, lambda m: m.result.images),
            ("grappa_chain", chain, lambda m: m.result.reshape(repetitions, -1)),
        ):
            peer = measure(fn, repeats=repeats, warmup=warmup)
            rows.append(
                Row(
                    SUITE,
                    case,
                    impl,
                    peer.median_s,
                    peer.peak_mib,
                    nrmse=_quality(images(peer), objects, weight),
                    ratio=peer.median_s / mine.median_s,
                    throughput=repetitions / peer.median_s,
                    unit="rep/s",
                )
            )
    return rows


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
