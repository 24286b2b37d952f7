"""Coil sensitivity maps: ESPIRiT, Walsh and Inati's iterative method.

All functions take and return arrays of one array module (NumPy or CuPy); shapes are
``(ncoils, *shape)`` with ``shape`` 2-D ``(ny, nx)`` or 3-D ``(nz, ny, nx)`` (a 2-D slice may
also be given as ``(1, ny, nx)``). Maps are normalised to unit norm over the coils where
they are defined and phase-referenced to the dominant coil direction of the data (a
"virtual body coil"), so they vary smoothly and do not depend on which coil is listed first.

Per-pixel eigenproblems (ESPIRiT, Walsh) are solved by *batched power iteration*, not by
``xp.linalg.eigh`` on stacked ``(npix, nc, nc)`` matrices: only the leading one or two
eigenvectors are needed, and NumPy's stacked ``eigh`` calls LAPACK once per pixel (about
1.5 ms for a 32 x 32 matrix on this CPU, i.e. 100 s for a 256 x 256 slice), while one
batched matrix-vector product costs about 1 us per pixel and 10-30 of them converge for
the well separated leading eigenvalue of these operators. On a GPU both are batched, and
the power iteration is still the cheaper of the two.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from recon.backend import array_module, fftc, ifftc, to_host
from recon.errors import InputError

# --------------------------------------------------------------------------------------
# shared helpers


def _normalise(v: Any, axis: int) -> Any:
    xp = array_module(v)
    norm = xp.sqrt(xp.sum(xp.abs(v) ** 2, axis=axis, keepdims=True))
    return v / xp.maximum(norm, xp.finfo(norm.dtype).tiny)


def dominant_coil_vector(data: Any) -> Any:
    """Leading left singular vector ``u`` (ncoils,) of ``data`` reshaped to (ncoils, -1).

    The phase reference of the maps: ``u^H s(r)`` is the signal of a virtual coil that
    sees the whole object, so its phase is smooth and rarely zero.
    """
    xp = array_module(data)
    flat = data.reshape(data.shape[0], -1)
    gram = flat @ flat.conj().T
    _, vecs = xp.linalg.eigh(gram.astype(xp.complex128))
    return vecs[:, -1].astype(data.dtype)


def phase_reference(maps: Any, u: Any, coil_axis: int = 0) -> Any:
    """Remove the phase of the virtual coil ``u^H s(r)`` from maps with coils at ``coil_axis``."""
    xp = array_module(maps)
    axis = coil_axis % maps.ndim
    u = u.reshape([-1 if a == axis else 1 for a in range(maps.ndim)])
    ref = xp.sum(xp.conj(u) * maps, axis=axis, keepdims=True)
    return maps * xp.conj(ref) / xp.maximum(xp.abs(ref), xp.finfo(maps.real.dtype).tiny)


def _start_vectors(g: Any, nmaps: int) -> Any:
    """Start of the power iteration: the columns of ``g`` with the largest diagonal.

    ``G e_c = sum_i lambda_i v_i conj(v_i[c])`` leans towards the leading eigenvector when
    ``|v_1[c]|`` is large, which the largest diagonal entry ``sum_i lambda_i |v_i[c]|^2``
    picks. A constant start (e.g. the dominant coil direction) can be nearly orthogonal
    to compact 32-channel maps at the edge of the object, where it converges slowly.
    """
    xp = array_module(g)
    diag = xp.real(xp.diagonal(g, axis1=1, axis2=2))  # (npix, nc)
    order = xp.argsort(-diag, axis=1)[:, :nmaps]  # (npix, nmaps)
    cols = xp.take_along_axis(g, order[:, None, :], axis=2)  # (npix, nc, nmaps)
    return cols


def _power_iteration(
    g: Any, v: Any, *, nmaps: int, max_iter: int, tol: float, watch: float
) -> tuple[Any, Any]:
    """Leading ``nmaps`` eigenpairs of stacked Hermitian PSD matrices ``g`` (npix, nc, nc).

    ``v`` (npix, nc, nmaps) is the start. Orthogonal iteration with Gram-Schmidt, then a
    closed-form Rayleigh-Ritz step for two maps. Stops when every pixel whose leading
    eigenvalue is above ``watch`` has a residual ``||G v - lambda v||`` below ``tol``
    (the angle error is about residual / eigenvalue gap).
    """
    xp = array_module(g)
    v = _normalise(v[..., :1], axis=1) if nmaps == 1 else _orthonormal_pair(v)
    for _ in range(max_iter):
        w = g @ v
        lam = xp.real(xp.sum(xp.conj(v[..., 0]) * w[..., 0], axis=1))  # Rayleigh quotient
        resid = xp.linalg.norm(w[..., 0] - lam[:, None] * v[..., 0], axis=1)
        resid = resid / xp.maximum(lam, xp.finfo(lam.dtype).tiny)
        v = _normalise(w, axis=1) if nmaps == 1 else _orthonormal_pair(w)
        active = lam > watch
        if not bool(xp.any(active)) or float(xp.max(resid[active])) < tol:
            break
    gv = g @ v
    if nmaps == 1:
        lam = xp.real(xp.sum(xp.conj(v) * gv, axis=1))
        return v, lam
    # Rayleigh-Ritz in the 2-D subspace: H = V^H G V, analytic 2 x 2 eigen-decomposition
    h = xp.conj(v).transpose(0, 2, 1) @ gv
    a, d, b = xp.real(h[:, 0, 0]), xp.real(h[:, 1, 1]), h[:, 0, 1]
    mid, half = (a + d) / 2, xp.sqrt(((a - d) / 2) ** 2 + xp.abs(b) ** 2)
    lam = xp.stack([mid + half, mid - half], axis=-1)
    # eigenvector of H for lambda: (b, lambda - a), or (lambda - d, conj b) when b ~ 0
    x0 = xp.stack([b, lam[:, 0] - a], axis=-1)
    alt = xp.stack([lam[:, 0] - d, xp.conj(b)], axis=-1)
    x0 = xp.where((xp.abs(b) > 1e-12 * xp.maximum(half, 1e-30))[:, None], x0, alt)
    x0 = x0 / xp.maximum(xp.linalg.norm(x0, axis=-1, keepdims=True), 1e-30)
    x1 = xp.stack([-xp.conj(x0[:, 1]), xp.conj(x0[:, 0])], axis=-1)
    coeffs = xp.stack([x0, x1], axis=-1).astype(v.dtype)  # (npix, 2, 2)
    return v @ coeffs, lam


def _orthonormal_pair(w: Any) -> Any:
    """Gram-Schmidt on the two columns of ``w`` (npix, nc, 2)."""
    xp = array_module(w)
    w0 = _normalise(w[..., :1], axis=1)
    w1 = w[..., 1:] - w0 * xp.sum(xp.conj(w0) * w[..., 1:], axis=1, keepdims=True)
    return xp.concatenate([w0, _normalise(w1, axis=1)], axis=-1)


# --------------------------------------------------------------------------------------
# ESPIRiT


def _crop_centre(x: Any, shape: tuple[int, ...]) -> Any:
    index = tuple(slice(max(n // 2 - c // 2, 0), max(n // 2 - c // 2, 0) + c) for n, c in
                  zip(x.shape[-len(shape):], shape, strict=True))  # fmt: skip
    return x[(..., *index)]


def fully_sampled_centre(kspace: Any, max_width: int) -> tuple[int, ...]:
    """Size per axis of the fully sampled central region of ``kspace`` (ncoils, *shape).

    Along each axis, the run of sampled (non-zero) positions around the centre ``n // 2``,
    limited to ``max_width``, kept symmetric about the centre; an undersampled data set whose
    reference region is narrower than the requested calibration width then calibrates on
    its reference lines only, never on zero-filled lines.
    """
    xp = array_module(kspace)
    sampled = xp.abs(kspace).max(axis=0) > 0
    sizes = []
    for axis, n in enumerate(sampled.shape):
        other = tuple(a for a in range(sampled.ndim) if a != axis)
        line = to_host(sampled.any(axis=other) if other else sampled)
        centre, half = n // 2, 0
        while half < n and line[max(centre - half - 1, 0)] and line[min(centre + half, n - 1)]:
            half += 1
            if 2 * half >= min(max_width, n):
                break
        sizes.append(max(1, min(2 * half, max_width, n)))
    return tuple(sizes)


def calibration_matrix(calib: Any, kernel: tuple[int, ...]) -> Any:
    """Block-Hankel calibration matrix of ``calib`` (ncoils, *cshape).

    Returns ``A`` of shape ``(npositions, ncoils * prod(kernel))``: one row per kernel
    position inside the calibration region, columns ordered (coil, kernel offsets).
    """
    xp = array_module(calib)
    nc, cshape = calib.shape[0], calib.shape[1:]
    npos = [c - k + 1 for c, k in zip(cshape, kernel, strict=True)]
    if min(npos) < 1:
        raise InputError(f"ESPIRiT: calibration region {cshape} is smaller than kernel {kernel}")
    ksize = int(np.prod(kernel))
    a = xp.empty((int(np.prod(npos)), nc, ksize), dtype=calib.dtype)  # C order, no copies
    for j, offset in enumerate(np.ndindex(*kernel)):
        index = tuple(slice(o, o + p) for o, p in zip(offset, npos, strict=True))
        a[:, :, j] = calib[(slice(None), *index)].reshape(nc, -1).T
    return a.reshape(-1, nc * ksize)


#: Calibration matrices with both sides above this use the randomized row-space solver.
EXACT_MAX = 1024


def _row_space(a: Any, thresh: float, *, exact_max: int = EXACT_MAX) -> Any:
    """Right singular vectors of ``a`` with sigma > thresh * sigma_max.

    Small problems: eigen-decomposition of the smaller Gram matrix (``A A^H`` or
    ``A^H A``). When both sides exceed ``exact_max`` (3-D calibration, e.g. 2197 x 2048 for
    a 16^3 region and 4^3 kernel, 6859 x 6912 at BART's 24^3 and 6^3), a full eigen-
    decomposition costs O(n^3) (about a minute) although only a small leading part is kept:
    :func:`_row_space_randomized` finds it instead.
    """
    xp = array_module(a)
    if min(a.shape) > exact_max:
        return _row_space_randomized(a, thresh)
    a64 = a.astype(xp.complex128)
    if a.shape[0] < a.shape[1]:
        lam, u = xp.linalg.eigh(a64 @ a64.conj().T)
        sigma = xp.sqrt(xp.clip(lam, 0, None))
        keep = sigma > thresh * sigma.max()
        v = (a64.conj().T @ u[:, keep]) / sigma[keep]
    else:
        lam, v = xp.linalg.eigh(a64.conj().T @ a64)
        keep = xp.sqrt(xp.clip(lam, 0, None)) > thresh * math.sqrt(max(float(lam.max()), 0.0))
        v = v[:, keep]
    return v


def _row_space_randomized(
    a: Any, thresh: float, *, block: int = 256, power_iters: int = 2, seed: int = 0
) -> Any:
    """Leading right singular vectors by randomized subspace iteration (Halko, Martinsson,
    Tropp, SIAM Rev. 2011;53:217, algorithm 4.4), with an adaptive block size.

    The block starts at ``block`` columns and doubles until at most 3/4 of it passes the
    threshold, so the retained subspace is resolved with margin. Each step costs two
    products with ``A`` (``npos x ncols x block``) instead of the ``O(ncols^3)`` of a full
    decomposition. Deterministic (seeded start).
    """
    xp = array_module(a)
    rng = np.random.default_rng(seed)
    a = a.astype(xp.complex64, copy=False)
    full = min(a.shape)
    b = min(block, full)
    while True:
        omega = rng.standard_normal((a.shape[1], b)) + 1j * rng.standard_normal((a.shape[1], b))
        q, _ = xp.linalg.qr(a @ xp.asarray(omega, dtype=xp.complex64))
        for _ in range(power_iters):
            z, _ = xp.linalg.qr((q.conj().T @ a).conj().T)  # A^H Q without a copy of A^H
            q, _ = xp.linalg.qr(a @ z)
        _, sigma, vh = xp.linalg.svd(q.conj().T @ a, full_matrices=False)
        keep = sigma > thresh * sigma[0]
        if int(xp.count_nonzero(keep)) <= (3 * b) // 4 or b >= full:
            return vh[keep].conj().T.astype(xp.complex128)
        b = min(2 * b, full)


def espirit_lags(calib: Any, kernel: tuple[int, ...], thresh: float) -> Any:
    """Fourier coefficients of ESPIRiT's per-pixel operator.

    With ``V`` the retained right singular vectors of the calibration matrix, the
    operator at image position ``r`` is (Uecker et al., MRM 2014;71:990, eq. 13 with the
    image-domain kernels)::

        G(r) = (1/K) sum_j w_j(r) w_j(r)^H,   w_j(r)[c] = sum_a conj(V[(c, a), j]) e^{+2 pi i a.r/N}

    a trigonometric polynomial of degree ``k - 1`` per axis: ``G(r) = sum_d P(d) e^{2 pi i d.r/N}``
    over lags ``d`` in ``[-(k-1), k-1]``. ``P`` is computed exactly on a ``2k - 1`` grid, so G
    can be evaluated at any resolution without forming image-size kernel images (BART
    evaluates its operator on a small grid too; SigPy forms every kernel image at full size).

    Returns
    -------
    array, complex64, shape ``(*(2k-1), ncoils, ncoils)``
    """
    xp = array_module(calib)
    nc = calib.shape[0]
    v = _row_space(calibration_matrix(calib, kernel), thresh)  # (nc*K, r)
    ksize = int(np.prod(kernel))
    grid = tuple(2 * k - 1 for k in kernel)
    kern = xp.conj(v.T).reshape((v.shape[1], nc, *kernel))
    axes = tuple(range(2, 2 + len(kernel)))
    npts = int(np.prod(grid))
    g_small = xp.zeros((npts, nc, nc), dtype=xp.complex128)
    for start in range(0, v.shape[1], 64):  # kernels in chunks: bounded memory in 3-D
        part = kern[start : start + 64]
        pad = xp.zeros((len(part), nc, *grid), dtype=xp.complex128)
        pad[(slice(None), slice(None), *[slice(0, k) for k in kernel])] = part
        w = xp.fft.ifftn(pad, axes=axes) * float(npts)  # e^{+i...} sums
        w = xp.moveaxis(w.reshape(len(part), nc, npts), -1, 0)  # (npts, r, nc)
        g_small += xp.einsum("prc,prd->pcd", w, xp.conj(w))
    g_small = (g_small / ksize).reshape((*grid, nc, nc))
    lags = xp.fft.fftn(g_small, axes=tuple(range(len(grid)))) / float(np.prod(grid))
    # reorder lag index d mod g into d = -(k-1) .. k-1
    lags = xp.fft.fftshift(lags, axes=tuple(range(len(grid))))
    return lags.astype(xp.complex64)


def _dft_matrix(xp: Any, n: int, k: int) -> Any:
    """(n, 2k-1) matrix exp(+2 pi i d (i - n//2) / n), d = -(k-1)..k-1 (centred image)."""
    r = xp.arange(n, dtype=xp.float64) - n // 2
    d = xp.arange(-(k - 1), k, dtype=xp.float64)
    return xp.exp(2j * xp.pi * xp.outer(r, d) / n).astype(xp.complex64)


def _operator_blocks(
    lags: Any, shape: tuple[int, ...], kernel: tuple[int, ...], block_pixels: int
) -> Iterator[tuple[tuple[slice, ...], Any]]:
    """Evaluate G on blocks of the image grid: yields (index, (npix, nc, nc) matrices).

    Handled as 3-D (a 2-D problem has a first axis of length 1). For each position of the
    first axis the lags are contracted along it, then expanded along the last axis to full
    length (one batched product), then rows of the middle axis are produced by one matrix
    product each; a block holds whole rows, about ``block_pixels`` pixels.
    """
    xp = array_module(lags)
    nc = lags.shape[-1]
    ndim = len(shape)
    shape3 = (1,) * (3 - ndim) + tuple(shape)
    kernel3 = (1,) * (3 - ndim) + tuple(kernel)
    l0, l1, l2 = (2 * k - 1 for k in kernel3)
    e0, e1, e2 = (_dft_matrix(xp, n, k) for n, k in zip(shape3, kernel3, strict=True))
    flat = lags.reshape(l0, l1 * l2 * nc * nc)
    rows = max(1, block_pixels // shape3[2])
    for i0 in range(shape3[0]):
        part = (e0[i0] @ flat).reshape(l1, l2, nc * nc)
        expanded = (e2[None] @ part).reshape(l1, shape3[2] * nc * nc)  # (L1, N2 * nc^2)
        for r0 in range(0, shape3[1], rows):
            r1 = min(r0 + rows, shape3[1])
            g = (e1[r0:r1] @ expanded).reshape(-1, nc, nc)
            index = (slice(i0, i0 + 1), slice(r0, r1), slice(None))[3 - ndim :]
            yield index, g


def espirit_maps(
    kspace_calib: Any,
    shape: tuple[int, ...],
    *,
    kernel_width: int = 6,
    calib_width: int = 24,
    thresh: float = 0.02,
    crop: float = 0.8,
    nmaps: int = 1,
    max_iter: int = 30,
    tol: float = 1e-4,
    block_pixels: int = 4096,
    return_eigenvalues: bool = False,
) -> Any:
    """ESPIRiT sensitivity maps (Uecker et al., MRM 2014;71:990).

    Parameters
    ----------
    kspace_calib : array, complex, shape ``(ncoils, *cshape)``
        Fully sampled centre of k-space (or all of k-space; the central ``calib_width``
        per axis is used, shrunk to the fully sampled lines, see
        :func:`fully_sampled_centre`), DC at index ``n // 2`` of each axis.
    shape : tuple of int
        Image shape of the maps, same number of axes as ``cshape``. Axes of ``cshape`` of
        length 1 (a 2-D slice given as ``(1, ny, nx)``) get kernel width 1.
    kernel_width : int
        Kernel size per axis (BART 6).
    calib_width : int
        Calibration region per axis (BART 24).
    thresh : float
        Keep singular vectors of the calibration matrix with ``sigma > thresh * sigma_max``
        (SigPy's convention and default, 0.02; BART's ``-t 0.001`` keeps
        ``val_i / val_0 > sqrt(0.001) = 0.032``, the same order).
    crop : float
        Zero the maps where their eigenvalue is below this (BART 0.8, SigPy 0.95).
    nmaps : int
        1 or 2 sets of maps.
    max_iter, tol : power-iteration limits (module docstring).
    block_pixels : int
        Pixels per block of per-pixel operators (memory: ``block_pixels * nc^2 * 8`` bytes).
    return_eigenvalues : bool
        Also return the eigenvalue maps.

    Returns
    -------
    maps : complex64, ``(ncoils, *shape)`` for one map, ``(nmaps, ncoils, *shape)`` for two
    eigenvalues : float32, ``shape`` or ``(nmaps, *shape)`` (only if asked)
    """
    xp = array_module(kspace_calib)
    if nmaps not in (1, 2):
        raise InputError(f"ESPIRiT: nmaps must be 1 or 2, got {nmaps}")
    shape = tuple(int(n) for n in shape)
    if kspace_calib.ndim != len(shape) + 1:
        raise InputError(
            f"ESPIRiT: calibration data {kspace_calib.shape} do not match image shape {shape}"
        )
    nc = kspace_calib.shape[0]
    data = xp.asarray(kspace_calib, dtype=xp.complex64)
    cshape = fully_sampled_centre(_crop_centre(data, (calib_width,) * (data.ndim - 1)), calib_width)
    calib = _crop_centre(data, cshape)
    kernel = tuple(1 if c == 1 else min(kernel_width, c) for c in cshape)
    for n, c in zip(shape, cshape, strict=True):
        if c == 1 and n != 1:
            raise InputError(
                f"ESPIRiT: a calibration axis of length 1 needs image length 1 ({shape})"
            )
    lags = espirit_lags(calib, kernel, thresh)
    u = dominant_coil_vector(calib)
    maps = xp.zeros((nmaps, nc, *shape), dtype=xp.complex64)
    eig = xp.zeros((nmaps, *shape), dtype=xp.float32)
    for index, g in _operator_blocks(lags, shape, kernel, block_pixels):
        vec, lam = _power_iteration(
            g, _start_vectors(g, nmaps), nmaps=nmaps, max_iter=max_iter, tol=tol, watch=crop
        )
        block_shape = tuple(len(range(*s.indices(n))) for s, n in zip(index, shape, strict=True))
        vec = xp.moveaxis(vec, 0, -1).reshape((nc, nmaps, *block_shape))
        maps[(slice(None), slice(None), *index)] = xp.moveaxis(vec, 1, 0)
        eig[(slice(None), *index)] = xp.moveaxis(lam.reshape(-1, nmaps), -1, 0).reshape(
            (nmaps, *block_shape)
        )
    maps = phase_reference(maps, u, coil_axis=1)
    maps *= (eig > crop)[:, None]
    if nmaps == 1:
        maps, eig = maps[0], eig[0]
    return (maps, eig) if return_eigenvalues else maps


# --------------------------------------------------------------------------------------
# Walsh and Inati (from coil images)


def box_smooth(x: Any, size: int, axes: tuple[int, ...]) -> Any:
    """Moving average over a ``size``-wide window along ``axes`` (shrunk at the edges)."""
    xp = array_module(x)
    half = size // 2
    for axis in axes:
        n = x.shape[axis]
        c = xp.cumsum(x, axis=axis)
        zero = xp.zeros_like(xp.take(c, [0], axis=axis))
        c = xp.concatenate([zero, c], axis=axis)
        hi = np.minimum(np.arange(n) + half + 1, n)
        lo = np.maximum(np.arange(n) - half, 0)
        count = xp.asarray((hi - lo).astype(np.float32)).reshape(
            [n if a == axis % x.ndim else 1 for a in range(x.ndim)]
        )
        x = (xp.take(c, xp.asarray(hi), axis=axis) - xp.take(c, xp.asarray(lo), axis=axis)) / count
    return x


def walsh_maps(
    images: Any,
    *,
    window: int = 7,
    max_iter: int = 30,
    tol: float = 1e-4,
    block_pixels: int = 4096,
) -> Any:
    """Walsh adaptive-combine maps (Walsh, Gmitro, Marcellin, MRM 2000;43:682).

    The map at each pixel is the dominant eigenvector of the coil covariance of the
    images in a ``window``-wide neighbourhood (box), computed block by block (blocks of
    the first spatial axis with a halo of ``window // 2``) so the ``nc x nc`` covariances
    of all pixels never exist at once.

    Parameters
    ----------
    images : array, complex, ``(ncoils, *shape)``
        Coil images (e.g. low-resolution calibration images), prewhitened if possible.

    Returns
    -------
    complex64 ``(ncoils, *shape)`` unit-norm maps, phase-referenced to the dominant coil.
    """
    xp = array_module(images)
    nc, shape = images.shape[0], images.shape[1:]
    x = xp.moveaxis(xp.asarray(images, dtype=xp.complex64), 0, -1)  # (*shape, nc)
    u = dominant_coil_vector(xp.asarray(images, dtype=xp.complex64))
    half = window // 2
    step = max(1, block_pixels // max(1, int(np.prod(shape[1:]))))
    maps = xp.zeros((*shape, nc), dtype=xp.complex64)
    axes = tuple(range(len(shape)))
    for s0 in range(0, shape[0], step):
        lo, hi = max(s0 - half, 0), min(s0 + step + half, shape[0])
        part = x[lo:hi]
        cov = part[..., :, None] * xp.conj(part[..., None, :])
        cov = box_smooth(cov, window, axes)[s0 - lo : s0 - lo + min(step, shape[0] - s0)]
        g = cov.reshape(-1, nc, nc)
        vec, _ = _power_iteration(
            g, _start_vectors(g, 1), nmaps=1, max_iter=max_iter, tol=tol, watch=-1.0
        )
        maps[s0 : s0 + cov.shape[0]] = vec.reshape((*cov.shape[:-2], nc))
    return phase_reference(xp.moveaxis(maps, -1, 0), u)


def inati_maps(
    images: Any, *, window: int = 7, niter: int = 5, return_combined: bool = False
) -> Any:
    """Inati's fast iterative maps (Inati, Hansen, Kellman, ISMRM 2014, p. 4407).

    A matrix-free power iteration on Walsh's smoothed covariance: with the current maps
    ``s`` the combined image is ``rho = s^H x``, and ``s <- smooth(x conj(rho))`` normalised
    equals ``R s`` when ``s`` is constant over the window. Memory is ``ncoils x npix``.

    Parameters
    ----------
    images : array, complex, ``(ncoils, *shape)``
    window : int
        Box size of the smoothing, pixels.
    niter : int
        Iterations (5 is plenty from the dominant-coil start).
    return_combined : bool
        Also return the combined image ``s^H x`` (``shape``).

    Returns
    -------
    complex64 ``(ncoils, *shape)`` maps (and the combined image if asked).
    """
    xp = array_module(images)
    x = xp.asarray(images, dtype=xp.complex64)
    u = dominant_coil_vector(x)
    axes = tuple(range(1, x.ndim))
    s = xp.broadcast_to(u.reshape((-1,) + (1,) * (x.ndim - 1)), x.shape)
    for _ in range(niter):
        rho = xp.sum(xp.conj(s) * x, axis=0, keepdims=True)
        s = _normalise(box_smooth(x * xp.conj(rho), window, axes), axis=0)
    s = phase_reference(s, u)
    if return_combined:
        return s, xp.sum(xp.conj(s) * x, axis=0)
    return s


# --------------------------------------------------------------------------------------
# calibration data


def calibration_images(kspace_calib: Any, shape: tuple[int, ...], *, window: bool = True) -> Any:
    """Low-resolution coil images from the calibration region, zero-padded to ``shape``.

    A Hann window (``window=True``) tapers the calibration region to suppress ringing;
    these images feed :func:`walsh_maps` and :func:`inati_maps`.
    """
    xp = array_module(kspace_calib)
    calib = xp.asarray(kspace_calib, dtype=xp.complex64)
    if window:
        for axis, n in enumerate(calib.shape[1:], start=1):
            if n > 1:
                w = xp.asarray(np.hanning(n + 2)[1:-1].astype(np.float32))
                calib = calib * w.reshape([n if a == axis else 1 for a in range(calib.ndim)])
    out = xp.zeros((calib.shape[0], *shape), dtype=xp.complex64)
    index = tuple(
        slice(n // 2 - c // 2, n // 2 - c // 2 + c)
        for n, c in zip(shape, calib.shape[1:], strict=True)
    )
    out[(slice(None), *index)] = calib
    return ifftc(out, axes=tuple(range(1, out.ndim)))


def noncartesian_calibration(
    samples: Any,
    coord: Any,
    calib_shape: tuple[int, ...],
    *,
    dcf: Any = None,
    eps: float = 1e-4,
) -> Any:
    """Cartesian calibration k-space gridded from the centre of non-Cartesian data.

    The samples with ``|coord| < calib/2`` on every axis are density-compensated, put onto
    a ``calib_shape`` image by the adjoint NUFFT and transformed back to k-space, giving a
    low-resolution Cartesian calibration region for :func:`espirit_maps` (or images for
    :func:`walsh_maps`). ``coord`` is in grid units of the *full* image, so the central
    region keeps its k-space spacing.

    Parameters
    ----------
    samples : (ncoils, *pts) complex
    coord : (*pts, ndim) float, grid units in [-N/2, N/2)
    calib_shape : tuple of int
        Calibration grid, e.g. ``(24, 24)``.
    dcf : (*pts) float, optional
        Density compensation; default: Pipe-Menon weights of the central samples.

    Returns
    -------
    complex64 ``(ncoils, *calib_shape)`` k-space with DC at ``n // 2``.
    """
    from recon.noncart.dcf import pipe_menon
    from recon.noncart.nufft import nufft_adjoint

    xp = array_module(samples)
    ndim = coord.shape[-1]
    if len(calib_shape) != ndim:
        raise InputError(f"calibration shape {calib_shape} does not match {ndim}-D coordinates")
    flat_coord = coord.reshape(-1, ndim)
    flat = samples.reshape(samples.shape[0], -1)
    half = xp.asarray(np.asarray(calib_shape, dtype=np.float32) / 2)
    inside = xp.all(xp.abs(flat_coord) < half, axis=-1)
    if int(xp.count_nonzero(inside)) == 0:
        raise InputError("no non-Cartesian samples inside the calibration region")
    c = xp.asarray(flat_coord[inside], dtype=xp.float32)
    if dcf is None:
        w = pipe_menon(c, tuple(calib_shape), eps=eps)
    else:
        w = xp.asarray(dcf).reshape(-1)[inside]
    img = nufft_adjoint(flat[:, inside] * w, c, tuple(calib_shape), eps=eps)
    return fftc(img, axes=tuple(range(1, img.ndim))).astype(xp.complex64)
