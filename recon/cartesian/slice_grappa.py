"""Slice-GRAPPA and split-slice GRAPPA for simultaneous multi-slice (SMS) data.

Setsompop et al., MRM 2012;67:1210 (slice-GRAPPA, blipped-CAIPI); Cauley et al.,
MRM 2014;72:93 (split-slice GRAPPA). The CAIPI phase convention is that of
:func:`recon.sim.sms.caipi_phase`: slice ``s`` is acquired with ``P_s(ky)``.

Calibration
-----------
From the single-band references ``K_s`` (central ACS lines) the CAIPI-shifted slices
``Y_s = P_s K_s`` and their sum, the synthesised collapsed data ``Y = sum_s Y_s``, are formed.
The kernel of target slice ``s`` takes the ``ky x kx`` neighbourhood of all coils (ky sources
``R`` lines apart, the in-plane lattice) around a position and returns every coil of ``Y_s``
at that position. With ``A_t`` the source matrix of ``Y_t`` (one row per ACS position),
``A = sum_t A_t`` and ``B_s`` the targets of ``Y_s``, the weights solve

- slice-GRAPPA: ``min ||A W_s - B_s||^2 + lam ||W_s||^2``, i.e.
  ``(A^H A + lam I) W_s = A^H B_s``;
- split-slice GRAPPA: ``min sum_t ||A_t W_s - delta_ts B_s||^2 + lam ||W_s||^2``, i.e.
  ``(sum_t A_t^H A_t + lam I) W_s = A_s^H B_s``: the kernel must reproduce slice ``s`` from
  slice ``s`` alone and return zero for every other slice (explicitly minimised leakage).

Both Gram matrices are shared by all target slices, so one factorisation serves all;
``lam = reg ||.||_F^2 / ncolumns`` as in :mod:`recon.cartesian.grappa`.

Application
-----------
The kernels are applied as a k-space convolution to the collapsed data (zero-filled off the
lattice; the output is then zero there too), each output is multiplied by ``conj(P_s)`` to undo
the CAIPI shift, and with in-plane acceleration every slice is completed by in-plane GRAPPA
calibrated on its own single-band reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recon.backend import array_module, ifftc, to_host
from recon.cartesian import grappa as inplane
from recon.errors import ConfigError, InputError
from recon.iterative.blas import single_threaded_blas
from recon.sim.sms import caipi_phase


@dataclass
class SliceGrappaKernel:
    """Calibrated slice-separation kernels.

    Attributes
    ----------
    weights : array, complex64, shape ``(mb, ncoils, ncoils, ky, kx)``
        ``W[s, c_out, c_in, i, j]``: slice ``s``, coil ``c_out`` at ``(y, x)`` is
        ``sum W[s, c_out, c_in, i, j] Y[c_in, y + lo[0] + R i, x + lo[1] + j]``.
    lo : (int, int)
        Offsets (in grid lines) of tap ``(0, 0)``.
    ry, shift : int
        In-plane acceleration and CAIPI factor the kernels were fitted for.
    """

    weights: Any
    lo: tuple[int, int]
    ry: int
    shift: int

    @property
    def mb(self) -> int:
        return int(self.weights.shape[0])

    @property
    def ncoils(self) -> int:
        return int(self.weights.shape[1])


def _acs_lines(sbr: Any) -> slice:
    xp = array_module(sbr)
    return inplane.find_acs(to_host(xp.abs(sbr).sum(axis=(0, 1, 3)) > 0))[1]


def _source_blocks(data: Any, kernel: tuple[int, int], ry: int) -> list[Any]:
    """Source rows of ``(ncoils, ay, ax)``: one ``(ncoils, nrows)`` block per tap (ky, kx)."""
    nc, ay, ax = data.shape
    ky, kx = kernel
    rows = (ay - ry * (ky - 1), ax - (kx - 1))
    if min(rows) < 1:
        raise InputError(
            f"slice-GRAPPA: calibration block {(ay, ax)} is smaller than the kernel "
            f"{(ry * (ky - 1) + 1, kx)}"
        )
    return [
        data[:, ry * i : ry * i + rows[0], j : j + rows[1]].reshape(nc, -1)
        for i in range(ky)
        for j in range(kx)
    ]


def calibrate(
    sbr: Any,
    *,
    shift: int,
    ry: int = 1,
    acs: slice | None = None,
    kernel: Sequence[int] = (5, 5),
    reg: float = 1e-3,
    split: bool = True,
) -> SliceGrappaKernel:
    """Fit slice-GRAPPA (``split=False``) or split-slice GRAPPA kernels on single-band data.

    Parameters
    ----------
    sbr : array, complex, shape ``(mb, ncoils, ny, nx)``
        Single-band reference k-space of each slice on the full grid (no CAIPI phase).
    shift, ry : int
        CAIPI factor and in-plane acceleration of the SMS data (:func:`caipi_phase`).
    acs : slice, optional
        The fully sampled ky lines of ``sbr`` (default: the largest sampled central block).
    kernel : (ky, kx)
        Sources per kernel along ky (``R`` lines apart) and kx; odd sizes centre the target.
    reg : float
        Tikhonov weight relative to ``||Gram||_trace / ncolumns``.
    split : bool
        Split-slice objective (Cauley et al. 2014) instead of plain slice-GRAPPA.

    Returns
    -------
    SliceGrappaKernel
    """
    xp = array_module(sbr)
    if sbr.ndim != 4:
        raise InputError(f"slice-GRAPPA: SBR of shape {sbr.shape} is not (mb, ncoils, ny, nx)")
    ky, kx = (int(k) for k in kernel)
    if min(ky, kx) < 1 or ry < 1:
        raise ConfigError(f"slice-GRAPPA: kernel {(ky, kx)} and ry={ry} must be positive")
    mb, nc, ny, _ = sbr.shape
    acs = _acs_lines(sbr) if acs is None else acs
    phase = caipi_phase(ny, mb, shift, ry, xp)[:, acs]
    shifted = xp.asarray(sbr[:, :, acs], dtype=xp.complex64) * phase[:, None, :, None]
    lo = (-ry * ((ky - 1) // 2), -((kx - 1) // 2))
    a_t = [xp.concatenate(_source_blocks(shifted[s], (ky, kx), ry), axis=0) for s in range(mb)]
    ay, ax = shifted.shape[2] - ry * (ky - 1), shifted.shape[3] - (kx - 1)
    targets = [
        shifted[s][:, -lo[0] : -lo[0] + ay, -lo[1] : -lo[1] + ax].reshape(nc, -1).T
        for s in range(mb)
    ]
    if split:
        # Stacking the slices' rows gives sum_t A_t^H A_t, and the block-diagonal targets
        # (B_s in the rows of slice s, zero elsewhere) give A_s^H B_s in column block s.
        sources = xp.concatenate(a_t, axis=1)
        rhs = xp.zeros((mb, targets[0].shape[0], mb, nc), dtype=xp.complex64)
        for s in range(mb):
            rhs[s, :, s] = targets[s]
        rhs = rhs.reshape(mb * targets[0].shape[0], mb * nc)
    else:
        sources = sum(a_t)
        rhs = xp.concatenate(targets, axis=1)
    w = inplane._regularised_solve(sources, rhs, reg)  # (ky kx nc_in, mb nc_out)
    w = w.reshape(ky, kx, nc, mb, nc).transpose(3, 4, 2, 0, 1)
    return SliceGrappaKernel(xp.ascontiguousarray(w.astype(xp.complex64)), lo, ry, shift)


def separate(kernel: SliceGrappaKernel, kspace: Any) -> Any:
    """Split collapsed SMS k-space into the slices' k-space (CAIPI shift undone).

    Parameters
    ----------
    kernel : SliceGrappaKernel
    kspace : array, complex, shape ``(ncoils, ny, nx)``
        Collapsed k-space, zero off the in-plane lattice.

    Returns
    -------
    array, complex64, shape ``(mb, ncoils, ny, nx)``
        Each slice's coil k-space on the acquired lines (zero elsewhere).
    """
    xp = array_module(kspace)
    nc, ny, nx = kspace.shape
    if nc != kernel.ncoils:
        raise InputError(f"slice-GRAPPA: {nc} coils in the data, {kernel.ncoils} in the kernel")
    w = xp.asarray(kernel.weights)
    mb, _, _, ky, kx = w.shape
    ry = kernel.ry
    pad_y = (-kernel.lo[0], kernel.lo[0] + ry * (ky - 1))
    pad_x = (-kernel.lo[1], kernel.lo[1] + kx - 1)
    padded = xp.pad(xp.asarray(kspace, dtype=xp.complex64), ((0, 0), pad_y, pad_x))
    # an output line's sources are ry lines apart, so lines of a residue mod ry with no
    # acquired line come out zero: only the others are computed (1/ry of the work)
    acquired = np.flatnonzero(to_host(xp.any(kspace != 0, axis=(0, 2))))
    rows = np.flatnonzero(np.isin(np.arange(ny) % ry, acquired % ry))
    out = xp.zeros((mb * nc, len(rows) * nx), dtype=xp.complex64)
    with single_threaded_blas(xp):
        for i in range(ky):
            taps = padded[:, xp.asarray(rows + ry * i)]  # (nc, len(rows), nx + kx - 1)
            for j in range(kx):
                src = taps[:, :, j : j + nx].reshape(nc, -1)
                out += w[:, :, :, i, j].reshape(mb * nc, nc) @ src
    phase = caipi_phase(ny, mb, kernel.shift, ry, xp)
    separated = xp.zeros((mb, nc, ny, nx), dtype=xp.complex64)
    separated[:, :, xp.asarray(rows)] = out.reshape(mb, nc, len(rows), nx)
    return separated * xp.conj(phase)[:, None, :, None]


def sms_grappa(
    kspace: Any,
    sbr: Any,
    *,
    shift: int,
    ry: int = 1,
    acs: slice | None = None,
    kernel: Sequence[int] = (5, 5),
    reg: float = 1e-3,
    split: bool = True,
    inplane_kernel: Sequence[int] | None = None,
    inplane_reg: float = 5e-4,
) -> Any:
    """Separate and (with ``ry > 1``) unalias one SMS slice group.

    Parameters
    ----------
    kspace : array, complex, shape ``(ncoils, ny, nx)``
        Collapsed k-space on the in-plane lattice (every ``ry``-th line, origin detected from
        the data), zero elsewhere.
    sbr : array, complex, shape ``(mb, ncoils, ny, nx)``
        Single-band references (ACS lines) of the slices.
    shift, ry, acs, kernel, reg, split
        See :func:`calibrate`.
    inplane_kernel, inplane_reg
        In-plane GRAPPA kernel and regularisation (:func:`recon.cartesian.grappa.calibrate`).

    Returns
    -------
    array, complex64, shape ``(mb, ncoils, ny, nx)``
        Coil images of every slice.
    """
    xp = array_module(kspace)
    if kspace.ndim != 3 or sbr.ndim != 4 or tuple(sbr.shape[1:]) != tuple(kspace.shape):
        raise InputError(
            f"SMS: SBR {tuple(sbr.shape)} does not match the collapsed k-space "
            f"{tuple(kspace.shape)} as (mb, ncoils, ny, nx) vs (ncoils, ny, nx)"
        )
    acs = _acs_lines(sbr) if acs is None else acs
    kern = calibrate(sbr, shift=shift, ry=ry, acs=acs, kernel=kernel, reg=reg, split=split)
    slices = separate(kern, kspace)
    if ry == 1:
        return ifftc(slices, axes=(-2, -1))
    ny, nx = kspace.shape[1:]
    lattice = inplane.detect_lattice(to_host(xp.abs(kspace).sum(axis=(0, 2)) > 0), ry, 1, 0)
    out = xp.empty_like(slices)
    for s in range(kern.mb):
        calib = inplane.calibrate(sbr[s][:, acs], ry=ry, kernel=inplane_kernel, reg=inplane_reg)
        out[s] = inplane.GrappaRecon(calib, (ny, nx), lattice)(slices[s])
    return out
