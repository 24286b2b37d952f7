"""Partial Fourier: homodyne and POCS beat zero-filling on a smooth-phase phantom."""

from __future__ import annotations

import numpy as np
import pytest
from cart_sim import coil_maps, kspace, phantom, support

from recon.backend import ifftc
from recon.cartesian.partial_fourier import acquired_extent, partial_fourier
from recon.errors import ConfigError
from recon.metrics import nrmse

N = 96


@pytest.fixture(scope="module")
def data():
    x = phantom((N, N))
    maps = coil_maps(8, (N, N))
    return x, maps, kspace(x, maps, noise=0.002)


def combined(k, maps):
    return np.sum(np.conj(maps) * ifftc(k, axes=(1, 2)), axis=0)


@pytest.mark.parametrize(("first", "last"), [(30, N - 1), (0, N - 31)])
def test_homodyne_and_pocs_beat_zero_fill(data, first, last):
    """~2/3 partial Fourier on either side; measured 0.096 / 0.032 / 0.010 (magnitude)."""
    x, maps, k = data
    kp = k.copy()
    kp[:, :first] = 0
    kp[:, last + 1 :] = 0
    assert acquired_extent(kp, 1) == (first, last)
    obj = support(x)
    errors = {
        m: nrmse(np.abs(combined(partial_fourier(kp, m), maps)), np.abs(x), obj)
        for m in ("zero", "homodyne", "pocs")
    }
    assert errors["zero"] > 0.03
    assert errors["homodyne"] < 0.4 * errors["zero"]
    assert errors["pocs"] < 0.15 * errors["zero"]


def test_pocs_keeps_acquired_samples(data):
    _, _, k = data
    kp = k.copy()
    kp[:, :30] = 0
    out = partial_fourier(kp, "pocs", iterations=5)
    assert nrmse(out[:, 30:], kp[:, 30:]) < 1e-6
    assert np.linalg.norm(out[:, :30]) > 0.01 * np.linalg.norm(kp)


def test_symmetric_data_unchanged_and_bad_method(data):
    _, _, k = data
    assert nrmse(partial_fourier(k, "homodyne"), k) < 1e-6
    with pytest.raises(ConfigError):
        partial_fourier(k, "margosian")
