"""Image geometry: from ISMRMRD slice position and directions to NIfTI and DICOM.

Conventions (used by every exporter; the one place they are defined):

- An image array has shape ``(nz, ny, nx)``: ``x`` (last axis) runs along the readout
  direction ``read_dir``, ``y`` along ``phase_dir``, ``z`` along ``slice_dir`` (partitions of
  a 3D slab, or the slices of a 2D multi-slice stack).
- ISMRMRD ``position`` is the centre of the excited slice/slab in the patient (LPS)
  coordinate system, in mm. With the centred FFT of DESIGN.md (k-space centre at index
  ``N // 2``), the image voxel that sits at that centre is index ``N // 2`` along each axis:
  so voxel ``(k, j, i)`` has its centre at::

      LPS = position + (i - nx//2) dx read_dir + (j - ny//2) dy phase_dir
                     + (k - nz//2) dz slice_dir

  with voxel sizes ``dx, dy, dz`` in mm. For a 2D stack, ``position`` is that of slice
  ``nz // 2`` and ``dz`` the distance between slice centres.
- NIfTI voxel indices ``(i, j, k)`` are ``(x, y, z)`` (the array is stored transposed to
  ``(nx, ny, nz)``) and world coordinates are RAS: ``RAS = diag(-1, -1, 1) LPS``.
- DICOM ``ImagePositionPatient`` is the LPS centre of the first voxel ``(j, i) = (0, 0)`` of
  each slice; ``ImageOrientationPatient`` is ``read_dir`` (along a row, increasing column
  index ``i``) then ``phase_dir`` (down a column, increasing row index ``j``);
  ``PixelSpacing`` is ``(dy, dx)``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


class GeometryWarning(UserWarning):
    """Geometry that cannot be represented exactly (e.g. unevenly spaced slices)."""


def _unit(vector: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64)
    norm = np.linalg.norm(vector)
    if not np.isfinite(norm) or norm < 1e-6:
        return np.asarray(fallback, dtype=np.float64)
    return vector / norm


@dataclass(frozen=True)
class Geometry:
    """Where an image grid ``(nz, ny, nx)`` sits in the patient.

    Attributes
    ----------
    shape : (nz, ny, nx)
        Image grid.
    voxel_size_mm : (dz, dy, dx)
        Distance between voxel centres along each axis, mm.
    position : (3,) float
        LPS position (mm) of the centre of voxel ``(nz//2, ny//2, nx//2)``.
    read_dir, phase_dir, slice_dir : (3,) float
        LPS unit vectors of increasing ``x``, ``y`` and ``z`` (``slice_dir`` defaults to
        ``read_dir x phase_dir``; zero vectors, as in some simulated files, fall back to
        the identity orientation).
    patient_table_position : (3,) float
        As in the ISMRMRD header (mm), carried along for image headers.
    """

    shape: tuple[int, int, int]
    voxel_size_mm: tuple[float, float, float]
    position: np.ndarray
    read_dir: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.0]))
    phase_dir: np.ndarray = field(default_factory=lambda: np.array([0.0, 1.0, 0.0]))
    slice_dir: np.ndarray | None = None
    patient_table_position: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def __post_init__(self) -> None:
        read = _unit(self.read_dir, np.array([1.0, 0.0, 0.0]))
        phase = _unit(self.phase_dir, np.array([0.0, 1.0, 0.0]))
        normal = np.cross(read, phase)
        if np.linalg.norm(normal) < 1e-6:
            normal = np.array([0.0, 0.0, 1.0])
        slc = normal if self.slice_dir is None else _unit(self.slice_dir, normal)
        object.__setattr__(self, "read_dir", read)
        object.__setattr__(self, "phase_dir", phase)
        object.__setattr__(self, "slice_dir", slc)
        object.__setattr__(self, "position", np.asarray(self.position, dtype=np.float64))
        object.__setattr__(
            self, "patient_table_position", np.asarray(self.patient_table_position, float)
        )
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        object.__setattr__(self, "voxel_size_mm", tuple(float(d) for d in self.voxel_size_mm))

    @property
    def fov_mm(self) -> tuple[float, float, float]:
        """Field of view ``(z, y, x)`` = shape times voxel size, mm."""
        return tuple(n * d for n, d in zip(self.shape, self.voxel_size_mm, strict=True))

    def affine_lps(self) -> np.ndarray:
        """4x4 matrix from voxel index ``(i, j, k) = (x, y, z)`` (homogeneous) to LPS mm."""
        dz, dy, dx = self.voxel_size_mm
        nz, ny, nx = self.shape
        rotation = np.column_stack([self.read_dir * dx, self.phase_dir * dy, self.slice_dir * dz])
        centre_index = np.array([nx // 2, ny // 2, nz // 2], dtype=np.float64)
        affine = np.eye(4)
        affine[:3, :3] = rotation
        affine[:3, 3] = self.position - rotation @ centre_index
        return affine

    def nifti_affine(self) -> np.ndarray:
        """4x4 NIfTI affine: voxel ``(i, j, k) = (x, y, z)`` to RAS mm."""
        affine = self.affine_lps()
        affine[:3, :] = LPS_TO_RAS @ affine[:3, :]
        return affine

    def voxel_to_lps(self, index_zyx: np.ndarray) -> np.ndarray:
        """LPS (mm) of voxel centres given as ``(..., 3)`` array indices ``(k, j, i)``."""
        index = np.asarray(index_zyx, dtype=np.float64)[..., ::-1]
        affine = self.affine_lps()
        return index @ affine[:3, :3].T + affine[:3, 3]

    def slice_position(self, k: int) -> np.ndarray:
        """LPS (mm) of the centre of slice ``k`` (voxel ``(k, ny//2, nx//2)``)."""
        _, ny, nx = self.shape
        return self.voxel_to_lps(np.array([k, ny // 2, nx // 2]))

    def first_voxel(self, k: int) -> np.ndarray:
        """DICOM ImagePositionPatient of slice ``k``: LPS of voxel ``(k, 0, 0)``."""
        return self.voxel_to_lps(np.array([k, 0, 0]))

    def with_shape(self, shape: tuple[int, int, int]) -> Geometry:
        """Same voxels cropped or zero-padded centrally (index ``N//2`` stays put)."""
        return replace(self, shape=tuple(shape))

    def slice(self, k: int) -> Geometry:
        """Geometry of the single slice ``k`` of this stack (shape ``(1, ny, nx)``)."""
        return replace(self, shape=(1, *self.shape[1:]), position=self.slice_position(k))


def geometry_from_header(
    shape: tuple[int, int, int],
    fov_mm: tuple[float, float, float],
    position: np.ndarray,
    read_dir: np.ndarray,
    phase_dir: np.ndarray,
    slice_dir: np.ndarray,
    patient_table_position: np.ndarray | None = None,
) -> Geometry:
    """Geometry of a single slice or slab from ISMRMRD header values.

    Parameters
    ----------
    shape : (nz, ny, nx)
        Image grid.
    fov_mm : (x, y, z)
        Field of view in ISMRMRD order (readout, phase, slice), mm; for a 2D slice
        ``z`` is the slice thickness.
    position, read_dir, phase_dir, slice_dir, patient_table_position : (3,)
        As in the acquisition (or image) header, LPS.
    """
    nz, ny, nx = shape
    fx, fy, fz = fov_mm
    voxel = (fz / nz if fz > 0 else 1.0, fy / ny if fy > 0 else 1.0, fx / nx if fx > 0 else 1.0)
    return Geometry(
        shape=(nz, ny, nx),
        voxel_size_mm=voxel,
        position=np.asarray(position, dtype=np.float64),
        read_dir=read_dir,
        phase_dir=phase_dir,
        slice_dir=slice_dir,
        patient_table_position=(
            np.zeros(3) if patient_table_position is None else patient_table_position
        ),
    )


def stack_slices(slices: list[Geometry]) -> Geometry:
    """One geometry for a stack of 2D slices (each of shape ``(1, ny, nx)``), in list order.

    The slice axis runs from the first slice's centre towards the last's; the spacing is
    the mean distance between neighbouring centres (a :class:`GeometryWarning` when the
    slices are unevenly spaced by more than 1 % or not collinear).
    """
    if len(slices) == 1:
        return slices[0]
    first = slices[0]
    centres = np.array([g.position for g in slices])
    steps = np.diff(centres, axis=0)
    mean_step = steps.mean(axis=0)
    spacing = float(np.linalg.norm(mean_step))
    if spacing < 1e-6:
        warnings.warn(
            "slices share one position; stacking them along slice_dir",
            GeometryWarning,
            stacklevel=2,
        )
        spacing, direction = first.voxel_size_mm[0], first.slice_dir
    else:
        direction = mean_step / spacing
        if np.abs(steps - mean_step).max() > 0.01 * spacing:
            warnings.warn(
                "slices are unevenly spaced or not collinear; the exported stack uses their "
                f"mean spacing {spacing:.3f} mm",
                GeometryWarning,
                stacklevel=2,
            )
    nz = len(slices)
    position = centres[0] + (nz // 2) * spacing * direction
    return Geometry(
        shape=(nz, *first.shape[1:]),
        voxel_size_mm=(spacing, *first.voxel_size_mm[1:]),
        position=position,
        read_dir=first.read_dir,
        phase_dir=first.phase_dir,
        slice_dir=direction,
        patient_table_position=first.patient_table_position,
    )
