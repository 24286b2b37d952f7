"""Simulated 7 T ISMRMRD raw files for the pipeline tests (helper of tests/test_pipeline*.py).

Each writer produces a real ISMRMRD file (:class:`recon.io.rawwrite.RawWriter`) with noise
readouts of a known coil covariance, oblique slice geometry, and returns the ground truth
needed to judge the reconstruction: the object per slice (and repetition), the coil maps and
the noise covariance. Phantom and coil maps come from ``tests/cart_sim.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cart_sim import coil_maps, phantom

from recon.backend import fftc, rss
from recon.io.rawwrite import RawWriter, cartesian_header, new_headers

NOISE_FLAG = 1 << 18
CALIB_FLAG = 1 << 19
CALIB_IMAGING_FLAG = 1 << 20

#: An oblique orientation (LPS unit vectors), rotated about two axes.
_A, _B = np.deg2rad(20.0), np.deg2rad(-12.0)
READ = np.array([np.cos(_A), np.sin(_A), 0.0])
PHASE = np.array([-np.sin(_A) * np.cos(_B), np.cos(_A) * np.cos(_B), np.sin(_B)])
SLICE = np.cross(READ, PHASE)
CENTRE = np.array([4.0, -12.0, 30.0])


@dataclass
class Truth:
    """What a simulated file holds."""

    path: Path
    images: np.ndarray  # (nrep, nslices, *shape) complex object
    maps: np.ndarray  # (ncoils, *shape) per slice are equal (coil array fixed)
    psi: np.ndarray  # (ncoils, ncoils) noise covariance
    positions: np.ndarray  # (nslices, 3) LPS slice / slab centres
    voxel_mm: tuple[float, float, float]  # (dz, dy, dx)

    def whitened_reference(self, rep: int = 0) -> np.ndarray:
        """RSS of the prewhitened noiseless coil images: ``|x| sqrt(S^H Psi^-1 S)``."""
        w = np.linalg.inv(np.linalg.cholesky(self.psi))
        weight = rss(np.tensordot(w, self.maps, axes=(1, 0)), axis=0)
        return np.abs(self.images[rep]) * weight


def covariance(ncoils: int, seed: int = 3) -> np.ndarray:
    """Hermitian positive definite covariance with ~10 % correlations, unit-ish diagonal."""
    rng = np.random.default_rng(seed)
    a = np.eye(ncoils) + 0.06 * (
        rng.standard_normal((ncoils, ncoils)) + 1j * rng.standard_normal((ncoils, ncoils))
    )
    psi = a @ a.conj().T
    return psi / np.real(np.diag(psi)).mean()


def header(
    matrix: tuple[int, int, int],
    fov: tuple[float, float, float],
    *,
    ncoils: int,
    slices: int = 1,
    repetitions: int = 1,
    accel: tuple[int, int] = (1, 1),
    vendor: str | None = None,
    model: str | None = None,
    coil: str | None = None,
    trajectory: str = "cartesian",
) -> str:
    """ISMRMRD XML header of a 7 T scan (optionally vendor/model/coil and acceleration)."""
    import ismrmrd.xsd as X

    xml = cartesian_header(
        matrix, fov, ncoils=ncoils, slices=slices, repetitions=repetitions, field_strength_t=7.0
    )
    doc = X.CreateFromDocument(xml)
    system = doc.acquisitionSystemInformation
    system.systemVendor = vendor
    system.systemModel = model
    if coil is not None:
        system.coilLabel = [
            X.coilLabelType(coilNumber=i, coilName=f"{coil}_{i}") for i in range(ncoils)
        ]
    enc = doc.encoding[0]
    if accel != (1, 1):
        enc.parallelImaging = X.parallelImagingType(
            accelerationFactor=X.accelerationFactorType(
                kspace_encoding_step_1=accel[0], kspace_encoding_step_2=accel[1]
            ),
            calibrationMode=X.calibrationModeType.EMBEDDED,
        )
    enc.trajectory = getattr(X.trajectoryType, trajectory.upper())
    return X.ToXML(doc)


def _noise_block(psi: np.ndarray, n: int, nsamples: int, rng) -> np.ndarray:
    """Noise of covariance ``psi`` for ``n`` readouts, ``(n, ncoils, nsamples)`` complex64."""
    nc = psi.shape[0]
    white = rng.standard_normal((nc, n * nsamples)) + 1j * rng.standard_normal((nc, n * nsamples))
    coloured = np.linalg.cholesky(psi) @ (white / np.sqrt(2))  # one matrix product
    return coloured.reshape(nc, n, nsamples).transpose(1, 0, 2).astype(np.complex64)


def _with_noise_readouts(writer: RawWriter, psi: np.ndarray, nsamples: int, rng) -> None:
    n = -(-32768 // nsamples)  # enough samples for a covariance estimate within ~1 %
    head = new_headers(n, ncoils=psi.shape[0], nsamples=nsamples)
    head["flags"] = NOISE_FLAG
    head["sample_time_us"] = 5.0
    writer.append(head, _noise_block(psi, n, nsamples, rng))


def _place(head: np.ndarray, position: np.ndarray) -> None:
    head["position"] = position
    head["read_dir"] = READ
    head["phase_dir"] = PHASE
    head["slice_dir"] = SLICE
    head["sample_time_us"] = 5.0


def write_cartesian(
    path: Path,
    *,
    shape: tuple[int, int, int],
    ncoils: int,
    slices: int = 1,
    repetitions: int = 1,
    accel: tuple[int, int] = (1, 1),
    shift: int = 0,
    acs: tuple[int, int] = (1, 24),
    noise: float = 0.002,
    spacing_mm: float = 4.0,
    voxel_mm: float = 2.0,
    vendor: str | None = None,
    model: str | None = None,
    coil: str | None = None,
    seed: int = 0,
) -> Truth:
    """2D multi-slice (``shape[0] == 1``) or 3D Cartesian file, GRAPPA/CAIPI lattice + ACS.

    The ACS block ``acs = (az, ay)`` around the centre is acquired in repetition 0 only (as
    in an fMRI series); the object changes slightly between repetitions (a blob whose
    intensity follows a sine, the "activation").
    """
    nz, ny, nx = shape
    ry, rz = accel
    rng = np.random.default_rng(seed)
    psi = covariance(ncoils, seed + 3)
    grid = (ny, nx) if nz == 1 else shape
    maps = coil_maps(ncoils, grid)
    base = [phantom(grid, seed=seed + s) for s in range(slices)]
    yy, xx = np.meshgrid(np.arange(ny) - ny / 2, np.arange(nx) - nx / 2, indexing="ij")
    blob = np.exp(-((yy - ny / 8) ** 2 + (xx + nx / 10) ** 2) / (2 * (nx / 16) ** 2))
    fovz = voxel_mm * nz if nz > 1 else spacing_mm / 2
    xml = header(
        (nx, ny, nz),
        (voxel_mm * nx, voxel_mm * ny, fovz),
        ncoils=ncoils,
        slices=slices,
        repetitions=repetitions,
        accel=accel,
        vendor=vendor,
        model=model,
        coil=coil,
    )
    positions = np.array(
        [CENTRE + (s - (slices - 1) / 2) * spacing_mm * SLICE for s in range(slices)]
    )
    zs, ys = np.meshgrid(np.arange(nz), np.arange(ny), indexing="ij")
    lattice = (zs % rz == 0) & ((ys - shift * (zs // rz)) % ry == 0)
    az, ay = acs
    in_acs = (ys >= ny // 2 - ay // 2) & (ys < ny // 2 - ay // 2 + ay)
    if nz > 1:
        in_acs &= (zs >= nz // 2 - az // 2) & (zs < nz // 2 - az // 2 + az)
    images = np.zeros((repetitions, slices, *grid), np.complex64)
    with RawWriter(path, xml) as writer:
        _with_noise_readouts(writer, psi, nx, rng)
        for r in range(repetitions):
            for s in range(slices):
                obj = base[s] * (1 + 0.05 * np.sin(2 * np.pi * r / 10) * blob * (nz == 1))
                images[r, s] = obj
                k = fftc(maps * obj, axes=tuple(range(1, maps.ndim)))
                k = k if nz > 1 else k[:, None]
                take = lattice | (in_acs if r == 0 else False)
                zi, yi = np.nonzero(take)
                n = len(zi)
                head = new_headers(n, ncoils=ncoils, nsamples=nx)
                head["idx"]["kspace_encode_step_1"] = yi
                head["idx"]["kspace_encode_step_2"] = zi
                head["idx"]["slice"] = s
                head["idx"]["repetition"] = r
                flags = np.zeros(n, np.uint64)
                acs_line = in_acs[zi, yi] & (r == 0)
                on = lattice[zi, yi]
                flags[acs_line & on] = CALIB_IMAGING_FLAG
                flags[acs_line & ~on] = CALIB_FLAG
                head["flags"] = flags
                _place(head, positions[s])
                data = k[:, zi, yi, :].transpose(1, 0, 2)
                data = data + noise * _noise_block(psi, n, nx, rng)
                writer.append(head, data)
    dz = voxel_mm if nz > 1 else spacing_mm
    return Truth(path, images, maps, psi, positions, (dz, voxel_mm, voxel_mm))


def radial_coords(nspokes: int, nsamples: int, n: int) -> np.ndarray:
    """Golden-angle radial spokes ``(nspokes, nsamples, 2)`` as ``(kx, ky)`` grid units."""
    angles = np.arange(nspokes) * np.pi * (np.sqrt(5) - 1) / 2
    r = (np.arange(nsamples) - nsamples / 2) * n / nsamples
    return np.stack([np.outer(np.cos(angles), r), np.outer(np.sin(angles), r)], -1)


def write_noncartesian(
    path: Path,
    coords: np.ndarray,
    *,
    n: int,
    ncoils: int,
    trajectory: str,
    noise: float = 0.002,
    voxel_mm: float = 2.0,
    vendor: str | None = None,
    model: str | None = None,
    seed: int = 0,
) -> Truth:
    """One 2D slice sampled at ``coords (nreadouts, nsamples, 2)`` (kx, ky in grid units)."""
    from recon.noncart.nufft import nufft

    rng = np.random.default_rng(seed)
    psi = covariance(ncoils, seed + 3)
    maps = coil_maps(ncoils, (n, n))
    obj = phantom((n, n), seed=seed)
    nread, ns, _ = coords.shape
    coord_yx = coords[..., ::-1].astype(np.float32)
    samples = nufft(maps * obj, coord_yx, eps=1e-6)  # (ncoils, nread, ns)
    xml = header(
        (n, n, 1),
        (voxel_mm * n, voxel_mm * n, 3.0),
        ncoils=ncoils,
        vendor=vendor,
        model=model,
        trajectory=trajectory,
    )
    with RawWriter(path, xml) as writer:
        _with_noise_readouts(writer, psi, ns, rng)
        head = new_headers(nread, ncoils=ncoils, nsamples=ns)
        head["trajectory_dimensions"] = 2
        head["idx"]["kspace_encode_step_1"] = np.arange(nread)
        _place(head, CENTRE)
        data = np.asarray(samples).transpose(1, 0, 2)
        data = data + noise * _noise_block(psi, nread, ns, rng)
        writer.append(head, data, coords.astype(np.float32))
    return Truth(path, obj[None, None], maps, psi, CENTRE[None], (3.0, voxel_mm, voxel_mm))
