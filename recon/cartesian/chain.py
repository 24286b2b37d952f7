"""The Cartesian chain on sorted data: prewhiten, crop readout, GRAPPA / SENSE / pics, PF.

Input is :class:`recon.io.sort.CartesianData` (``kspace (*batch, ncoils, nz, ny, nx)`` with
the batch axes slice, contrast, phase, repetition, set; calibration lines in ``calib``).
Stages, in order:

1. prewhitening with the noise readouts (:mod:`recon.coils.prewhiten`: ``Psi = n n^H / N``
   scaled to the imaging dwell time and receiver bandwidth, ``W = L^-1``, ``L L^H = Psi``);
2. readout oversampling removal (:mod:`recon.cartesian.oversampling`);
3. GRAPPA calibrated once per slice from its calibration lines and applied to every other
   batch index of that slice (repetitions of an fMRI series reuse the weights), the
   measured samples put back; or CG-SENSE / pics with coil maps;
4. partial Fourier (zero-fill by default, homodyne or POCS) per coil;
5. root-sum-of-squares or adaptive (Inati) coil combination (GRAPPA), or the SENSE image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from recon.backend import fftc, ifftc, rss
from recon.cartesian.grappa import GrappaRecon, calibrate, detect_lattice
from recon.cartesian.oversampling import remove_readout_oversampling
from recon.cartesian.partial_fourier import partial_fourier
from recon.coils.prewhiten import (
    DEFAULT_NOISE_BANDWIDTH,
    noise_covariance,
    prewhiten,
    scale_covariance,
    whitening_matrix,
)
from recon.coils.sensitivity import espirit_maps, inati_maps
from recon.errors import InputError
from recon.io.sort import CartesianData
from recon.iterative.pics import parse_terms, pics


def prepared(data: CartesianData, *, whiten: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Prewhitened k-space and calibration lines with the readout oversampling removed.

    Returns
    -------
    kspace : ``(*batch, ncoils, nz, ny, nx_recon)``
    calib : ``(*batch, ncoils, cz, cy, nx_recon)`` or None
    """
    k, calib = data.kspace, data.calib
    if whiten and data.noise is not None:
        noise = data.noise
        psi = scale_covariance(
            noise_covariance(noise.samples),
            noise_dwell_us=noise.dwell_time_us,
            imaging_dwell_us=data.dwell_time_us,
            bandwidth=noise.relative_bandwidth or DEFAULT_NOISE_BANDWIDTH,
        )
        w = whitening_matrix(psi)
        k = prewhiten(k, w, coil_axis=-4)
        calib = None if calib is None else prewhiten(calib, w, coil_axis=-4)
    factor = 1 if data.oversampling_removed else round(data.encoding.readout_oversampling)
    if factor > 1:
        k = remove_readout_oversampling(k, factor)
        calib = None if calib is None else remove_readout_oversampling(calib, factor)
    return k.astype(np.complex64), None if calib is None else calib.astype(np.complex64)


def merged_kspace(data: CartesianData, k: np.ndarray, calib: np.ndarray | None) -> tuple:
    """Imaging and calibration lines on one grid, and the mask of all acquired lines."""
    mask = data.mask.copy()
    if calib is None:
        return k, mask
    k = k.copy()
    sz, sy = data.calib_region
    cm = data.calib_mask
    region = k[..., sz, sy, :]
    k[..., sz, sy, :] = np.where(cm[..., None, :, :, None], calib, region)
    mask[..., sz, sy] |= cm
    return k, mask


def _spatial(ndim: int) -> tuple[int, ...]:
    return tuple(range(1, ndim + 1))


def _extent_mask(sampled: np.ndarray) -> np.ndarray:
    """Boolean ``(nz, ny)``: inside the bounding box of the acquired lines."""
    zs, ys = np.nonzero(sampled)
    box = np.zeros_like(sampled)
    box[zs.min() : zs.max() + 1, ys.min() : ys.max() + 1] = True
    return box


def grappa_chain(
    data: CartesianData,
    *,
    kernel: Sequence[int] | None = None,
    reg: float = 5e-4,
    pf_method: str = "zero",
    pf_iterations: int = 10,
    whiten: bool = True,
    combine: str = "rss",
) -> np.ndarray:
    """GRAPPA reconstruction of every batch index; magnitude ``(*batch, nz, ny, nx)``.

    Parameters
    ----------
    data : CartesianData
        Sorted k-space with calibration lines (embedded or separate).
    kernel, reg
        See :func:`recon.cartesian.grappa.calibrate` (sizes in array order).
    pf_method : str
        Partial Fourier method (``"zero"``, ``"homodyne"``, ``"pocs"``).
    pf_iterations : int
        POCS iterations.
    whiten : bool
        Prewhiten with the noise readouts when present.
    combine : str
        ``"rss"`` or ``"adaptive"`` (Inati's maps from the GRAPPA coil images,
        :func:`recon.coils.sensitivity.inati_maps`, then ``|S^H x|``).
    """
    if combine not in ("rss", "adaptive"):
        raise InputError(f"coil combination {combine!r}: use rss or adaptive")
    k, calib = prepared(data, whiten=whiten)
    full, acquired = merged_kspace(data, k, calib)
    ry, rz = data.acceleration
    batch = k.shape[:-4]
    nz = k.shape[-3]
    ndim = 2 if nz == 1 else 3
    flat_k = full.reshape(-1, *full.shape[-4:])
    flat_mask = acquired.reshape(-1, *acquired.shape[-2:])
    flat_lattice = data.mask.reshape(-1, *data.mask.shape[-2:])
    out = np.zeros((flat_k.shape[0], *k.shape[-3:]), np.float32)
    per_slice = int(np.prod(batch[1:])) if batch else 1
    recon = None
    for i in range(flat_k.shape[0]):
        ks = flat_k[i][:, 0] if ndim == 2 else flat_k[i]
        sampled = flat_mask[i]
        if ry * rz > 1:
            if recon is None or i % per_slice == 0:
                recon = _calibrated(ks, flat_lattice[i], calib, i, (ry, rz), kernel, reg)
            coils = recon(ks)
            filled = fftc(coils, axes=_spatial(ndim))
            keep = sampled[0] if ndim == 2 else sampled
            filled = np.where(keep[..., None], ks, filled)
        else:
            filled = ks
        box = _extent_mask(sampled)
        filled = filled * (box[0] if ndim == 2 else box)[..., None]
        filled = partial_fourier(filled, pf_method, axis=-2, ndim=ndim, iterations=pf_iterations)
        coil_images = ifftc(filled, axes=_spatial(ndim))
        if combine == "rss":
            image = rss(coil_images, axis=0)
        else:
            image = np.abs(inati_maps(coil_images, return_combined=True)[1])
        out[i] = image[None] if ndim == 2 else image
    return out.reshape(*batch, *k.shape[-3:])


def _calibrated(ks, lattice_mask, calib, index, accel, kernel, reg, csm=None) -> GrappaRecon:
    ry, rz = accel
    ndim = ks.ndim - 1
    lattice = detect_lattice(lattice_mask if ndim == 3 else lattice_mask[0], ry, rz)
    if calib is None:
        raise InputError(f"GRAPPA R={ry}x{rz} needs calibration lines; the data have none")
    acs = calib.reshape(-1, *calib.shape[-4:])[index]
    acs = acs[:, 0] if ndim == 2 else acs
    kern = calibrate(acs, ry=ry, rz=rz, shift=lattice.shift, kernel=kernel, reg=reg)
    return GrappaRecon(kern, ks.shape[1:], lattice, csm)


def grappa_gfactor(
    data: CartesianData,
    *,
    kernel: Sequence[int] | None = None,
    reg: float = 5e-4,
    whiten: bool = True,
) -> np.ndarray:
    """g-factor map ``(nz, ny, nx)`` of the first batch index (Breuer et al. MRM 2009).

    Uses the GRAPPA weights combined with :func:`lowres_maps`; the noise covariance is the
    identity after prewhitening (without noise readouts the channels are assumed white).
    """
    ry, rz = data.acceleration
    if ry * rz == 1:
        raise InputError("g-factor: the data are not accelerated")
    k, calib = prepared(data, whiten=whiten)
    full, acquired = merged_kspace(data, k, calib)
    k0 = full.reshape(-1, *full.shape[-4:])[0]
    sampled = acquired.reshape(-1, *acquired.shape[-2:])[0]
    lattice_mask = data.mask.reshape(-1, *data.mask.shape[-2:])[0]
    maps = lowres_maps(k0, sampled)
    ndim = 2 if k.shape[-3] == 1 else 3
    ks = k0[:, 0] if ndim == 2 else k0
    csm = maps[:, 0] if ndim == 2 else maps
    recon = _calibrated(ks, lattice_mask, calib, 0, (ry, rz), kernel, reg, csm)
    g = recon.gfactor()
    return g[None] if ndim == 2 else g


def _central_run(line: np.ndarray) -> tuple[int, int]:
    """First and last index of the run of True around the centre of ``line``."""
    lo = hi = line.size // 2
    while lo - 1 >= 0 and line[lo - 1]:
        lo -= 1
    while hi + 1 < line.size and line[hi + 1]:
        hi += 1
    return lo, hi


def lowres_maps(kspace: np.ndarray, sampled: np.ndarray) -> np.ndarray:
    """Coil maps from the fully sampled k-space centre: Hann-windowed images over their RSS.

    A simple, robust estimate (the ratio of low-resolution coil images) used by the CLI when
    no ESPIRiT maps are given.

    Parameters
    ----------
    kspace : ``(ncoils, nz, ny, nx)`` centred k-space (``nz = 1`` in 2D)
    sampled : ``(nz, ny)`` bool, acquired phase encodes (the centre must be acquired)

    Returns
    -------
    ``(ncoils, nz, ny, nx)`` complex64, ``sum |S|^2 = 1`` wherever the signal is non-zero
    """
    nz, ny, nx = kspace.shape[1:]
    runs = [
        _central_run(sampled[:, ny // 2]),
        _central_run(sampled[nz // 2, :]),
        (0, nx - 1),
    ]
    window = np.ones((nz, ny, nx), np.float32)
    for axis, (n, (lo, hi)) in enumerate(zip((nz, ny, nx), runs, strict=True)):
        profile = np.zeros(n, np.float32)
        profile[lo : hi + 1] = np.hanning(hi - lo + 3)[1:-1]
        shape = [1, 1, 1]
        shape[axis] = n
        window = window * profile.reshape(shape)
    low = ifftc(kspace * window, axes=(1, 2, 3))
    norm = rss(low, 0)
    return (low / np.maximum(norm, 1e-12 * norm.max())).astype(np.complex64)


def _maps(kspace: np.ndarray, sampled: np.ndarray, method: str, nmaps: int) -> np.ndarray:
    """Coil maps ``([nmaps,] ncoils, nz, ny, nx)`` of one k-space ``(ncoils, nz, ny, nx)``."""
    if method == "lowres":
        if nmaps != 1:
            raise InputError("two sets of maps need ESPIRiT (maps method espirit)")
        return lowres_maps(kspace, sampled)
    if method == "espirit":
        return espirit_maps(kspace, kspace.shape[1:], nmaps=nmaps)
    raise InputError(f"coil maps {method!r}: use lowres or espirit")


def sense_chain(
    data: CartesianData,
    *,
    maps: Any = None,
    maps_method: str = "lowres",
    nmaps: int = 1,
    regularizers: str = "",
    iterations: int = 20,
    solver: str = "auto",
    l2: float = 0.0,
    whiten: bool = True,
) -> np.ndarray:
    """CG-SENSE (no regularizer) or pics reconstruction of every batch index.

    Each slice is reconstructed with its own maps; with an LLR term all other batch indices
    of a slice (contrasts, phases, repetitions, sets) form the low-rank axis and are solved
    together, otherwise one by one.

    Parameters
    ----------
    maps : array ``(ncoils, nz, ny, nx)`` or ``(nmaps, ncoils, nz, ny, nx)``, optional
        Coil maps on the recon grid; default: estimated per slice from its first index.
    maps_method : str
        ``"lowres"`` (:func:`lowres_maps`) or ``"espirit"``
        (:func:`recon.coils.sensitivity.espirit_maps` with its defaults).
    nmaps : int
        ESPIRiT maps per coil (1, or 2 for soft SENSE; the image then has two components).
    regularizers, iterations, solver, l2
        See :func:`recon.iterative.pics.pics`.

    Returns
    -------
    ndarray, complex64, ``(*batch, nmaps, nz, ny, nx)``
    """
    k, calib = prepared(data, whiten=whiten)
    full, acquired = merged_kspace(data, k, calib)
    batch = k.shape[:-4]
    nz, ny, nx = k.shape[-3:]
    ndim = 2 if nz == 1 else 3
    flat_k = full.reshape(-1, *full.shape[-4:])
    flat_mask = np.broadcast_to(acquired.reshape(-1, nz, ny, 1), (flat_k.shape[0], nz, ny, nx))
    nslices = batch[0] if batch else 1
    per = flat_k.shape[0] // nslices
    joint = any(t.name == "llr" for t in parse_terms(regularizers))
    options = dict(regularizers=regularizers, iterations=iterations, solver=solver, l2=l2)
    out = []
    for sl in range(nslices):
        ks = flat_k[sl * per : (sl + 1) * per]
        ms = flat_mask[sl * per : (sl + 1) * per]
        smaps = maps if maps is not None else _maps(ks[0], ms[0, :, :, 0], maps_method, nmaps)
        if ndim == 2:
            ks, ms, smaps = ks[:, :, 0], ms[:, 0], smaps[..., 0, :, :]
        if joint:
            images = pics(ks, smaps, mask=ms, ndim=ndim, **options)
        else:
            images = np.stack(
                [pics(ks[j], smaps, mask=ms[j], ndim=ndim, **options) for j in range(per)]
            )
        out.append(images[..., None, :, :] if ndim == 2 else images)
    result = np.concatenate(out)
    return result.reshape(*batch, *result.shape[1:])
