"""Memory: sorting needs about the size of the arrays it returns (<= 1.5x), measured with
tracemalloc on a file written block by block; the 8 GB slice-by-slice case is in
benchmarks/suite_io.py (``test_8gb_file_slice_by_slice`` below, marked slow)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import test_io_helpers as synth

from recon.io import iter_cartesian, read_dataset, sort_cartesian
from recon.io.rawwrite import RawWriter, new_headers


def _interleaved_file(path, *, slices=4, coils=8, ny=128, nx=256, reps=1):
    """Multi-slice 2D file, slices interleaved within each line (as scanners acquire them)."""
    xml = synth.header_xml(
        enc_matrix=(nx, ny, 1),
        rec_matrix=(nx, ny, 1),
        enc_fov=(256, 256, 5),
        rec_fov=(256, 256, 5),
        e1=(0, ny - 1, ny // 2),
        slices=slices,
        repetitions=reps,
        channels=coils,
        accel=(1, 1),
    )
    rng = np.random.default_rng(3)
    line = (rng.standard_normal((coils, nx)) + 1j * rng.standard_normal((coils, nx))).astype(
        np.complex64
    )
    with RawWriter(path, xml) as writer:
        for r in range(reps):
            head = new_headers(ny * slices, ncoils=coils, nsamples=nx)
            head["idx"]["kspace_encode_step_1"] = np.repeat(np.arange(ny), slices)
            head["idx"]["slice"] = np.tile(np.arange(slices), ny)
            head["idx"]["repetition"] = r
            head["position"][:, 2] = head["idx"]["slice"] * 5.0
            data = np.broadcast_to(line, (ny * slices, coils, nx))
            data = data * (1 + head["idx"]["slice"][:, None, None]).astype(np.float32)
            writer.append(head, data)
    return line


def test_sorting_needs_at_most_1p5x_its_output(tmp_path):
    line = _interleaved_file(tmp_path / "big.h5")
    raw = read_dataset(tmp_path / "big.h5")
    tracemalloc.start()
    try:
        data = sort_cartesian(raw, with_noise=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    returned = data.kspace.nbytes + data.mask.nbytes
    assert peak / returned < 1.5
    assert np.abs(data.kspace[2, 0, 0, 0, 0, :, 0, 17] - 3 * line).max() == 0.0


def test_interleaved_slices_read_one_at_a_time(tmp_path):
    line = _interleaved_file(tmp_path / "big.h5", reps=2)
    raw = read_dataset(tmp_path / "big.h5")
    whole = sort_cartesian(raw, with_noise=False).kspace
    tracemalloc.start()
    try:
        peaks = []
        s = -1
        for part in iter_cartesian(raw, by="slice"):  # (enumerate would keep the last part)
            s += 1
            peaks.append(tracemalloc.get_traced_memory()[1])  # before the checks' temporaries
            assert np.array_equal(part.kspace[0], whole[s])
            assert np.abs(part.kspace[0, 0, 0, 1, 0, :, 0, 5] - (s + 1) * line).max() == 0.0
            del part
            tracemalloc.reset_peak()
    finally:
        tracemalloc.stop()
    one_slice = whole[0].nbytes
    assert max(peaks) / one_slice < 1.5


@pytest.mark.slow
def test_8gb_file_slice_by_slice(tmp_path):
    from benchmarks.suite_io import big_file_peak

    peak_mib, size_gib, _, parts = big_file_peak(tmp_path, size_gib=8.0)
    assert size_gib >= 8.0 and parts > 1
    assert peak_mib < 2048
