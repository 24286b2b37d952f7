"""Coil compression: lossless without reduction, energy as configured, GCC vs SVD."""

from __future__ import annotations

import numpy as np
import pytest
from cart_sim import coil_maps, kspace, phantom, support

from recon.backend import ifftc
from recon.coils.combine import combine_rss
from recon.coils.compress import (
    apply_compression,
    apply_gcc,
    gcc_matrices,
    retained_energy,
    svd_compression_matrix,
)
from recon.errors import ConfigError
from recon.metrics import nrmse

AXES = (1, 2, 3)


@pytest.fixture(scope="module")
def volume():
    """32 coils, 3-D (nz, ny, nx) = (24, 24, 48), readout x; 16 x 16 calibration in (z, y)."""
    shape = (24, 24, 48)
    image = phantom(shape)
    k = kspace(image, coil_maps(32, shape))
    return k, k[:, 4:20, 4:20, :], support(image)


def test_no_reduction_preserves_rss(volume):
    k, calib, _ = volume
    ref = combine_rss(ifftc(k, axes=AXES))
    a = svd_compression_matrix(calib)
    assert a.shape == (32, 32)
    assert nrmse(combine_rss(ifftc(apply_compression(k, a), axes=AXES)), ref) < 1e-4
    g = gcc_matrices(calib)
    assert nrmse(combine_rss(ifftc(apply_gcc(k, g), axes=AXES)), ref) < 1e-4


@pytest.mark.parametrize("energy", [0.9, 0.95, 0.99])
def test_energy_fraction_is_kept_with_the_fewest_coils(volume, energy):
    _, calib, _ = volume
    a = svd_compression_matrix(calib, energy=energy)
    kept = retained_energy(calib, a)
    assert kept >= energy
    fewer = svd_compression_matrix(calib, nvirtual=a.shape[0] - 1)
    assert retained_energy(calib, fewer) < energy


def test_non_cartesian_calibration_samples(rng):
    """SVD compression works on unordered samples (ncoils, nsamples) just the same."""
    mix = rng.standard_normal((16, 4)) + 1j * rng.standard_normal((16, 4))
    samples = mix @ (rng.standard_normal((4, 5000)) + 1j * rng.standard_normal((4, 5000)))
    a = svd_compression_matrix(samples.astype(np.complex64), energy=0.999)
    assert a.shape[0] == 4
    assert retained_energy(samples, a) > 0.99999


def test_gcc_beats_svd_at_equal_virtual_coils(volume):
    """NRMSE of the compressed RSS image vs the uncompressed one, inside the object."""
    k, calib, inside = volume
    ref = combine_rss(ifftc(k, axes=AXES))[inside]
    for nvirtual in (4, 8):
        svd = combine_rss(ifftc(apply_compression(k, svd_compression_matrix(calib, nvirtual)),
                                axes=AXES))  # fmt: skip
        gcc = combine_rss(ifftc(apply_gcc(k, gcc_matrices(calib, nvirtual)), axes=AXES))
        err_svd, err_gcc = nrmse(svd[inside], ref), nrmse(gcc[inside], ref)
        # measured SVD 0.173 vs GCC 0.082 (4 coils), 0.076 vs 0.016 (8 coils)
        assert err_gcc < 0.6 * err_svd  # measured ratio 0.48 (4 coils), 0.21 (8 coils)


def test_gcc_alignment_makes_matrices_vary_smoothly(volume):
    _, calib, _ = volume
    raw = gcc_matrices(calib, 6, align=False)
    aligned = gcc_matrices(calib, 6)
    step_raw = float(np.mean(np.linalg.norm(np.diff(raw, axis=0), axis=(1, 2))))
    step_aligned = float(np.mean(np.linalg.norm(np.diff(aligned, axis=0), axis=(1, 2))))
    assert step_aligned < 0.5 * step_raw
    # alignment is a rotation of the virtual coils: the subspace is unchanged
    proj_raw = np.conj(raw.transpose(0, 2, 1)) @ raw
    proj_aligned = np.conj(aligned.transpose(0, 2, 1)) @ aligned
    assert float(np.abs(proj_raw - proj_aligned).max()) < 1e-4


def test_bad_counts_are_config_errors(volume):
    _, calib, _ = volume
    with pytest.raises(ConfigError):
        svd_compression_matrix(calib, nvirtual=33)
    with pytest.raises(ConfigError):
        svd_compression_matrix(calib, energy=1.5)


def test_compress_file_svd_and_gcc_on_measured_data(shared_file, tmp_path):
    """Skyra, 14 channels: all readouts compressed; 14 -> 14 is a rotation (norms kept)."""
    import warnings

    from recon.coils.compress_file import compress_file
    from recon.io.ismrmrd import read_dataset

    path = shared_file("siemens_skyra_grappa_r3.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = read_dataset(path)
        rows = np.flatnonzero(raw.usable)
        before, _ = raw.read(rows[1:])  # imaging and calibration readouts (not the noise)
        _, kept_all = compress_file(path, tmp_path / "all.h5", nvirtual=14)
        after, _ = read_dataset(tmp_path / "all.h5").read(rows[1:])
        a, kept = compress_file(path, tmp_path / "e95.h5", energy=0.95)
        _, kept_gcc = compress_file(path, tmp_path / "gcc.h5", nvirtual=a.shape[0], method="gcc")
        small = read_dataset(tmp_path / "e95.h5")
    norms = np.linalg.norm(after, axis=1) / np.maximum(np.linalg.norm(before, axis=1), 1e-30)
    assert abs(kept_all - 1) < 1e-5 and np.abs(norms - 1).max() < 1e-4
    assert kept >= 0.95 and a.shape[0] < 14
    assert small.header.receiver_channels == a.shape[0]
    assert int(small.head.active_channels.max()) == a.shape[0]
    assert kept_gcc > kept  # per-position matrices keep more at the same count
