"""CuPy runs of the iterative code give the NumPy results (skipped without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
from cart_sim import coil_maps, kspace, phantom

from recon.backend import Device, to_host
from recon.cartesian.sampling import variable_density_mask
from recon.iterative.pics import pics
from recon.iterative.wavelet import Wavelet
from recon.metrics import nrmse

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def data():
    x = phantom((64, 64))
    maps = coil_maps(8, (64, 64))
    mask = variable_density_mask((64, 64), 4, calib=12, seed=2)
    return maps, kspace(x, maps, noise=0.01) * mask


@pytest.mark.parametrize("spec", ["", "l1-wavelet:0.005", "tv:0.01"])
def test_pics_gpu_matches_cpu(data, spec):
    maps, k = data
    gpu = Device("cuda")
    cpu_image = pics(k, maps, regularizers=spec, iterations=20)
    gpu_image = pics(gpu.to(k), gpu.to(maps), regularizers=spec, iterations=20)
    assert nrmse(to_host(gpu_image), cpu_image) < 1e-4


def test_wavelet_gpu_matches_cpu(rng):
    x = (rng.standard_normal((2, 64, 48)) + 1j * rng.standard_normal((2, 64, 48))).astype(
        np.complex64
    )
    w = Wavelet(x.shape, axes=(1, 2))
    gpu = Device("cuda")
    assert nrmse(to_host(w.forward(gpu.to(x))), w.forward(x)) < 1e-6
