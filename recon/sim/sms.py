"""Simulated simultaneous multi-slice (SMS) acquisitions with blipped-CAIPI shifts, in memory.

Signal model
------------
``mb`` transverse slices at ``z_s = centre_z + (s - (mb - 1) / 2) gap_mm`` (``s = 0 .. mb-1``)
are excited together. Slice ``s`` has the object ``m_s`` and the receive maps ``S_{s,c}`` of the
simulator at that position, so the coils see each slice differently (the array has rings along
z). Its coil k-space ``K_{s,c} = F(S_{s,c} m_s)`` (centred orthonormal FFT, :func:`fftc`) gets the
CAIPI phase

    ``P_s(ky) = exp(-2 pi i s ky / (R shift))``,   ky the integer line index in [-ny/2, ny/2),

which is what Gz blips cycling every acquired line (line counter ``ky / R``, period ``shift``)
produce (Setsompop et al., MRM 2012;67:1210). On the full grid it is a circular shift of slice
``s`` by ``s ny / (R shift)`` pixels along +y: ``s FOV_R / shift`` with ``FOV_R = FOV / R`` the
reduced field of view (``FOV / shift`` without in-plane acceleration); ``shift = 0`` means no
CAIPI shift. The collapsed k-space ``sum_s P_s K_s`` is acquired on the in-plane lattice
(every R-th line, the centre line ``ky = 0`` included) with correlated receiver noise.

The single-band reference (SBR) of every slice is acquired separately without CAIPI phase,
fully sampled over the central ``acs`` lines (all lines for ``acs = None``) with its own noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recon.backend import array_module, fftc
from recon.errors import ConfigError
from recon.sim.coils import coil_sensitivities
from recon.sim.noise import correlated_noise, noise_covariance
from recon.sim.phantom import brain_phantom


def caipi_phase(ny: int, mb: int, shift: int, ry: int = 1, xp: Any = np) -> Any:
    """CAIPI phase ``P_s(ky) = exp(-2 pi i s ky / (ry shift))`` of every slice.

    Parameters
    ----------
    ny : int
        Phase-encoding lines of the full grid (``ky = -ny//2 .. ny - ny//2 - 1``).
    mb : int
        Multiband factor (number of slices).
    shift : int
        CAIPI factor: slice ``s`` moves by ``s FOV / (ry shift)`` along +y; 0 for no shift.
    ry : int
        In-plane acceleration (the blips cycle per acquired line).

    Returns
    -------
    array, complex64, shape ``(mb, ny)``
    """
    if shift == 0:
        return xp.ones((mb, ny), dtype=xp.complex64)
    ky = xp.arange(ny) - ny // 2
    s = xp.arange(mb)[:, None]
    return xp.exp(-2j * np.pi * s * ky[None, :] / (ry * shift)).astype(xp.complex64)


def collapse(slice_kspace: Any, phase: Any, mask: Any = None) -> Any:
    """Collapsed SMS k-space ``sum_s P_s(ky) K_s`` (times the line mask).

    Parameters
    ----------
    slice_kspace : array, complex, shape ``(mb, ncoils, ny, nx)``
        Per-slice coil k-space without CAIPI phase.
    phase : array, complex, shape ``(mb, ny)``
        From :func:`caipi_phase`.
    mask : array of bool, shape ``(ny,)``, optional
        Acquired lines (default all).

    Returns
    -------
    array, complex64, shape ``(ncoils, ny, nx)``
    """
    xp = array_module(slice_kspace)
    k = xp.sum(slice_kspace * phase[:, None, :, None], axis=0)
    if mask is not None:
        k = k * xp.asarray(mask)[None, :, None]
    return k.astype(xp.complex64)


@dataclass
class SmsData:
    """An SMS acquisition and its ground truth.

    Attributes
    ----------
    kspace : (ncoils, ny, nx) complex64
        Collapsed k-space, zero on the lines that are not acquired.
    sbr : (mb, ncoils, ny, nx) complex64
        Single-band reference k-space of each slice (no CAIPI phase), zero outside the ACS lines.
    images : (mb, ny, nx) complex64
        Noise-free objects of the slices.
    csm : (mb, ncoils, ny, nx) complex64
        Receive maps of each slice, ``sum_c |S|^2 = 1`` at every voxel.
    slice_kspace : (mb, ncoils, ny, nx) complex64
        Noise-free per-slice coil k-space (no CAIPI phase), e.g. to rebuild the collapsed data
        with one slice zeroed (:func:`collapse`).
    mask : (ny,) bool
        Acquired lines of ``kspace``.
    acs : slice
        The SBR lines.
    noise_cov : (ncoils, ncoils) complex128
        Covariance of the k-space noise per sample.
    mb, ry, shift : int
        Multiband factor, in-plane acceleration, CAIPI factor (see :func:`caipi_phase`).
    z_mm : (mb,) float64
        Slice positions (mm).
    """

    kspace: np.ndarray
    sbr: np.ndarray
    images: np.ndarray
    csm: np.ndarray
    slice_kspace: np.ndarray
    mask: np.ndarray
    acs: slice
    noise_cov: np.ndarray
    mb: int
    ry: int
    shift: int
    z_mm: np.ndarray

    @property
    def phase(self) -> np.ndarray:
        """CAIPI phase ``(mb, ny)`` of this acquisition."""
        return caipi_phase(self.kspace.shape[1], self.mb, self.shift, self.ry)


def simulate_sms(
    shape: tuple[int, int],
    *,
    ncoils: int = 16,
    mb: int = 2,
    shift: int | None = None,
    ry: int = 1,
    gap_mm: float = 30.0,
    centre_z_mm: float = 10.0,
    acs: int | None = 32,
    noise: float = 0.02,
    seed: int = 0,
) -> SmsData:
    """Simulate one collapsed SMS slice group, its single-band references and the truth.

    Parameters
    ----------
    shape : (ny, nx)
        Image grid of every slice (220 mm field of view).
    ncoils : int
        Receive channels.
    mb : int
        Multiband factor (2-5 in practice).
    shift : int, optional
        CAIPI factor (default ``mb``: slices spread evenly over the reduced FOV); 0: no shift.
    ry : int
        In-plane acceleration (lattice with the centre line acquired).
    gap_mm : float
        Distance between neighbouring simultaneous slices.
    centre_z_mm : float
        Position of the centre of the slice group.
    acs : int, optional
        SBR lines around the centre; None: fully sampled SBR.
    noise : float
        Noise standard deviation per k-space sample (mean over channels) relative to the mean
        magnitude of the objects inside the head (image and k-space noise agree: orthonormal
        FFT).
    seed : int
        Seeds the noise (the phantom is the simulator's subject, seed 0).

    Returns
    -------
    SmsData
    """
    ny, nx = (int(n) for n in shape)
    if mb < 1 or ry < 1:
        raise ConfigError(f"SMS: mb={mb} and ry={ry} must be positive")
    shift = mb if shift is None else int(shift)
    if acs is not None and not 0 < acs <= ny:
        raise ConfigError(f"SMS: acs={acs} lines must be in (0, {ny}]")
    z_mm = centre_z_mm + (np.arange(mb) - (mb - 1) / 2) * gap_mm
    images = np.stack([brain_phantom((ny, nx), centre_mm=(0.0, 0.0, z)) for z in z_mm])
    csm = np.stack([coil_sensitivities(ncoils, (ny, nx), centre_mm=(0.0, 0.0, z)) for z in z_mm])
    slice_kspace = fftc(csm * images[:, None], axes=(-2, -1)).astype(np.complex64)

    inside = np.abs(images) > 0
    sigma = noise * float(np.abs(images[inside]).mean())
    cov = noise_covariance(ncoils, seed=seed) * sigma**2
    rng = np.random.default_rng(seed)

    mask = np.zeros(ny, dtype=bool)
    mask[(np.arange(ny) - ny // 2) % ry == 0] = True
    phase = caipi_phase(ny, mb, shift, ry)
    kspace = collapse(slice_kspace, phase, mask)
    kspace += correlated_noise(cov, (ny, nx), rng) * mask[None, :, None]

    lines = slice(0, ny) if acs is None else slice(ny // 2 - acs // 2, ny // 2 - acs // 2 + acs)
    sbr = np.zeros_like(slice_kspace)
    sbr[..., lines, :] = slice_kspace[..., lines, :]
    for s in range(mb):
        sbr[s][:, lines] += correlated_noise(cov, (lines.stop - lines.start, nx), rng)
    return SmsData(
        kspace=kspace.astype(np.complex64),
        sbr=sbr,
        images=images.astype(np.complex64),
        csm=csm,
        slice_kspace=slice_kspace,
        mask=mask,
        acs=lines,
        noise_cov=cov,
        mb=mb,
        ry=ry,
        shift=shift,
        z_mm=z_mm,
    )
