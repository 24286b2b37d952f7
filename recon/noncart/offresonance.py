"""Off-resonance-corrected non-Cartesian SENSE by time segmentation.

Signal model with a B0 field map ``f(r)`` (Hz) and sample times ``t_j`` (s)::

    y_cj = sum_r S_c(r) x(r) exp(-i 2 pi f(r) t_j) exp(-i 2 pi k_j . r / N) / sqrt(prod N)

The exponential in ``t`` is factorised with ``L`` time segments ``tau_l`` (Sutton, Noll,
Fessler, IEEE TMI 2003;22:178)::

    exp(-i 2 pi f t) ~ sum_l b_l(t) exp(-i 2 pi f tau_l)

so the encoding operator becomes ``E x = sum_l diag(b_l) A (S exp(-i 2 pi f tau_l) x)``: ``L``
NUFFTs ``A`` per coil instead of a non-Fourier sum. The temporal interpolators ``b_l(t)`` are
the least-squares fit over the frequencies present in the object, weighted by their histogram
(the histogram-based LS interpolator of Sutton et al. 2003, Sec. II-C): for each ``t``,
``b(t) = argmin sum_k h_k |exp(-i 2 pi f_k t) - sum_l b_l exp(-i 2 pi f_k tau_l)|^2`` with
``f_k`` the bin centres and ``h_k`` the bin counts. CG on the normal equations
``(E^H W E + lam I) x = E^H W y`` gives the corrected CG-SENSE image (Pruessmann et al.,
MRM 2001;46:638).

Normal operator by Toeplitz embedding (Fessler et al., IEEE TSP 2005;53:3393)::

    E^H W E x = sum_l conj(phi_l) S^H sum_m T_lm (S phi_m x),   phi_l = exp(-i 2 pi f tau_l)

with ``T_lm = A^H diag(conj(b_l) w b_m) A`` Toeplitz. ``T_ml = T_lm^H``, whose circulant
embedding has the conjugate eigenvalues, so only the ``L (L + 1) / 2`` kernels with
``l <= m`` are computed (once, by one batched adjoint NUFFT onto the 2N grid) and stored; each
application costs ``2 L`` FFTs on the 2N grid per coil, independent of the number of samples.

Shapes: images ``shape`` (``(ny, nx)`` or ``(nz, ny, nx)``), maps ``(ncoils, *shape)``, field
map ``shape`` in Hz, samples ``(ncoils, *pts)`` with ``coord`` ``(*pts, ndim)`` in grid units
and ``times_s`` ``pts`` in seconds. Arrays are NumPy or CuPy (``xp``); the interpolators are
fitted on the host (float64) and moved to the device.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from recon.backend import array_module, fft_module, to_host
from recon.errors import InputError
from recon.iterative.blas import single_threaded_blas
from recon.iterative.solvers import conjugate_gradient
from recon.noncart.nufft import NufftPlan

DEFAULT_BINS = 256


def default_segments(times_s: Any, field_hz: Any) -> int:
    """Segments for an interpolation error of about 1e-3: ``ceil(1.5 B T) + 3``.

    ``B`` is the frequency range (Hz) and ``T`` the time span (s): the phase range
    ``2 pi B T`` needs about ``1.5 B T`` segments (measured in tests/test_offresonance.py)
    plus a small constant for the ends.
    """
    t, f = to_host(times_s), to_host(field_hz)
    span = float(np.ptp(t)) * float(np.ptp(f))
    return max(1, math.ceil(1.5 * span) + 3)


def time_segment_interpolators(
    times_s: Any, field_hz: Any, segments: int, *, mask: Any = None, bins: int = DEFAULT_BINS
) -> tuple[np.ndarray, np.ndarray]:
    """Histogram-weighted least-squares temporal interpolators (Sutton et al. 2003).

    Parameters
    ----------
    times_s : array of float, any shape ``pts``
        Sample times (s).
    field_hz : array of float
        Off-resonance map (Hz).
    segments : int
        Number of segments ``L`` (``tau_l`` uniform over ``[t_min, t_max]``).
    mask : array of bool, optional
        Pixels of ``field_hz`` whose frequencies count (e.g. the object); all by default.
    bins : int
        Histogram bins of the frequencies.

    Returns
    -------
    tau : (L,) float64
        Segment times (s).
    coefficients : (L, *pts) complex128
        ``b_l(t)``: ``exp(-i 2 pi f t) ~ sum_l coefficients[l] exp(-i 2 pi f tau_l)``.
    """
    if segments < 1:
        raise InputError(f"off-resonance: segments must be >= 1, got {segments}")
    times = np.asarray(to_host(times_s), dtype=np.float64)
    freqs = np.asarray(to_host(field_hz), dtype=np.float64)
    if mask is not None:
        freqs = freqs[np.asarray(to_host(mask), dtype=bool)]
    freqs = freqs.ravel()
    if freqs.size == 0:
        raise InputError("off-resonance: the field-map mask selects no pixels")
    if times.size == 0:
        raise InputError("off-resonance: no sample times")
    unique, inverse = np.unique(times.ravel(), return_inverse=True)
    tau = np.linspace(unique[0], unique[-1], segments) if segments > 1 else unique.mean()[None]
    if np.ptp(freqs) == 0:
        counts, centres = np.ones(1), freqs[:1]
    else:
        counts, edges = np.histogram(freqs, bins=bins)
        centres = 0.5 * (edges[1:] + edges[:-1])
        keep = counts > 0
        counts, centres = counts[keep], centres[keep]
    weight = np.sqrt(counts / counts.sum())[:, None]
    basis = weight * np.exp(-2j * np.pi * centres[:, None] * tau[None, :])
    target = weight * np.exp(-2j * np.pi * centres[:, None] * unique[None, :])
    with single_threaded_blas(np):  # small SVD: BLAS threads only spin-wait
        coefficients = np.linalg.pinv(basis, rcond=1e-10) @ target
    return tau, coefficients[:, inverse].reshape(segments, *times.shape)


def interpolation_error(
    tau: np.ndarray, coefficients: np.ndarray, times_s: Any, field_hz: Any, *, mask: Any = None
) -> float:
    """RMS error of ``sum_l b_l(t) exp(-i 2 pi f tau_l)`` against ``exp(-i 2 pi f t)`` over all
    pixels (in ``mask``) and the distinct sample times; the exponential has modulus 1, so this
    is a relative error."""
    times = np.asarray(to_host(times_s), dtype=np.float64).ravel()
    freqs = np.asarray(to_host(field_hz), dtype=np.float64)
    if mask is not None:
        freqs = freqs[np.asarray(to_host(mask), dtype=bool)]
    freqs = freqs.ravel()
    unique, first = np.unique(times, return_index=True)
    b = coefficients.reshape(len(tau), -1)[:, first]
    approx = np.exp(-2j * np.pi * freqs[:, None] * tau[None, :]) @ b
    exact = np.exp(-2j * np.pi * freqs[:, None] * unique[None, :])
    return float(np.sqrt(np.mean(np.abs(approx - exact) ** 2)))


def toeplitz_kernels(coord: Any, shape: tuple[int, ...], weights: Any, *, eps: float = 1e-5,
                     **plan_options: Any) -> Any:  # fmt: skip
    """FFTs of the Toeplitz kernels of ``A^H diag(d) A`` for complex sample weights ``d``.

    ``(A^H diag(d) A x)[r] = sum_s T[r - s] x[s]`` with
    ``T[r] = sum_j d_j exp(i 2 pi k_j . r / N) / prod N`` for ``|r_a| < N_a``, embedded in the
    2N circulant (the unused entries ``r_a = -N_a`` are zeroed).

    Parameters
    ----------
    coord : array, shape ``(*pts, ndim)``
    shape : tuple of int
        Image shape N.
    weights : array, complex, shape ``(nkernels, *pts)``

    Returns
    -------
    array, complex64, shape ``(nkernels, *2N)``
        FFT on the 2N grid of the ``ifftshift``-ed kernels.
    """
    big = tuple(2 * n for n in shape)
    plan = NufftPlan(big, 2 * coord, eps=eps, **plan_options)
    xp = plan.xp
    psf = plan.adjoint(xp.ascontiguousarray(weights, dtype=xp.complex64))
    psf *= math.sqrt(math.prod(big)) / math.prod(shape)
    axes = tuple(range(-len(shape), 0))
    for axis in axes:
        index = [slice(None)] * psf.ndim
        index[axis] = 0
        psf[tuple(index)] = 0
    fft, kw = fft_module(xp)
    return fft.fftn(xp.fft.ifftshift(psf, axes=axes), axes=axes, **kw).astype(xp.complex64)


class OffResonanceSense:
    """Time-segmented SENSE encoding ``E x = sum_l b_l . A (S exp(-i 2 pi f tau_l) x)``.

    Parameters
    ----------
    coord : array, shape ``(*pts, ndim)``
        k-space coordinates in grid units.
    maps : array, complex, shape ``(ncoils, *shape)``
        Coil sensitivities.
    field_hz : array, shape ``shape``
        B0 off-resonance (Hz) on the image grid.
    times_s : array, shape ``pts``
        Time of each sample (s); any common origin (the image absorbs ``exp(-i 2 pi f t0)``
        of the origin ``t0``, e.g. the echo time).
    segments : int, optional
        Time segments ``L`` (default :func:`default_segments`).
    weights : array, shape ``pts``, optional
        W of the weighted least-squares data term (density compensation); ones by default.
    mask : array of bool, shape ``shape``, optional
        Pixels whose frequencies the interpolators are fitted to (default: where the maps
        are non-zero).
    eps : float
        NUFFT tolerance.
    toeplitz : bool, optional
        Normal operator through the Toeplitz kernels (True) or by NUFFTs (False); default:
        Toeplitz when its kernels fit in ``kernel_bytes``.
    batch_bytes : int
        Memory budget of the ``L`` 2N grids per coil handled at once by the Toeplitz normal.
    kernel_bytes : int
        Memory budget of the ``L (L + 1) / 2`` Toeplitz kernels (complex64 on the 2N grid)
        for the default choice of ``toeplitz``.
    **plan_options
        Backend and device options of :class:`~recon.noncart.nufft.NufftPlan`.
    """

    def __init__(self, coord: Any, maps: Any, field_hz: Any, times_s: Any, *,
                 segments: int | None = None, weights: Any = None, mask: Any = None,
                 eps: float = 1e-4, toeplitz: bool | None = None,
                 batch_bytes: int = 1 << 29, kernel_bytes: int = 1 << 30,
                 **plan_options: Any) -> None:  # fmt: skip
        xp = self.xp = array_module(maps)
        self.maps = xp.asarray(maps, dtype=xp.complex64)
        self.maps_conj = xp.conj(self.maps)
        self.shape = tuple(self.maps.shape[1:])
        if tuple(field_hz.shape) != self.shape:
            raise InputError(f"off-resonance: field map {field_hz.shape} is not {self.shape}")
        if tuple(times_s.shape) != tuple(coord.shape[:-1]):
            raise InputError(
                f"off-resonance: times {times_s.shape} do not match coord {coord.shape}"
            )
        if mask is None:
            mask = (xp.abs(self.maps) > 0).any(axis=0)
        if segments is None:
            segments = default_segments(times_s, to_host(field_hz)[to_host(mask)])
        tau, coefficients = time_segment_interpolators(times_s, field_hz, segments, mask=mask)
        self.tau = tau
        self.coefficients = xp.ascontiguousarray(coefficients, dtype=xp.complex64)
        self.coefficients_conj = xp.conj(self.coefficients)
        field = xp.asarray(field_hz, dtype=xp.float64)
        self.phases = xp.stack([xp.exp(-2j * xp.pi * field * t).astype(xp.complex64) for t in tau])
        self.plan = NufftPlan(self.shape, coord, eps=eps, **plan_options)
        self.weights = None if weights is None else xp.asarray(weights, dtype=xp.float32)
        self.kernels = None
        self.pairs = [(a, b) for a in range(segments) for b in range(a, segments)]
        grid_bytes = 8 * 2 ** len(self.shape) * math.prod(self.shape)
        if toeplitz is None:
            toeplitz = len(self.pairs) * grid_bytes <= kernel_bytes
        if toeplitz:
            w = 1.0 if self.weights is None else self.weights
            first, second = (xp.asarray([p[i] for p in self.pairs]) for i in (0, 1))
            products = self.coefficients_conj[first] * (w * self.coefficients[second])
            self.kernels = toeplitz_kernels(coord, self.shape, products, eps=min(eps, 1e-4),
                                            **plan_options)  # fmt: skip
            self.coil_batch = max(1, batch_bytes // (segments * grid_bytes))

    @property
    def segments(self) -> int:
        """Number of time segments ``L``."""
        return len(self.tau)

    def forward(self, x: Any) -> Any:
        """``E x``: image ``shape`` -> samples ``(ncoils, *pts)``, complex64."""
        out = None
        for phase, b in zip(self.phases, self.coefficients, strict=True):
            y = self.plan.forward(self.maps * (phase * x)) * b
            out = y if out is None else out + y
        return out

    def adjoint(self, samples: Any) -> Any:
        """``E^H y``: samples ``(ncoils, *pts)`` -> image ``shape``, complex64."""
        out = self.xp.zeros(self.shape, dtype=self.xp.complex64)
        for phase, b_conj in zip(self.phases, self.coefficients_conj, strict=True):
            coil_images = self.plan.adjoint(samples * b_conj)
            out += self.xp.conj(phase) * (self.maps_conj * coil_images).sum(axis=0)
        return out

    def rhs(self, samples: Any) -> Any:
        """``E^H W y`` for measured samples ``(ncoils, *pts)``."""
        return self.adjoint(samples if self.weights is None else samples * self.weights)

    def normal(self, x: Any) -> Any:
        """``E^H W E x`` (Toeplitz: ``2 L`` FFTs on the 2N grid per coil)."""
        if self.kernels is None:
            return self.rhs(self.forward(x))
        xp = self.xp
        fft, kw = fft_module(xp)
        nd = len(self.shape)
        spatial = tuple(range(-nd, 0))
        big = tuple(2 * n for n in self.shape)
        segmented = self.phases * x  # (L, *shape)
        out = xp.zeros(self.shape, dtype=xp.complex64)
        for start in range(0, self.maps.shape[0], self.coil_batch):
            maps = self.maps[start : start + self.coil_batch]
            grids = fft.fftn(maps[None] * segmented[:, None], s=big, axes=spatial, **kw)
            mixed = xp.zeros_like(grids)
            for kernel, (a, b) in zip(self.kernels, self.pairs, strict=True):
                mixed[a] += kernel * grids[b]
                if a != b:
                    mixed[b] += xp.conj(kernel) * grids[a]
            back = fft.ifftn(mixed, axes=spatial, overwrite_x=True, **kw)
            back = back[(Ellipsis, *(slice(0, n) for n in self.shape))]
            coils = (self.maps_conj[start : start + self.coil_batch] * back).sum(axis=1)
            out += (xp.conj(self.phases) * coils).sum(axis=0)
        return out


def cg_sense_offresonance(samples: Any, coord: Any, maps: Any, field_hz: Any, times_s: Any, *,
                          segments: int | None = None, weights: Any = None, mask: Any = None,
                          iterations: int = 20, tol: float = 1e-6, lam: float = 0.0,
                          eps: float = 1e-4, toeplitz: bool | None = None,
                          **plan_options: Any) -> Any:  # fmt: skip
    """Off-resonance-corrected CG-SENSE: ``(E^H W E + lam I) x = E^H W y`` by CG, with ``E``
    the time-segmented encoding of :class:`OffResonanceSense`.

    Parameters
    ----------
    samples : array, complex, shape ``(ncoils, *pts)``
    coord : array, shape ``(*pts, ndim)``
    maps : array, complex, shape ``(ncoils, *shape)``
    field_hz : array, shape ``shape``
        B0 off-resonance (Hz).
    times_s : array, shape ``pts``
        Sample times (s).
    segments, weights, mask, eps, toeplitz
        See :class:`OffResonanceSense`.
    iterations, tol, lam
        CG iterations, relative residual to stop at, Tikhonov weight.

    Returns
    -------
    array, complex64, shape ``shape``
    """
    op = OffResonanceSense(coord, maps, field_hz, times_s, segments=segments, weights=weights,
                           mask=mask, eps=eps, toeplitz=toeplitz, **plan_options)  # fmt: skip
    return conjugate_gradient(op.normal, op.rhs(samples), iterations=iterations, tol=tol,
                              lam=lam)  # fmt: skip
