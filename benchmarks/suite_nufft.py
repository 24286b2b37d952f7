"""Non-Cartesian: NUFFT type 1/2 throughput and CG-SENSE time per iteration against the peers.

Same points, same data, same process:

- ``nufft``: recon's NufftPlan (CPU path: FINUFFT backend; on a GPU also our cuda kernels)
  against ``sigpy.nufft`` / ``sigpy.nufft_adjoint`` (its defaults: upsampling 1.25, width 4),
  raw FINUFFT (a ``finufft.Plan`` made and pointed once, the wrapper's floor) and, on a GPU,
  cuFINUFFT. Cases: 2D 256^2 with 400 golden-angle spokes of 512 and 32 coils; 3D
  stack-of-stars and 3D radial; eps 1e-3 and 1e-5. ``throughput`` is points x coils per second;
  ``nrmse`` is against the exact NUDFT (float64) of the first coil on 256 random points (type
  2) or 256 random pixels (type 1).
- ``cg-sense``: Toeplitz CG-SENSE (``recon.noncart.reconstruct.NoncartSense`` + CG) against
  ``sigpy.mri.app.SenseRecon`` with ``coord`` and, when ``bart`` is on the PATH, ``bart pics``
  with ``-t``; time per iteration = (T(K) - T(1)) / (K - 1), so set-up is excluded for everyone.

Quick mode (the default of ``recon bench``) uses 8 coils, 100 spokes and smaller 3D cases so the
suite runs in well under a minute on 2 shared cores; the notes say so. Targets on a CPU:
NUFFT >= 4x SigPy at equal or better accuracy, wrapper overhead < 10 % vs raw FINUFFT,
Toeplitz CG-SENSE >= 10x SigPy per iteration; on a GPU our kernels faster than cuFINUFFT.
"""

from __future__ import annotations

import math
import shutil
import statistics
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from benchmarks.harness import Measurement, Row, measure
from recon.backend import gpu_available
from recon.iterative.solvers import conjugate_gradient
from recon.metrics import nrmse, scaled_nrmse
from recon.noncart.nudft import nudft_adjoint, nudft_forward
from recon.noncart.nufft import NufftPlan
from recon.noncart.reconstruct import NoncartSense
from recon.noncart.trajectory import radial, radial_3d, stack_of_stars

SUITE = "nufft"


class _Case:
    """One NUFFT benchmark case: image shape, flat points, coils, and accuracy references."""

    def __init__(self, name: str, shape: tuple[int, ...], coord: np.ndarray, ncoils: int,
                 seed: int = 0) -> None:  # fmt: skip
        gen = np.random.default_rng(seed)
        self.name, self.shape, self.ncoils = name, shape, ncoils
        self.coord = np.ascontiguousarray(coord.reshape(-1, len(shape)), dtype=np.float32)
        self.npts = self.coord.shape[0]
        size = (ncoils, *shape)
        self.image = (gen.standard_normal(size) + 1j * gen.standard_normal(size)).astype(
            np.complex64
        )
        size = (ncoils, self.npts)
        self.samples = (gen.standard_normal(size) + 1j * gen.standard_normal(size)).astype(
            np.complex64
        )
        self.points = gen.choice(self.npts, 256, replace=False)
        self.pixels = gen.choice(math.prod(shape), 256, replace=False)
        self.ref2 = nudft_forward(self.image[0], self.coord[self.points])
        self.ref1 = nudft_adjoint(self.samples[0], self.coord, shape, self.pixels)

    def error(self, kind: int, out: np.ndarray) -> float:
        if kind == 2:
            return nrmse(np.asarray(out)[0, self.points], self.ref2)
        return nrmse(np.asarray(out)[0].ravel()[self.pixels], self.ref1)


def _raw_finufft(case: _Case, kind: int, eps: float):
    import finufft

    isign = -1 if kind == 2 else 1
    plan = finufft.Plan(kind, case.shape, case.ncoils, eps, isign, dtype="complex64")
    plan.setpts(*[np.ascontiguousarray(2 * np.pi / n * case.coord[:, a])
                  for a, n in enumerate(case.shape)])  # fmt: skip
    scale = np.float32(1 / math.sqrt(math.prod(case.shape)))
    data = case.image if kind == 2 else case.samples
    return lambda: plan.execute(data) * scale


def _sigpy(case: _Case, kind: int):
    import sigpy

    if kind == 2:
        return lambda: sigpy.nufft(case.image, case.coord)
    return lambda: sigpy.nufft_adjoint(case.samples, case.coord, (case.ncoils, *case.shape))


def _paired(fns: dict, repeats: int) -> tuple[dict, dict]:
    """Time the callables in alternation (a, b, c, a, b, c, ...) after one warm-up each.

    Interleaving keeps a slow phase of a shared machine from landing on one peer only. Peak
    memory is one extra traced call each (as :func:`benchmarks.harness.measure` does).
    Returns the measurements (wall time) and the median CPU time of this process per call,
    which shows the work done when other jobs compete for the cores.
    """
    results = {name: fn() for name, fn in fns.items()}
    times: dict = {name: [] for name in fns}
    cpu: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    out = {}
    for name, fn in fns.items():
        tracemalloc.start()
        try:
            fn()
            peak = tracemalloc.get_traced_memory()[1] / 2**20
        finally:
            tracemalloc.stop()
        out[name] = Measurement(statistics.median(times[name]), times[name], peak, results[name])
    return out, {name: statistics.median(values) for name, values in cpu.items()}


def _nufft_rows(case: _Case, eps_list, repeats: int, notes: str) -> list[Row]:
    rows = []
    points = case.npts * case.ncoils
    for kind in (2, 1):
        sigpy_m = sigpy_cpu = None
        for eps in eps_list:
            label = f"{case.name} type{kind} eps{eps:g}"
            plan = NufftPlan(case.shape, case.coord, eps=eps)
            data = case.image if kind == 2 else case.samples
            run = plan.forward if kind == 2 else plan.adjoint
            fns = {"ours": lambda run=run, data=data: run(data),
                   "raw": _raw_finufft(case, kind, eps)}  # fmt: skip
            if sigpy_m is None:  # SigPy has no tolerance: timed once, beside our first eps
                fns["sigpy"] = _sigpy(case, kind)
            m, cpu = _paired(fns, repeats)
            if "sigpy" in m:
                sigpy_m, sigpy_cpu = m["sigpy"], cpu["sigpy"]
            base = m["ours"].median_s
            rows.append(Row(SUITE, label, "recon (finufft backend)", base, m["ours"].peak_mib,
                            nrmse=case.error(kind, m["ours"].result), ratio=1.0,
                            throughput=points / base, unit="pts/s",
                            notes=f"cpu {cpu['ours']:.3g} s; {notes}"))  # fmt: skip
            raw = m["raw"]
            overhead = base / raw.median_s - 1
            rows.append(Row(SUITE, label, "finufft (raw Plan)", raw.median_s, raw.peak_mib,
                            nrmse=case.error(kind, raw.result), ratio=raw.median_s / base,
                            throughput=points / raw.median_s, unit="pts/s",
                            notes=f"cpu {cpu['raw']:.3g} s; wrapper overhead "
                                  f"{100 * overhead:+.1f} %"))  # fmt: skip
            rows.append(Row(SUITE, label, "sigpy.nufft" if kind == 2 else "sigpy.nufft_adjoint",
                            sigpy_m.median_s, sigpy_m.peak_mib,
                            nrmse=case.error(kind, sigpy_m.result),
                            ratio=sigpy_m.median_s / base,
                            throughput=points / sigpy_m.median_s, unit="pts/s",
                            notes=f"cpu {sigpy_cpu:.3g} s; SigPy defaults (upsampling 1.25, "
                                  "width 4)"))  # fmt: skip
            rows.extend(_gpu_rows(case, kind, eps, label))
    return rows


def _gpu_rows(case: _Case, kind: int, eps: float, label: str) -> list[Row]:
    """Our cuda kernels against cuFINUFFT on the same points (only with a GPU)."""
    if not gpu_available():
        return []
    import cupy

    from recon.noncart.backends import available_backends

    rows = []
    data = cupy.asarray(case.image if kind == 2 else case.samples)
    timings = {}
    for backend in [b for b in ("cuda", "cufinufft") if b in available_backends()]:
        plan = NufftPlan(case.shape, cupy.asarray(case.coord), eps=eps, backend=backend,
                         device="cuda")  # fmt: skip
        run = plan.forward if kind == 2 else plan.adjoint

        def call(run=run):
            out = run(data)
            cupy.cuda.Device().synchronize()
            return out

        m = measure(call, repeats=5)
        timings[backend] = (m, case.error(kind, cupy.asnumpy(m.result)))
    if "cuda" not in timings:
        return []
    base = timings["cuda"][0].median_s
    for backend, (m, err) in timings.items():
        rows.append(Row(SUITE, label + " gpu", f"{backend} (GPU)", m.median_s, m.peak_mib,
                        nrmse=err, ratio=m.median_s / base,
                        throughput=case.npts * case.ncoils / m.median_s, unit="pts/s"))  # fmt: skip
    return rows


def _sense_data(n: int, ncoils: int, nspokes: int):
    import sigpy
    import sigpy.mri

    x = sigpy.shepp_logan((n, n)).astype(np.complex64)
    maps = sigpy.mri.birdcage_maps((ncoils, n, n), r=1.2).astype(np.complex64)
    maps /= np.sqrt(np.sum(np.abs(maps) ** 2, axis=0))
    coord = radial(nspokes, 2 * n, n=n)
    y = NufftPlan((n, n), coord, eps=1e-6).forward(maps * x)
    gen = np.random.default_rng(0)
    y += (0.005 * (gen.standard_normal(y.shape) + 1j * gen.standard_normal(y.shape))).astype(
        np.complex64
    )
    return x, maps, coord, y


def _per_iteration(run, iterations: int) -> tuple[float, object]:
    """(T(K) - T(1)) / (K - 1) for ``run(K)`` returning the image, and the K-iteration result."""
    start = time.perf_counter()
    run(1)
    one = time.perf_counter() - start
    start = time.perf_counter()
    result = run(iterations)
    full = time.perf_counter() - start
    return max(full - one, 1e-9) / (iterations - 1), result


def _bart_sense(y, maps, coord, iterations: int) -> np.ndarray:
    from recon.io.cfl import read_cfl, write_cfl

    ncoils = y.shape[0]
    traj = np.concatenate([coord[..., ::-1], np.zeros((*coord.shape[:-1], 1), np.float32)], -1)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        write_cfl(d / "t", traj)  # BART (3, nsamples, nspokes)
        write_cfl(d / "k", y.reshape(ncoils, *coord.shape[:-1], 1))  # (1, ns, nspokes, nc)
        write_cfl(d / "s", maps[:, None])  # (nx, ny, 1, nc)
        cmd = ["bart", "pics", "-S", "-i", str(iterations), "-t", str(d / "t")]
        subprocess.run([*cmd, str(d / "k"), str(d / "s"), str(d / "x")], check=True,
                       capture_output=True)  # fmt: skip
        return np.squeeze(read_cfl(d / "x"))


def _sense_rows(quick: bool) -> list[Row]:
    import sigpy.mri.app as app

    n, ncoils, nspokes, its = (128, 8, 60, 6) if quick else (256, 32, 200, 10)
    x, maps, coord, y = _sense_data(n, ncoils, nspokes)
    case = f"cg-sense {n}^2 {ncoils} coils {nspokes} spokes"
    notes = "quick sizes" if quick else ""

    setup_start = time.perf_counter()
    op = NoncartSense(coord, maps, eps=1e-4)
    setup = time.perf_counter() - setup_start
    rhs = op.rhs(y)
    per_it, img = _per_iteration(lambda k: conjugate_gradient(op.normal, rhs, iterations=k), its)
    rows = [Row(SUITE, case, "recon Toeplitz CG-SENSE", per_it, 0.0,
                nrmse=scaled_nrmse(img, x), ratio=1.0, unit="s/iteration",
                notes=f"{notes} set-up (PSF) {setup:.2f} s".strip())]  # fmt: skip

    def theirs(k):
        return app.SenseRecon(y, maps, coord=coord, max_iter=k, show_pbar=False).run()

    sp_it, sp_img = _per_iteration(theirs, its)
    rows.append(Row(SUITE, case, "sigpy SenseRecon(coord)", sp_it, 0.0,
                    nrmse=scaled_nrmse(sp_img, x), ratio=sp_it / per_it, unit="s/iteration",
                    notes=f"vs recon {scaled_nrmse(sp_img, img):.3f}"))  # fmt: skip
    if shutil.which("bart"):
        bt_it, bt_img = _per_iteration(lambda k: _bart_sense(y, maps, coord, k), its)
        rows.append(Row(SUITE, case, "bart pics -t", bt_it, 0.0,
                        nrmse=scaled_nrmse(bt_img, x), ratio=bt_it / per_it,
                        unit="s/iteration", notes="includes file I/O"))  # fmt: skip
    return rows


def run(quick: bool = True) -> list[Row]:
    """All rows of the suite (quick: reduced coils/spokes, noted in each row)."""
    if quick:
        notes = "quick: 8 coils, 100 spokes in 2D, small 3D (full: 32, 400)"
        cases = [
            _Case("2d 256^2 radial", (256, 256), radial(100, 512, n=256), 8),
            _Case("3d stack-of-stars 8x128^2", (8, 128, 128), stack_of_stars(40, 256, 8, n=128), 2),
            _Case("3d radial 48^3", (48, 48, 48), radial_3d(600, 96, n=48), 2),
        ]
        repeats = 3
    else:
        notes = ""
        cases = [
            _Case("2d 256^2 radial", (256, 256), radial(400, 512, n=256), 32),
            _Case(
                "3d stack-of-stars 32x256^2", (32, 256, 256), stack_of_stars(200, 512, 32, n=256), 4
            ),
            _Case("3d radial 128^3", (128, 128, 128), radial_3d(8000, 256, n=128), 4),
        ]
        repeats = 5
    rows = []
    for case in cases:
        rows.extend(_nufft_rows(case, (1e-3, 1e-5), repeats, notes))
    rows.extend(_sense_rows(quick))
    return rows


if __name__ == "__main__":
    import sys

    for row in run(quick="--full" not in sys.argv):
        print(row)
