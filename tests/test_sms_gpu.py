"""Split-slice GRAPPA on CuPy equals the NumPy run (SMS MB3 with in-plane R = 2)."""

from __future__ import annotations

import pytest

from recon.backend import Device, to_host
from recon.cartesian.slice_grappa import sms_grappa
from recon.metrics import nrmse
from recon.sim.sms import simulate_sms

pytestmark = pytest.mark.gpu


def test_sms_grappa_gpu_matches_cpu():
    d = simulate_sms((64, 64), ncoils=16, mb=3, ry=2, seed=1)
    gpu = Device("cuda")
    cpu_images = sms_grappa(d.kspace, d.sbr, shift=d.shift, ry=2)
    gpu_images = sms_grappa(gpu.to(d.kspace), gpu.to(d.sbr), shift=d.shift, ry=2)
    assert nrmse(to_host(gpu_images), cpu_images) < 1e-4
