"""Forward models of the simulator: coil images -> Cartesian or non-Cartesian k-space.

Signal model (Sutton, Noll, Fessler, IEEE TMI 2003;22:178)::

    s_c(t) = sum_r S_c(r) m(r) exp(-i 2 pi f(r) t) exp(-i 2 pi k(t) . r / N) / sqrt(prod N)

with ``f`` the B0 off-resonance (Hz) and ``t`` the time of each sample after excitation.
Without a field map this is the centred orthonormal FFT of DESIGN.md (Cartesian) or the
NUFFT of DESIGN.md computed with FINUFFT type 2 at eps 1e-6 (non-Cartesian). With a field
map the exponential in ``t`` is factorised by least-squares time segmentation: ``L`` images
``m exp(-i 2 pi f tau_l)`` are transformed and combined per sample with coefficients
``b_l(t)`` fitted over the histogram of ``f`` (Sutton et al. 2003), with ``L`` large enough
that the model error is below about 1e-4.
"""

from __future__ import annotations

import math

import numpy as np

from recon.backend import fftc

NUFFT_EPS = 1e-6
_FREQUENCY_BINS = 256


def time_segments(
    times_s: np.ndarray, freqs_hz: np.ndarray, *, segments: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares time-segmentation of ``exp(-i 2 pi f t)``.

    Parameters
    ----------
    times_s : (ntimes,) float
        Sample times (s).
    freqs_hz : array of float
        Off-resonance values present in the object (Hz), used as a histogram.
    segments : int, optional
        Number of segments ``L`` (default: ``ceil(2 (f_max - f_min)(t_max - t_min)) + 4``,
        at most 64).

    Returns
    -------
    tau : (L,) float
        Segment times (s), uniform over ``[t_min, t_max]``.
    coefficients : (L, ntimes) complex128
        ``exp(-i 2 pi f t) ~ sum_l coefficients[l, t] exp(-i 2 pi f tau_l)``.
    """
    times = np.asarray(times_s, dtype=np.float64)
    freqs = np.asarray(freqs_hz, dtype=np.float64).ravel()
    span_t = float(times.max() - times.min())
    span_f = float(freqs.max() - freqs.min()) if freqs.size else 0.0
    if segments is None:
        segments = min(64, math.ceil(2 * span_f * span_t) + 4)
    if span_t == 0 or span_f == 0:
        tau = np.array([times.mean()])
        phase = np.exp(-2j * np.pi * (freqs.mean() if freqs.size else 0.0) * (times - tau[0]))
        return tau, phase[None, :]
    tau = np.linspace(times.min(), times.max(), segments)
    counts, edges = np.histogram(freqs, bins=_FREQUENCY_BINS)
    centres = 0.5 * (edges[1:] + edges[:-1])
    weight = np.sqrt(counts / counts.sum())[:, None]
    basis = weight * np.exp(-2j * np.pi * centres[:, None] * tau[None, :])
    target = weight * np.exp(-2j * np.pi * centres[:, None] * times[None, :])
    coefficients, *_ = np.linalg.lstsq(basis, target, rcond=1e-10)
    return tau, coefficients


def cartesian_kspace(
    coil_images: np.ndarray,
    ndim: int,
    *,
    field_hz: np.ndarray | None = None,
    readout_times_s: np.ndarray | None = None,
) -> np.ndarray:
    """Fully sampled Cartesian k-space of coil images.

    Parameters
    ----------
    coil_images : (ncoils, nz, ny, nx) complex
        ``S_c m`` on the encoded grid (x oversampled when the readout is).
    ndim : int
        2 (multi-slice: FFT over y, x per slice) or 3 (FFT over z, y, x).
    field_hz : (nz, ny, nx) float, optional
        Off-resonance map; needs ``readout_times_s``.
    readout_times_s : (nx,) float, optional
        Time after excitation of each readout sample (s).

    Returns
    -------
    (ncoils, nz, ny, nx) complex64
        Centred orthonormal k-space; the readout is the last axis.
    """
    axes = tuple(range(-ndim, 0))
    if field_hz is None:
        return fftc(coil_images.astype(np.complex64), axes=axes).astype(np.complex64)
    tau, coefficients = time_segments(readout_times_s, field_hz)
    out = np.zeros(coil_images.shape, dtype=np.complex64)
    for seg, t in enumerate(tau):
        phase = np.exp(-2j * np.pi * field_hz * t).astype(np.complex64)
        out += fftc(coil_images * phase, axes=axes) * coefficients[seg].astype(np.complex64)
    return out


def _nufft_type2(images: np.ndarray, coord: np.ndarray) -> np.ndarray:
    """``(ntrans, *shape)`` images -> ``(ntrans, npts)`` samples, DESIGN.md convention."""
    import finufft

    shape = images.shape[1:]
    points = [2 * np.pi * coord[:, d].astype(np.float64) / shape[d] for d in range(len(shape))]
    transform = {2: finufft.nufft2d2, 3: finufft.nufft3d2}[len(shape)]
    samples = transform(
        *points, np.ascontiguousarray(images, dtype=np.complex128), isign=-1, eps=NUFFT_EPS
    )
    return samples / math.sqrt(math.prod(shape))


def _stack_type2(images: np.ndarray, coord: np.ndarray) -> np.ndarray:
    """``(ncoils, nz, ny, nx)`` -> ``(ncoils, nz, npts)``: centred FFT along z, then the same
    2D NUFFT on every partition (equal to the 3D NUFFT at integer ``kz = p - nz // 2``)."""
    hybrid = fftc(images, axes=(1,))
    ncoils, nz = images.shape[:2]
    samples = _nufft_type2(hybrid.reshape(ncoils * nz, *images.shape[2:]), coord)
    return samples.reshape(ncoils, nz, len(coord))


def noncartesian_kspace(
    coil_images: np.ndarray,
    coord: np.ndarray,
    *,
    field_hz: np.ndarray | None = None,
    sample_times_s: np.ndarray | None = None,
    stack: bool = False,
) -> np.ndarray:
    """Non-Cartesian samples of coil images (FINUFFT type 2, eps 1e-6).

    Parameters
    ----------
    coil_images : (ncoils, ny, nx) or (ncoils, nz, ny, nx) complex
    coord : (npts, ndim) float
        Grid units, ``coord[:, -1]`` along x (DESIGN.md).
    field_hz : array of the image shape, optional
        Off-resonance map (Hz); needs ``sample_times_s``.
    sample_times_s : (npts,) float, optional
        Time after excitation of each sample (s).
    stack : bool
        Stack of stars: ``coil_images`` is 3D, ``coord`` 2D (``(npts, 2)``) and read on every
        Cartesian partition ``kz = p - nz // 2`` (FFT along z, then one batched 2D NUFFT).

    Returns
    -------
    (ncoils, npts) complex64, or (ncoils, nz, npts) with ``stack``
    """
    forward = _stack_type2 if stack else _nufft_type2
    if field_hz is None:
        return forward(coil_images, coord).astype(np.complex64)
    tau, coefficients = time_segments(sample_times_s, field_hz)
    out = 0
    for seg, t in enumerate(tau):
        phase = np.exp(-2j * np.pi * field_hz * t)
        out = out + forward(coil_images * phase, coord) * coefficients[seg]
    return out.astype(np.complex64)
