"""Physical sampling grids of the simulator: image voxels -> patient (LPS) coordinates in mm.

Everything the simulator draws (phantom, coil fields, B0 map) is a function of the position in
the patient, so 2D, 3D and oblique acquisitions of one "subject" agree. The voxel convention is
that of :mod:`recon.geometry`: voxel ``(k, j, i)`` of an image ``(nz, ny, nx)`` has its centre at::

    LPS = centre + (i - nx//2) dx read_dir + (j - ny//2) dy phase_dir + (k - nz//2) dz slice_dir

The patient frame is LPS: ``x`` towards the patient's left, ``y`` posterior, ``z`` superior;
the head is centred at the origin.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Default field of view (mm) along every axis when none is given: a whole adult head fits.
DEFAULT_FOV_MM = 220.0


def default_fov(shape: Sequence[int], fov_mm: float | Sequence[float] | None) -> tuple[float, ...]:
    """Field of view (mm) per image axis of ``shape``; a scalar applies to every axis."""
    if fov_mm is None:
        return (DEFAULT_FOV_MM,) * len(shape)
    if np.isscalar(fov_mm):
        return (float(fov_mm),) * len(shape)
    fov = tuple(float(f) for f in fov_mm)
    if len(fov) != len(shape):
        raise ValueError(f"fov_mm {fov} does not match the image shape {tuple(shape)}")
    return fov


def rotation_matrix(angles_deg: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """Columns ``read_dir, phase_dir, slice_dir`` of a slice rotated by ``angles_deg``.

    ``angles_deg = (about_x, about_y, about_z)`` in degrees, applied in that order to the
    transverse orientation (read = x, phase = y, slice = z). Returns a (3, 3) rotation.
    """
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def grid_points(
    shape: Sequence[int],
    fov_mm: float | Sequence[float] | None = None,
    *,
    rotation: np.ndarray | None = None,
    centre_mm: Sequence[float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """LPS positions (mm) of the voxel centres of an image grid.

    Parameters
    ----------
    shape : (ny, nx) or (nz, ny, nx)
        Image grid; a 2D grid is a single slice through ``centre_mm``.
    fov_mm : float or sequence, optional
        Field of view per image axis (same order as ``shape``), default 220 mm.
    rotation : (3, 3) array, optional
        Columns are ``read_dir, phase_dir, slice_dir`` (default identity: transverse).
    centre_mm : (3,)
        LPS position of voxel ``(nz//2, ny//2, nx//2)``.

    Returns
    -------
    (*shape, 3) float64
        LPS coordinates in mm.
    """
    shape = tuple(int(n) for n in shape)
    fov = default_fov(shape, fov_mm)
    local = [(np.arange(n) - n // 2) * (f / n) for n, f in zip(shape, fov, strict=True)]
    return axes_points(local, rotation=rotation, centre_mm=centre_mm)


def axes_points(
    local_mm: Sequence[np.ndarray],
    *,
    rotation: np.ndarray | None = None,
    centre_mm: Sequence[float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """LPS positions (mm) of the grid spanned by local coordinates along each image axis.

    ``local_mm`` holds one 1D array per image axis (``(y, x)`` or ``(z, y, x)``), the offsets
    in mm from the centre along ``phase_dir``/``read_dir`` (and ``slice_dir``). Returns
    ``(len(y), len(x), 3)`` or ``(len(z), len(y), len(x), 3)`` positions.
    """
    rot = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
    local = [np.asarray(a, dtype=np.float64) for a in local_mm]
    flat = len(local) == 2
    if flat:
        local = [np.zeros(1), *local]
    z, y, x = np.meshgrid(*local, indexing="ij")
    points = x[..., None] * rot[:, 0] + y[..., None] * rot[:, 1] + z[..., None] * rot[:, 2]
    points = points + np.asarray(centre_mm, dtype=np.float64)
    return points[0] if flat else points
