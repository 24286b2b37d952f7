"""Readout oversampling removal keeps the central field of view and the noise level."""

from __future__ import annotations

import numpy as np
import pytest

from recon.backend import fftc, ifftc
from recon.cartesian.oversampling import remove_readout_oversampling
from recon.errors import InputError
from recon.metrics import nrmse


def test_central_fov_kept(rng):
    image = np.zeros((4, 32, 128), np.complex64)
    image[:, :, 32:96] = rng.standard_normal((4, 32, 64)) + 1j * rng.standard_normal((4, 32, 64))
    k = fftc(image, axes=(1, 2))
    cropped = remove_readout_oversampling(k)
    assert cropped.shape == (4, 32, 64)
    assert nrmse(ifftc(cropped, axes=(1, 2)), image[:, :, 32:96]) < 1e-5


def test_noise_level_preserved(rng):
    noise = (rng.standard_normal((8, 64, 256)) + 1j * rng.standard_normal((8, 64, 256))) / np.sqrt(
        2
    )
    out = remove_readout_oversampling(noise.astype(np.complex64))
    assert abs(np.std(out) - 1) < 0.02


def test_odd_readout_rejected():
    with pytest.raises(InputError):
        remove_readout_oversampling(np.zeros((2, 4, 129), np.complex64))
    assert remove_readout_oversampling(np.ones((2, 3)), factor=1).shape == (2, 3)
