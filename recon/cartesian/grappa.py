"""GRAPPA for 2D (any R_y) and 3D (R_y x R_z with a CAIPIRINHA shift), applied in image space.

Griswold et al., MRM 2002;47:1202; 2D-CAIPIRINHA: Breuer et al., MRM 2006;55:549; g-factor
from the image-domain weights: Breuer et al., MRM 2009;62:739.

Sampling model
--------------
The accelerated axes (ky; kz and ky in 3D) are sampled on a lattice ``L``: position
``(z, y)`` (relative to an origin) is acquired when ``z % R_z == 0`` and
``(y - shift * (z // R_z)) % R_y == 0``. The ``R_z R_y`` positions of ``[0, R_z) x [0, R_y)``
are the cosets of ``L``; every non-zero coset is one *target class* with its own kernel.

Calibration
-----------
For each class the sources are the lattice points inside a box of ``K_z R_z x K_y R_y x K_x``
around the target (so ``K_z K_y K_x`` points, e.g. Gadgetron's 5 x 4 in 2D), and the weights
solve the Tikhonov-regularised least squares
``(A^H A + lam ||A||_F^2 / n I) W = A^H B`` over every position of the ACS block (n columns).

Application
-----------
Because a class kernel applied at a position of another class only sees non-acquired
(zero) samples, the kernels of all classes plus the identity form one convolution
``G``; on the zero-filled lattice data it fills every missing sample at once. In image space
the convolution is a pixel-wise ``ncoils x ncoils`` unmixing matrix
``U(r) = sum_d G_d exp(-2 pi i d (r - N/2) / N)``; with coil maps these collapse to one
weight per coil and pixel, ``u = S^H U / (S^H S)``. The weights are computed once and reused
for every repetition (fMRI). The g-factor is ``sqrt(u^H Psi u) / (R sqrt(w^H Psi w))`` with
``w = S / (S^H S)`` the fully sampled combination (noise covariance Psi, identity after
prewhitening).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recon.backend import array_module, fftc, ifftc, rss
from recon.errors import ConfigError, InputError
from recon.iterative.blas import single_threaded_blas


@dataclass(frozen=True)
class Lattice:
    """A lattice sampling pattern on the accelerated axes ``(z, y)``.

    Attributes
    ----------
    ry, rz : int
        Acceleration along ky and kz (``rz = 1`` in 2D).
    shift : int
        CAIPIRINHA shift of ky per sampled kz row (0: plain R_y x R_z).
    origin : tuple of int
        ``(z0, y0)``, one acquired position.
    """

    ry: int
    rz: int = 1
    shift: int = 0
    origin: tuple[int, int] = (0, 0)

    @property
    def factor(self) -> int:
        """Total acceleration ``R_y R_z``."""
        return self.ry * self.rz

    def contains(self, z: Any, y: Any) -> Any:
        """True where ``(z, y)`` (integer arrays) is a lattice point."""
        dz = z - self.origin[0]
        dy = y - self.origin[1]
        return (dz % self.rz == 0) & ((dy - self.shift * (dz // self.rz)) % self.ry == 0)

    def mask(self, nz: int, ny: int, xp: Any = np) -> Any:
        """Boolean ``(nz, ny)`` array of the lattice points."""
        z = xp.arange(nz)[:, None]
        y = xp.arange(ny)[None, :]
        return self.contains(z, y)


def _central(n: int, size: int) -> slice:
    start = max(0, n // 2 - size // 2)
    return slice(start, min(n, start + size))


def caipi_mask(shape: Sequence[int], ry: int, rz: int = 1, shift: int = 0, acs: int = 0) -> Any:
    """Sampling mask ``(nz, ny)`` (or ``(ny,)`` for ``len(shape) == 1``) of a lattice + ACS.

    Parameters
    ----------
    shape : (nz, ny) or (ny,)
        Accelerated axes.
    ry, rz, shift : int
        Lattice (origin at the centre ``(nz // 2, ny // 2)``, so the centre is acquired).
    acs : int
        Edge of a fully sampled central block (0: none).
    """
    shape = tuple(shape)
    nz, ny = (1, shape[0]) if len(shape) == 1 else shape
    lat = Lattice(ry, rz, shift, (nz // 2, ny // 2))
    m = lat.mask(nz, ny)
    if acs:
        m[_central(nz, acs), _central(ny, acs)] = True
    return m[0] if len(shape) == 1 else m


def detect_lattice(mask: Any, ry: int, rz: int = 1, shift: int | None = None) -> Lattice:
    """The lattice of acceleration ``R_y x R_z`` that best explains a sampling mask.

    Every origin (and every shift when ``shift`` is None) is scored by the number of lattice
    points inside the acquired bounding box that are acquired minus those that are not.

    Parameters
    ----------
    mask : array of bool, ``(nz, ny)`` or ``(ny,)``
        Acquired positions on the accelerated axes (ACS lines included).
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim == 1:
        m = m[None]
    if not m.any():
        raise InputError("GRAPPA: the sampling mask is empty")
    zs, ys = np.nonzero(m)
    box = (slice(zs.min(), zs.max() + 1), slice(ys.min(), ys.max() + 1))
    shifts = range(ry) if shift is None else [shift]
    best, best_score = None, None
    for s in shifts:
        for z0 in range(rz):
            for y0 in range(ry):
                lat = Lattice(ry, rz, s, (z0, y0))
                points = lat.mask(*m.shape)[box]
                score = int((points & m[box]).sum()) - int((points & ~m[box]).sum())
                if best_score is None or score > best_score:
                    best, best_score = lat, score
    return best


def find_acs(mask: Any) -> tuple[slice, slice]:
    """The largest fully sampled block around the centre of a ``(nz, ny)`` mask.

    Returns
    -------
    (slice, slice)
        The block along z and y; raises InputError when the centre is not acquired.
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim == 1:
        m = m[None]
    cz, cy = m.shape[0] // 2, m.shape[1] // 2
    if not m[cz, cy]:
        raise InputError("GRAPPA: the k-space centre is not acquired; give the ACS data")
    z0, z1, y0, y1 = cz, cz + 1, cy, cy + 1
    grown = True
    while grown:
        grown = False
        for side in range(4):
            nz0, nz1, ny0, ny1 = (
                z0 - (side == 0),
                z1 + (side == 1),
                y0 - (side == 2),
                y1 + (side == 3),
            )
            if nz0 < 0 or ny0 < 0 or nz1 > m.shape[0] or ny1 > m.shape[1]:
                continue
            if m[nz0:nz1, ny0:ny1].all():
                z0, z1, y0, y1 = nz0, nz1, ny0, ny1
                grown = True
    return slice(z0, z1), slice(y0, y1)


def _box(k: int, r: int) -> tuple[int, int]:
    """Inclusive relative range of a box of ``k * r`` positions around the target."""
    b = k * r
    return -((b - 1) // 2), b // 2


@dataclass
class GrappaKernel:
    """Calibrated GRAPPA kernel as one convolution over all target classes.

    Attributes
    ----------
    weights : array, complex64, shape ``(ncoils, ncoils, bz, by, bx)``
        ``G[c_out, c_in, d]``: output coil ``c_out`` at position ``p`` is
        ``sum G[c_out, c_in, d] k[c_in, p + d - lo]`` on the zero-filled lattice data;
        the identity sits at the box centre.
    lo : tuple of int
        Relative position ``(dz, dy, dx)`` of ``weights[..., 0, 0, 0]``.
    ry, rz, shift : int
        The lattice the kernel was calibrated for (its origin does not matter).
    ndim : int
        2 or 3 (spatial axes of the data it applies to).
    """

    weights: Any
    lo: tuple[int, int, int]
    ry: int
    rz: int
    shift: int
    ndim: int

    @property
    def ncoils(self) -> int:
        return int(self.weights.shape[0])

    def unmixing(self, shape: Sequence[int], coils: slice = slice(None)) -> Any:
        """Image-space unmixing matrices for output coils ``coils``.

        Parameters
        ----------
        shape : (nz, ny, nx) or (ny, nx)
            Image grid.
        coils : slice
            Output coils to compute (to bound memory on large 3D grids).

        Returns
        -------
        array, complex64, shape ``(nout, ncoils, *shape)``
            ``U[c_out, c_in](r)``; the per-coil image is ``sum_c_in U[:, c_in] X_zf[c_in]``.
        """
        xp = array_module(self.weights)
        grid = (1, *shape) if len(shape) == 2 else tuple(shape)
        out = self.weights[coils]
        # Contract one axis at a time: sum_d g[..., d] exp(-2 pi i d (r - n // 2) / n).
        with single_threaded_blas(xp):
            for axis, n in zip((2, 3, 4), grid, strict=True):
                nd = out.shape[axis]
                if n == 1 and nd == 1 and self.lo[axis - 2] == 0:
                    continue  # a 2D grid: nothing to transform along z
                d = xp.arange(nd) + self.lo[axis - 2]
                r = xp.arange(n) - n // 2
                phase = xp.exp(-2j * np.pi * xp.outer(d, r) / n).astype(xp.complex64)
                out = xp.moveaxis(xp.tensordot(out, phase, axes=([axis], [0])), -1, axis)
        return out.reshape(out.shape[:2] + tuple(shape))


def _regularised_solve(a_t: Any, b: Any, reg: float) -> Any:
    """``(A^H A + lam I)^-1 A^H B`` with ``A = a_t.T`` and ``lam = reg ||A||_F^2 / ncols``.

    On the CPU the Gram matrix comes from BLAS ``cherk`` (half the work of a product) and is
    solved by Cholesky; on the GPU by a product and a general solve.
    """
    xp = array_module(a_t)
    ncols = a_t.shape[0]
    if xp is np:
        from scipy.linalg import blas, cho_factor, cho_solve

        with single_threaded_blas(np):
            gram = np.conj(blas.cherk(1.0, a_t))  # upper triangle of A^H A
            lam = reg * float(np.real(np.trace(gram))) / ncols
            gram[np.diag_indices(ncols)] += lam
            factor = cho_factor(gram, lower=False, check_finite=False)
            rhs = np.conj(a_t) @ b
            return cho_solve(factor, rhs, check_finite=False).astype(np.complex64)
    gram = xp.conj(a_t) @ a_t.T
    lam = reg * float(xp.real(xp.trace(gram))) / ncols
    gram[xp.diag_indices(ncols)] += lam
    return xp.linalg.solve(gram, xp.conj(a_t) @ b)


def _as_3d(kspace: Any, ndim: int) -> Any:
    return kspace[:, None] if ndim == 2 else kspace


def calibrate(
    acs: Any,
    *,
    ry: int,
    rz: int = 1,
    shift: int = 0,
    kernel: Sequence[int] | None = None,
    reg: float = 5e-4,
) -> GrappaKernel:
    """Fit GRAPPA weights on fully sampled calibration data.

    Parameters
    ----------
    acs : array, complex, shape ``(ncoils, ay, ax)`` or ``(ncoils, az, ay, ax)``
        Calibration k-space block (separate or cut from the embedded ACS lines).
    ry, rz, shift : int
        Lattice to fill (acceleration along ky, kz; CAIPI shift).
    kernel : sequence of int, optional
        Sources per class along ``(ky, kx)`` or ``(kz, ky, kx)`` in acquired points;
        default ``(4, 5)`` (Gadgetron's 5 x 4, readout x phase) in 2D and
        ``(2 if rz > 1 else 1, 4, 5)`` in 3D.
    reg : float
        Tikhonov weight relative to ``||A||_F^2 / ncolumns`` (Gadgetron's default 5e-4).

    Returns
    -------
    GrappaKernel
    """
    xp = array_module(acs)
    ndim = acs.ndim - 1
    if ndim not in (2, 3):
        raise InputError(f"GRAPPA: ACS of shape {acs.shape} is not (ncoils, [az,] ay, ax)")
    if ndim == 2 and rz != 1:
        raise ConfigError("GRAPPA: R_z > 1 needs 3D data (ncoils, nz, ny, nx)")
    if kernel is None:
        kernel = (4, 5) if ndim == 2 else (2 if rz > 1 else 1, 4, 5)
    kernel = tuple(int(k) for k in kernel)
    if len(kernel) != ndim or min(kernel) < 1:
        raise ConfigError(f"GRAPPA: kernel {kernel} must have {ndim} positive sizes")
    kz, ky, kx = (1, *kernel) if ndim == 2 else kernel
    acs3 = _as_3d(acs, ndim).astype(xp.complex64)
    nc, az, ay, ax = acs3.shape
    lo = (_box(kz, rz)[0], _box(ky, ry)[0], -((kx - 1) // 2))
    hi = (_box(kz, rz)[1], _box(ky, ry)[1], kx // 2)
    size = tuple(h - low + 1 for low, h in zip(lo, hi, strict=True))
    rows = [n - s + 1 for n, s in zip((az, ay, ax), size, strict=True)]
    if min(rows) < 1:
        raise InputError(
            f"GRAPPA: calibration block {(az, ay, ax)} is smaller than the kernel box {size}"
        )
    lattice0 = Lattice(ry, rz, shift)
    weights = xp.zeros((nc, nc, *size), dtype=xp.complex64)
    centre = tuple(-v for v in lo)
    for c in range(nc):
        weights[(c, c, *centre)] = 1.0
    target = acs3[
        :, -lo[0] : -lo[0] + rows[0], -lo[1] : -lo[1] + rows[1], -lo[2] : -lo[2] + rows[2]
    ]
    b = target.reshape(nc, -1).T
    for tz in range(rz):
        for ty in range(ry):
            if (tz, ty) == (0, 0):
                continue
            sources = [
                (dz, dy)
                for dz in range(lo[0], hi[0] + 1)
                for dy in range(lo[1], hi[1] + 1)
                if bool(lattice0.contains(tz + dz, ty + dy))
            ]
            cols = []
            for dz, dy in sources:
                for dx in range(lo[2], hi[2] + 1):
                    z0, y0, x0 = dz - lo[0], dy - lo[1], dx - lo[2]
                    block = acs3[:, z0 : z0 + rows[0], y0 : y0 + rows[1], x0 : x0 + rows[2]]
                    cols.append(block.reshape(nc, -1))
            w = _regularised_solve(xp.concatenate(cols, axis=0), b, reg)  # (nsrc * nc, nc)
            w = w.reshape(len(sources), kx, nc, nc)  # (src, dx, c_in, c_out)
            for i, (dz, dy) in enumerate(sources):
                weights[:, :, dz - lo[0], dy - lo[1], :] = xp.transpose(w[i], (2, 1, 0))
    return GrappaKernel(weights, lo, ry, rz, shift, ndim)


class GrappaRecon:
    """Apply a GRAPPA kernel in image space, reusing the weights for every repetition.

    Parameters
    ----------
    kernel : GrappaKernel
        From :func:`calibrate`.
    shape : (ny, nx) or (nz, ny, nx)
        Image grid.
    lattice : Lattice
        The acquired lattice (with its origin) in this grid.
    csm : array, complex, shape ``(ncoils, *shape)``, optional
        Coil maps for a combined output; without them :meth:`__call__` returns per-coil
        images (combine with RSS or adaptive maps).
    max_bytes : int
        Memory budget of one chunk of unmixing matrices.
    """

    def __init__(
        self,
        kernel: GrappaKernel,
        shape: Sequence[int],
        lattice: Lattice,
        csm: Any = None,
        *,
        max_bytes: int = 512 * 2**20,
    ):
        if (lattice.ry, lattice.rz, lattice.shift) != (kernel.ry, kernel.rz, kernel.shift):
            raise ConfigError("GRAPPA: the lattice differs from the calibrated one")
        xp = array_module(kernel.weights)
        self.kernel = kernel
        self.shape = tuple(shape)
        self.lattice = lattice
        self.xp = xp
        nz, ny = (1, self.shape[0]) if len(self.shape) == 2 else self.shape[:2]
        m = lattice.mask(nz, ny, xp)
        self.lattice_mask = (m[0] if len(self.shape) == 2 else m)[..., None]
        nc = kernel.ncoils
        npix = int(np.prod(self.shape))
        chunk = max(1, min(nc, max_bytes // max(1, nc * npix * 8)))
        self._chunks = [slice(i, min(nc, i + chunk)) for i in range(0, nc, chunk)]
        self.combined = None
        self.norm = None
        self.unmix = None
        if csm is not None:
            csm = xp.asarray(csm, dtype=xp.complex64)
            if tuple(csm.shape) != (nc, *self.shape):
                raise InputError(f"GRAPPA: maps {csm.shape} do not match {(nc, *self.shape)}")
            norm = xp.sum(xp.abs(csm) ** 2, axis=0)
            norm = xp.where(norm > 0, norm, 1.0).astype(xp.float32)
            comb = xp.zeros((nc, *self.shape), dtype=xp.complex64)
            small = max(1, min(nc, (64 * 2**20) // max(1, nc * npix * 8)))
            for start in range(0, nc, small):
                u = kernel.unmixing(self.shape, slice(start, min(nc, start + small)))
                for i in range(u.shape[0]):
                    comb += xp.conj(csm[start + i]) * u[i]
            self.combined = comb / norm
            self.csm = csm
            self.norm = norm
        elif len(self._chunks) == 1:
            self.unmix = kernel.unmixing(self.shape)

    def aliased(self, kspace: Any) -> Any:
        """Zero-filled per-coil images of the lattice samples only, ``(ncoils, *shape)``."""
        return ifftc(kspace * self.lattice_mask, axes=tuple(range(1, kspace.ndim)))

    def __call__(self, kspace: Any) -> Any:
        """Reconstruct one repetition.

        Parameters
        ----------
        kspace : array, complex, shape ``(ncoils, *shape)``
            Zero-filled centred k-space (lines off the lattice, e.g. ACS, are ignored).

        Returns
        -------
        array, complex64
            ``shape`` when maps were given (coil-combined), else ``(ncoils, *shape)``.
        """
        xp = self.xp
        x = self.aliased(xp.asarray(kspace, dtype=xp.complex64))
        if self.combined is not None:
            return xp.sum(self.combined * x, axis=0)
        out = xp.zeros_like(x)
        for sl in self._chunks:
            u = self.unmix if self.unmix is not None else self.kernel.unmixing(self.shape, sl)
            for c in range(x.shape[0]):
                out[sl] += u[:, c] * x[c]
        return out

    def gfactor(self, noise_cov: Any = None) -> Any:
        """g-factor map ``(*shape)`` from the combined weights (needs coil maps).

        Parameters
        ----------
        noise_cov : array, ``(ncoils, ncoils)``, optional
            Noise covariance of the data (identity after prewhitening).
        """
        if self.combined is None:
            raise ConfigError("GRAPPA g-factor needs coil maps")
        xp = self.xp
        u, w = self.combined, xp.conj(self.csm) / self.norm
        if noise_cov is None:
            num = xp.sum(xp.abs(u) ** 2, axis=0)
            den = xp.sum(xp.abs(w) ** 2, axis=0)
        else:
            psi = xp.asarray(noise_cov, dtype=xp.complex64)
            num = xp.real(xp.einsum("c...,cd,d...->...", xp.conj(u), psi, u))
            den = xp.real(xp.einsum("c...,cd,d...->...", xp.conj(w), psi, w))
        return xp.sqrt(num / xp.maximum(den, 1e-30)) / self.lattice.factor


def grappa(
    kspace: Any,
    *,
    ry: int,
    rz: int = 1,
    shift: int | None = None,
    acs: Any = None,
    kernel: Sequence[int] | None = None,
    reg: float = 5e-4,
    csm: Any = None,
    coils: bool = False,
    keep_acquired: bool = True,
) -> Any:
    """GRAPPA reconstruction of one zero-filled Cartesian k-space.

    Parameters
    ----------
    kspace : array, complex, shape ``(ncoils, ny, nx)`` or ``(ncoils, nz, ny, nx)``
        Centred zero-filled k-space with the lattice lines (and embedded ACS lines).
    ry, rz : int
        Acceleration along ky and kz.
    shift : int, optional
        CAIPI shift; default detected from the data.
    acs : array, optional
        Separate calibration k-space ``(ncoils, [az,] ay, ax)``; default the largest fully
        sampled block around the centre of ``kspace`` (embedded ACS).
    kernel, reg
        See :func:`calibrate`.
    csm : array, optional
        Coil maps ``(ncoils, *shape)`` for a combined complex image.
    coils : bool
        Return per-coil images ``(ncoils, *shape)`` (then acquired samples, ACS included,
        are put back when ``keep_acquired``).
    keep_acquired : bool
        Data consistency for the per-coil output.

    Returns
    -------
    array, complex64
        Combined image (with ``csm``), RSS magnitude (without ``csm``), or per-coil images.
    """
    xp = array_module(kspace)
    ndim = kspace.ndim - 1
    if ndim not in (2, 3):
        raise InputError(f"GRAPPA: k-space of shape {kspace.shape} is not (ncoils, [nz,] ny, nx)")
    shape = tuple(kspace.shape[1:])
    sampled = xp.abs(kspace).sum(axis=(0, -1)) > 0
    mask_zy = np.asarray(sampled.get() if hasattr(sampled, "get") else sampled)
    lattice = detect_lattice(mask_zy, ry, rz, shift)
    if acs is None:
        sz, sy = find_acs(mask_zy)
        acs = kspace[:, sz, sy] if ndim == 3 else kspace[:, sy]
    kern = calibrate(acs, ry=ry, rz=rz, shift=lattice.shift, kernel=kernel, reg=reg)
    recon = GrappaRecon(kern, shape, lattice, None if coils else csm)
    out = recon(kspace)
    if recon.combined is not None:
        return out
    if coils:
        if keep_acquired:
            axes = tuple(range(1, ndim + 1))
            k = fftc(out, axes=axes)
            acquired = xp.expand_dims(sampled, -1)
            k = xp.where(acquired, kspace, k)
            out = ifftc(k, axes=axes)
        return out
    return rss(out, axis=0)
