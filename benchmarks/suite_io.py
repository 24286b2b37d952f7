"""I/O benchmarks: bulk reading + sorting vs ismrmrd-python's per-readout loop, and the memory
of reading a file much larger than the arrays returned at a time.

Cases
-----
- ``sort``: a multi-slice Cartesian file sorted into k-space by :func:`recon.io.sort_cartesian`
  and by the peer, a loop of ``ismrmrd.Dataset.read_acquisition`` placing each readout (the
  usual way with ismrmrd-python). Same file, same output (nrmse between them reported).
- ``big`` (full mode only): a synthetic file of ``size_gib`` GiB read repetition by
  repetition and slice by slice in a fresh process; peak resident memory is reported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import Row, measure

# Peak resident memory from VmHWM of this process image (ru_maxrss would include the
# parent's memory at fork time on Linux).
_READ_SCRIPT = """
import json, sys, time
from recon.io import iter_cartesian, read_dataset
start = time.perf_counter()
raw = read_dataset(sys.argv[1])
count = 0
for part in iter_cartesian(raw, by=sys.argv[2], with_noise=False):
    count += part.kspace.shape[0]
    del part
with open("/proc/self/status") as status:
    hwm = [line for line in status if line.startswith("VmHWM")][0]
peak = int(hwm.split()[1]) / 1024
print(json.dumps({"peak_mib": peak, "parts": count, "seconds": time.perf_counter() - start}))
"""


def write_multislice(
    path: Path, *, slices: int, coils: int, ny: int, nx: int, repetitions: int = 1
) -> Path:
    """Interleaved multi-slice 2D file (2x readout oversampling), written block by block."""
    from recon.io.rawwrite import RawWriter, cartesian_header, new_headers

    xml = cartesian_header(
        (nx, ny, 1),
        (2 * 0.9 * ny, 0.9 * ny, 3.0),
        ncoils=coils,
        slices=slices,
        repetitions=repetitions,
        recon_matrix=(nx // 2, ny, 1),
        recon_fov_mm=(0.9 * ny, 0.9 * ny, 3.0),
    )
    rng = np.random.default_rng(7)
    lines = rng.standard_normal((64, coils, nx)) + 1j * rng.standard_normal((64, coils, nx))
    lines = lines.astype(np.complex64)
    per_block = max(1, (256 * 2**20) // (coils * nx * 8 * slices)) * slices
    with RawWriter(path, xml) as writer:
        for r in range(repetitions):
            for first in range(0, ny * slices, per_block):
                n = min(per_block, ny * slices - first)
                index = np.arange(first, first + n)
                head = new_headers(n, ncoils=coils, nsamples=nx)
                head["idx"]["kspace_encode_step_1"] = index // slices
                head["idx"]["slice"] = index % slices
                head["idx"]["repetition"] = r
                head["position"][:, 2] = (index % slices) * 3.0
                head["sample_time_us"] = 2.5
                writer.append(head, lines[index % 64])
    return path


def _ismrmrd_loop(path: Path) -> np.ndarray:
    """The peer: read every readout with ismrmrd-python and place it in k-space."""
    import ismrmrd

    dset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    header = ismrmrd.xsd.CreateFromDocument(dset.read_xml_header())
    enc = header.encoding[0]
    nx, ny = enc.encodedSpace.matrixSize.x, enc.encodedSpace.matrixSize.y
    nslices = enc.encodingLimits.slice.maximum + 1
    first = dset.read_acquisition(0)
    kspace = np.zeros((nslices, first.active_channels, 1, ny, nx), np.complex64)
    for i in range(dset.number_of_acquisitions()):
        acq = dset.read_acquisition(i)
        kspace[acq.idx.slice, :, 0, acq.idx.kspace_encode_step_1] = acq.data
    dset.close()
    return kspace


def _ours(path: Path) -> np.ndarray:
    from recon.io import read_dataset, sort_cartesian

    data = sort_cartesian(read_dataset(path), with_noise=False)
    return data.kspace.reshape(data.kspace.shape[0], *data.kspace.shape[-4:])


def big_file_peak(folder: Path, *, size_gib: float = 8.0, by: str = "slice") -> tuple:
    """Write a ``size_gib`` GiB file in ``folder``, read it part by part in a new process.

    Returns ``(peak resident MiB of the reader, file size GiB, seconds, parts)``.
    """
    coils, ny, nx, slices = 32, 256, 512, 32
    per_rep = coils * ny * nx * 8 * slices
    reps = int(np.ceil(size_gib * 2**30 / per_rep))
    path = write_multislice(
        Path(folder) / "big.h5", slices=slices, coils=coils, ny=ny, nx=nx, repetitions=reps
    )
    size = path.stat().st_size / 2**30
    result = subprocess.run(
        [sys.executable, "-c", _READ_SCRIPT, str(path), by],
        capture_output=True,
        text=True,
        check=True,
    )
    out = json.loads(result.stdout.strip().splitlines()[-1])
    path.unlink()
    return out["peak_mib"], size, out["seconds"], out["parts"]


def run(quick: bool = True) -> list[Row]:
    rows = []
    slices, coils, ny, nx = (4, 8, 128, 256) if quick else (16, 32, 256, 512)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_multislice(Path(tmp) / "ms.h5", slices=slices, coils=coils, ny=ny, nx=nx)
        case = f"sort {slices}sl {coils}ch {ny}x{nx}"
        ours = measure(lambda: _ours(path), repeats=3 if quick else 5)
        peer = measure(lambda: _ismrmrd_loop(path), repeats=1 if quick else 3, warmup=0)
        diff = float(np.linalg.norm(ours.result - peer.result) / np.linalg.norm(peer.result))
        readouts = slices * ny
        rows.append(
            Row(
                "io",
                case,
                "recon.io",
                ours.median_s,
                ours.peak_mib,
                nrmse=diff,
                ratio=1.0,
                throughput=readouts / ours.median_s,
                unit="readouts/s",
                notes=f"output {ours.result.nbytes / 2**20:.0f} MiB",
            )
        )
        rows.append(
            Row(
                "io",
                case,
                "ismrmrd-python loop",
                peer.median_s,
                peer.peak_mib,
                nrmse=diff,
                ratio=peer.median_s / ours.median_s,
                throughput=readouts / peer.median_s,
                unit="readouts/s",
            )
        )
        if not quick:
            start = time.perf_counter()
            peak, size, seconds, parts = big_file_peak(Path(tmp), size_gib=8.0)
            rows.append(
                Row(
                    "io",
                    f"{size:.1f} GiB file slice by slice",
                    "recon.io",
                    seconds,
                    peak,
                    throughput=size * 1024 / seconds,
                    unit="MiB/s",
                    notes=f"peak RSS {peak:.0f} MiB over {parts} parts; "
                    f"total with writing {time.perf_counter() - start:.0f} s",
                )
            )
    return rows


if __name__ == "__main__":
    for row in run(quick="--full" not in sys.argv):
        print(row)
