"""Daubechies wavelets in xp: filters equal PyWavelets', transform orthonormal (PR <= 1e-5)."""

from __future__ import annotations

import numpy as np
import pytest
import pywt
from cart_sim import phantom, support

from recon.errors import ConfigError
from recon.iterative.regularizers import WaveletL1
from recon.iterative.wavelet import Wavelet, daubechies_filters
from recon.metrics import nrmse


@pytest.mark.parametrize("order", [1, 2, 3, 4, 6, 8, 10])
def test_filters_match_pywavelets(order):
    lo, hi = daubechies_filters(order)
    ref = pywt.Wavelet(f"db{order}")
    assert np.max(np.abs(lo - np.array(ref.rec_lo))) < 1e-10
    assert np.max(np.abs(hi - np.array(ref.rec_hi))) < 1e-10


@pytest.mark.parametrize(
    ("shape", "wave"), [((64, 48), "db4"), ((2, 80, 96), "db4"), ((16, 32, 24), "db2")]
)
def test_perfect_reconstruction_and_parseval(rng, shape, wave):
    x = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    w = Wavelet(shape, axes=None if len(shape) == 2 or shape[0] > 2 else (1, 2), wave=wave)
    c = w.forward(x)
    assert c.dtype == np.complex64
    assert nrmse(w.adjoint(c), x) < 1e-5
    assert abs(np.linalg.norm(c) / np.linalg.norm(x) - 1) < 1e-5
    # orthonormal the other way round too: W W^H = I
    assert nrmse(w.forward(w.adjoint(x)), x) < 1e-5


def test_haar_matches_pywavelets_periodization(rng):
    """One-level Haar detail energy per band equals PyWavelets' (layout-independent)."""
    x = rng.standard_normal((32, 32))
    w = Wavelet(x.shape, wave="db1", levels=1)
    c = w.forward(x)
    _, (ch, cv, cd) = pywt.dwt2(x, "db1", mode="periodization")
    ours = [c[16:, :16], c[:16, 16:], c[16:, 16:]]
    for mine, ref in zip(ours, (ch, cv, cd), strict=True):
        assert abs(np.linalg.norm(mine) - np.linalg.norm(ref)) < 1e-10


def test_levels_validated():
    with pytest.raises(ConfigError):
        Wavelet((30, 30), wave="db4", levels=3)


def test_cycle_spun_threshold_denoises():
    x = phantom((96, 96))
    gen = np.random.default_rng(2)
    noisy = x + 0.08 * (gen.standard_normal(x.shape) + 1j * gen.standard_normal(x.shape))
    reg = WaveletL1(x.shape, 2, lam=0.08)
    denoised = np.mean([reg.prox(noisy.astype(np.complex64), 1.0) for _ in range(8)], axis=0)
    obj = support(x)
    assert nrmse(denoised, x, obj) < 0.7 * nrmse(noisy, x, obj)
