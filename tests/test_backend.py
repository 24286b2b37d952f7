"""Device selection and the centred orthonormal FFT helpers."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from recon import backend
from recon.backend import Device, fftc, ifftc, rss
from recon.errors import DeviceError


def test_auto_falls_back_to_cpu_without_gpu(monkeypatch):
    backend._cupy_or_none.cache_clear()
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    try:
        device = Device("auto")
        assert device.kind == "cpu" and device.xp is np
        with pytest.raises(DeviceError, match="no usable CUDA GPU"):
            Device("cuda")
    finally:
        backend._cupy_or_none.cache_clear()


def test_auto_falls_back_when_cupy_sees_no_device(monkeypatch):
    """CuPy installed but no driver/device: 'auto' is the CPU, silently."""

    class _Runtime:
        @staticmethod
        def getDeviceCount():
            raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    class _FakeCupy:
        class cuda:
            runtime = _Runtime

    backend._cupy_or_none.cache_clear()
    monkeypatch.setitem(sys.modules, "cupy", _FakeCupy)
    try:
        assert Device("auto").kind == "cpu"
        assert not backend.gpu_available()
        with pytest.raises(DeviceError):
            Device("cuda:0")
    finally:
        backend._cupy_or_none.cache_clear()


def test_this_machine_auto_is_usable():
    device = Device("auto")
    x = device.to(np.arange(4, dtype=np.complex64))
    assert np.allclose(backend.to_host(x), np.arange(4))


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", ""])
def test_bad_device_names(spec):
    with pytest.raises(DeviceError):
        Device(spec)


def test_fft_is_unitary_and_inverse(rng):
    x = (rng.standard_normal((3, 16, 12)) + 1j * rng.standard_normal((3, 16, 12))).astype(
        np.complex64
    )
    k = fftc(x, axes=(-2, -1))
    assert np.linalg.norm(k) == pytest.approx(np.linalg.norm(x), rel=1e-5)
    assert np.max(np.abs(ifftc(k, axes=(-2, -1)) - x)) < 1e-5
    assert k.dtype == np.complex64


@pytest.mark.parametrize("n", [8, 9])
def test_fft_is_centred(n):
    """A delta at the image centre has flat k-space; DC lands at index n//2."""
    x = np.zeros((n, n), complex)
    x[n // 2, n // 2] = 1
    assert np.allclose(fftc(x), np.full((n, n), 1 / n))
    ones = np.ones((n, n), complex)
    k = fftc(ones)
    assert k[n // 2, n // 2] == pytest.approx(n)
    assert np.sum(np.abs(k) > 1e-9) == 1


def test_fft_matches_numpy_definition(rng):
    x = rng.standard_normal((10, 7)) + 1j * rng.standard_normal((10, 7))
    ref = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(x), norm="ortho"))
    assert np.allclose(fftc(x), ref)
    # a shifted linear phase: a delta at offset d has k-space exp(-2i pi k d / n)
    y = np.zeros(10, complex)
    y[10 // 2 + 2] = 1
    kk = np.arange(10) - 5
    assert np.allclose(fftc(y), np.exp(-2j * np.pi * kk * 2 / 10) / np.sqrt(10))


def test_rss(rng):
    coils = rng.standard_normal((4, 5, 5)) + 1j * rng.standard_normal((4, 5, 5))
    assert np.allclose(rss(coils), np.sqrt(np.sum(np.abs(coils) ** 2, axis=0)))
