"""Simulated files through recon's own reader (recon.io): counts, k-space, geometry, coords."""

from __future__ import annotations

import numpy as np

from recon.backend import ifftc
from recon.io.ismrmrd import read_dataset
from recon.io.sort import sort_cartesian, sort_noncartesian
from recon.metrics import nrmse
from recon.sim.scan import simulate
from recon.sim.space import rotation_matrix
from recon.sim.spec import SimSpec


def test_reader_sorts_oblique_3d_back_to_coil_images(tmp_path):
    spec = SimSpec(matrix=32, ncoils=4, slices=8, three_d=True, calib=0, noise_std=0.0,
                   noise_readouts=8, oblique_deg=(0.0, 20.0, 10.0),
                   centre_mm=(0.0, 4.0, 10.0))  # fmt: skip
    truth = simulate(tmp_path / "obl3d.h5", spec)
    data = sort_cartesian(read_dataset(tmp_path / "obl3d.h5"), remove_oversampling=True)
    kspace = data.kspace.reshape(4, 8, 32, 32)
    assert nrmse(ifftc(kspace, axes=(1, 2, 3)), truth.coil_maps * truth.image) < 1e-5
    assert data.noise.samples.shape == (4, 8 * 64)
    geometry = data.geometry[0]
    assert np.abs(np.asarray(geometry.position) - [0.0, 4.0, 10.0]).max() < 1e-4
    assert np.abs(geometry.slice_dir - rotation_matrix((0.0, 20.0, 10.0))[:, 2]).max() < 1e-6


def test_reader_sees_acceleration_and_calibration_region(tmp_path):
    spec = SimSpec(matrix=48, ncoils=4, accel=3, calib=12, partial_fourier=0.75,
                   noise_readouts=0)  # fmt: skip
    truth = simulate(tmp_path / "acc.h5", spec)
    data = sort_cartesian(read_dataset(tmp_path / "acc.h5"))
    assert data.acceleration == (3, 1)
    assert data.calib_region[1] == slice(18, 30)
    imaging = data.mask.reshape(-1, 48)[0]
    assert np.count_nonzero(imaging) == np.count_nonzero((np.arange(12, 48) - 24) % 3 == 0)
    assert np.array_equal(imaging | truth.mask[0, 0] & (np.arange(48) >= 18), truth.mask[0, 0])
    assert abs(data.partial_fourier()[1] - 34 / 48) < 1e-9  # lines 12..45 hold data


def test_reader_recovers_stack_of_stars_coordinates(tmp_path):
    spec = SimSpec(matrix=32, ncoils=4, slices=6, trajectory="stack-of-stars", spokes=12,
                   noise_readouts=4)  # fmt: skip
    truth = simulate(tmp_path / "sos.h5", spec)
    data = sort_noncartesian(read_dataset(tmp_path / "sos.h5"))
    assert data.image_shape == (6, 32, 32) and data.convention == "grid"
    coord = data.coord.reshape(-1, 3)
    assert np.abs(coord - truth.coord.reshape(-1, 3)).max() < 1e-6
    assert data.samples.reshape(4, -1).shape[1] == 6 * 12 * 64
