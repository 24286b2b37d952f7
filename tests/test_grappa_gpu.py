"""GRAPPA calibration and image-domain application on CuPy equal the NumPy run."""

from __future__ import annotations

import pytest
from cart_sim import coil_maps, kspace, phantom

from recon.backend import Device, to_host
from recon.cartesian.grappa import caipi_mask, grappa
from recon.metrics import nrmse

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("coils", [False, True])
def test_grappa_gpu_matches_cpu(coils):
    x = phantom((64, 64))
    maps = coil_maps(8, (64, 64))
    k = kspace(x, maps, noise=0.005) * caipi_mask((64,), 3, acs=24)[:, None]
    gpu = Device("cuda")
    cpu_image = grappa(k, ry=3, csm=None if coils else maps, coils=coils)
    gpu_image = grappa(gpu.to(k), ry=3, csm=None if coils else gpu.to(maps), coils=coils)
    assert nrmse(to_host(gpu_image), cpu_image) < 1e-4
