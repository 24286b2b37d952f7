"""`recon batch` on Dask distributed: same images as `recon run`, robust to a killed worker,
idempotent re-runs, and an external scheduler on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from recon.batch import COMPLETE_MARKER, BatchOptions, run_batch  # noqa: E402
from recon.pipeline import run_file  # noqa: E402
from recon.sim import SimSpec, simulate  # noqa: E402

OPTIONS = BatchOptions(formats=("nifti",))


@pytest.fixture(scope="module")
def raw_files(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("batch_raw")
    files = []
    for i in range(6):
        spec = SimSpec(matrix=48, slices=2, ncoils=4, accel=2, calib=16, seed=100 + i)
        path = folder / f"scan{i}.h5"
        simulate(path, spec)
        files.append(path)
    return files


@pytest.fixture(scope="module")
def cluster():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as local,
        distributed.Client(local) as client,
    ):
        yield client


def _nifti(folder: Path) -> np.ndarray:
    (path,) = folder.glob("*.nii.gz")
    return np.asarray(nib.load(path).dataobj)


def test_batch_matches_recon_run_and_reruns_do_no_work(raw_files, cluster, tmp_path):
    out = tmp_path / "out"
    results = run_batch(raw_files, out, OPTIONS, client=cluster)
    assert [r.status for r in results] == ["done"] * 6
    assert len({r.worker for r in results}) == 2  # both worker processes took tasks
    for source in raw_files:
        reference_dir = tmp_path / "single" / source.stem
        run_file(source, reference_dir, formats=["nifti"])
        batch_image = _nifti(out / source.stem)
        assert np.array_equal(batch_image, _nifti(reference_dir))
        assert json.loads((out / source.stem / COMPLETE_MARKER).read_text())["input"]
    assert not list(out.glob(".*partial*"))

    again = run_batch(raw_files, out, OPTIONS, client=cluster)
    assert [r.status for r in again] == ["skipped"] * 6


def test_batch_survives_a_killed_worker(raw_files, cluster, tmp_path):
    out = tmp_path / "out"
    pids = cluster.run(os.getpid)
    killed = []

    def kill_one(result, done, total):
        if not killed:
            victim = sorted(pids.values())[0]
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    results = run_batch(raw_files, out, OPTIONS, client=cluster, progress=kill_one)
    assert killed
    assert [r.status for r in results] == ["done"] * 6
    for source in raw_files:
        assert (out / source.stem / COMPLETE_MARKER).is_file()
        assert _nifti(out / source.stem).max() > 0
    cluster.wait_for_workers(2, timeout=60)  # the nanny restarted the killed worker


def test_batch_cli_with_external_scheduler(raw_files, tmp_path):
    dask = Path(sys.executable).parent / "dask"
    if not dask.exists():
        pytest.skip("dask command-line tools not installed")
    scheduler_file = tmp_path / "scheduler.json"
    common = ["--no-dashboard"]
    scheduler = subprocess.Popen(
        [str(dask), "scheduler", "--host", "127.0.0.1", "--port", "0",
         "--scheduler-file", str(scheduler_file), *common],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    worker = None
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        worker = subprocess.Popen(
            [str(dask), "worker", address, "--nthreads", "1", "--host", "127.0.0.1", *common],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        out = tmp_path / "out"
        inputs = [str(p) for p in raw_files[:2]]
        done = subprocess.run(
            [sys.executable, "-m", "recon", "batch", *inputs, "-o", str(out),
             "--scheduler", address, "--format", "nifti"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr + done.stdout
        for path in raw_files[:2]:
            assert (out / path.stem / COMPLETE_MARKER).is_file()
    finally:
        for process in (worker, scheduler):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)


def test_batch_rejects_missing_and_clashing_inputs(raw_files, tmp_path):
    from recon.errors import InputError

    with pytest.raises(InputError, match="not found"):
        run_batch([tmp_path / "nope.h5"], tmp_path / "o", OPTIONS)
    twin = tmp_path / "scan0.h5"
    twin.write_bytes(raw_files[0].read_bytes())
    with pytest.raises(InputError, match="same output folder"):
        run_batch([raw_files[0], twin], tmp_path / "o", OPTIONS)
