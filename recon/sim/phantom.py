"""A brain-like numerical head phantom and a B0 field map, defined in physical space (mm).

The phantom is a function of the LPS position (see :mod:`recon.sim.space`), so the same
"subject" is seen by 2D, 3D and oblique acquisitions. Its compartments, outside in: scalp fat,
skull, CSF, a folded cortex (sulci are the zero set of a random smooth function on the
sphere, so they meander like real ones), white matter, lateral/third ventricles, deep grey
nuclei (caudate, thalamus, putamen), and fine detail: small vessels (about 1-2 mm) and
white-matter lesions. Contrast is T2*-weighted-like at 7 T (CSF brightest, GM > WM).
A smooth multiplicative texture (+-8 %) and a smooth phase (a few radians across the head)
make it complex-valued; it is exactly zero outside the scalp.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recon.sim.space import grid_points

#: Semi-axes (mm) of the scalp surface along x (left-right), y (anterior-posterior), z.
HEAD_AXES_MM = np.array([74.0, 94.0, 82.0])

# Normalised radii (fractions of HEAD_AXES_MM) of the tissue boundaries.
_SCALP_IN, _SKULL_IN, _BRAIN_OUT = 0.935, 0.87, 0.845
_CORTEX = 0.055  # cortical thickness (normalised radius)
_SULCUS_DEPTH = 0.13

_INTENSITY = {
    "scalp": 0.85,
    "skull": 0.05,
    "csf": 1.0,
    "gm": 0.75,
    "wm": 0.55,
    "deep_gm": 0.66,
    "vessel": 1.25,
    "lesion": 0.95,
}

# Deep structures: (centre mm, semi-axes mm, intensity key); mirrored left/right.
_NUCLEI = [
    ((14.0, -14.0, 8.0), (6.0, 10.0, 9.0), "deep_gm"),  # caudate head
    ((11.0, 9.0, 0.0), (8.5, 13.0, 9.0), "deep_gm"),  # thalamus
    ((25.0, -3.0, -1.0), (5.5, 14.0, 10.0), "deep_gm"),  # putamen
    ((8.5, 2.0, 8.0), (4.5, 24.0, 8.0), "csf"),  # lateral ventricle body
    ((22.0, 24.0, 2.0), (5.0, 9.0, 8.0), "csf"),  # trigone / occipital horn
]
_THIRD_VENTRICLE = ((0.0, 5.0, 0.0), (1.6, 11.0, 8.0))


class _Points:
    """Flat points sorted along x, so small ellipsoids test only a thin slab of candidates."""

    def __init__(self, points: np.ndarray) -> None:
        self.flat = points.reshape(-1, 3)
        self.order = np.argsort(self.flat[:, 0], kind="stable")
        self.x = self.flat[self.order, 0]

    def inside(self, centre: Sequence[float], axes: Sequence[float]) -> np.ndarray:
        """Flat indices of the points inside an axis-aligned ellipsoid."""
        centre, axes = np.asarray(centre, dtype=np.float64), np.asarray(axes, dtype=np.float64)
        reach = axes.max()
        lo, hi = np.searchsorted(self.x, [centre[0] - reach, centre[0] + reach], side="left")
        candidates = self.order[lo:hi]
        d = (self.flat[candidates] - centre) / axes
        return candidates[np.einsum("ij,ij->i", d, d) <= 1.0]


def _smooth_field(points: np.ndarray, rng: np.random.Generator, nwaves: int, wavelength_mm: float):
    """Sum of ``nwaves`` random plane waves (wavelengths about ``wavelength_mm``), std ~ 1."""
    out = np.zeros(points.shape[:-1])
    for _ in range(nwaves):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        k = 2 * np.pi / (wavelength_mm * rng.uniform(0.7, 1.4))
        out += np.cos(k * points @ direction + rng.uniform(0, 2 * np.pi))
    return out * np.sqrt(2.0 / nwaves)


def head_radius(points_mm: np.ndarray) -> np.ndarray:
    """Normalised ellipsoidal radius: 1 on the scalp surface, < 1 inside the head."""
    d = np.asarray(points_mm, dtype=np.float64) / HEAD_AXES_MM
    return np.sqrt(np.einsum("...i,...i->...", d, d))


def brain_phantom_at(points_mm: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Evaluate the complex phantom at LPS positions.

    Parameters
    ----------
    points_mm : (..., 3) float
        LPS positions in mm (head centred at the origin).
    seed : int
        Seeds the folding pattern, texture, vessels, lesions and phase.

    Returns
    -------
    (...,) complex64
        Signal (magnitude about 0-1.25), zero outside the head.
    """
    p = np.asarray(points_mm, dtype=np.float64)
    rng = np.random.default_rng(seed)
    rho = head_radius(p)
    direction = p / HEAD_AXES_MM / np.maximum(rho, 1e-9)[..., None]

    # Cortical folding: sulci along the zero set of a random smooth function on the sphere.
    folding = np.zeros(rho.shape)
    for _ in range(9):
        w = rng.normal(size=3)
        w *= rng.uniform(3.0, 5.0) / np.linalg.norm(w)
        folding += np.cos(2 * np.pi * direction @ w + rng.uniform(0, 2 * np.pi))
    sulcus = np.exp(-((folding / 0.25) ** 2))  # thin CSF-filled sulci
    sulcal_gm = np.exp(-((folding / 0.7) ** 2))  # grey matter lining them
    brain_surface = _BRAIN_OUT - _SULCUS_DEPTH * sulcus
    wm_surface = _BRAIN_OUT - _CORTEX - _SULCUS_DEPTH * sulcal_gm

    img = np.zeros(rho.shape)
    img[rho <= 1.0] = _INTENSITY["scalp"]
    img[rho < _SCALP_IN] = _INTENSITY["skull"]
    img[rho < _SKULL_IN] = _INTENSITY["csf"]
    img[rho < brain_surface] = _INTENSITY["gm"]
    wm = rho < wm_surface
    img[wm] = _INTENSITY["wm"]

    flat, wm, rho_flat = img.reshape(-1), wm.reshape(-1), rho.reshape(-1)
    index = _Points(p)
    for centre, axes, key in _NUCLEI:
        for side in (1.0, -1.0):  # left and right
            flat[index.inside((side * centre[0], *centre[1:]), axes)] = _INTENSITY[key]
    flat[index.inside(*_THIRD_VENTRICLE)] = _INTENSITY["csf"]

    # Fine detail: white-matter lesions and small vessels inside the brain.
    for _ in range(8):
        centre = rng.uniform(-1, 1, 3) * HEAD_AXES_MM * 0.55
        lesion = index.inside(centre, rng.uniform(1.5, 4.0, 3))
        flat[lesion[wm[lesion]]] = _INTENSITY["lesion"]
    for _ in range(60):
        centre = rng.uniform(-1, 1, 3) * HEAD_AXES_MM * 0.75
        axes = np.full(3, rng.uniform(0.6, 1.2))
        axes[rng.integers(3)] *= rng.uniform(3, 10)  # short vessel segments
        vessel = index.inside(centre, axes)
        flat[vessel[rho_flat[vessel] < _SKULL_IN]] = _INTENSITY["vessel"]
    flat[index.inside(SINUS_CENTRE_MM, np.full(3, SINUS_RADIUS_MM))] = 0.0  # air

    texture = 1.0 + 0.08 * _smooth_field(p, rng, 6, 90.0)
    phase = 0.8 * _smooth_field(p, rng, 4, 260.0) + 0.012 * p[..., 0] - 0.008 * p[..., 1]
    out = img * texture * np.exp(1j * phase)
    out[rho > 1.0] = 0
    return out.astype(np.complex64)


def brain_phantom(
    shape: Sequence[int],
    *,
    seed: int = 0,
    fov_mm: float | Sequence[float] | None = None,
    rotation: np.ndarray | None = None,
    centre_mm: Sequence[float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """Brain-like complex phantom on an image grid.

    Parameters
    ----------
    shape : (ny, nx) or (nz, ny, nx)
        Image grid; x (last axis) is left-right, y anterior-posterior, z inferior-superior for
        the default transverse orientation. A 2D grid is the slice through ``centre_mm``.
    seed : int
        Seeds the random details (folding, texture, vessels, lesions, phase).
    fov_mm : float or sequence, optional
        Field of view per axis in mm (default 220 mm: the whole head fits).
    rotation, centre_mm
        Orientation (columns read/phase/slice) and centre of the grid, see
        :func:`recon.sim.space.grid_points`.

    Returns
    -------
    complex64 array of ``shape``
        Zero outside the head.
    """
    points = grid_points(shape, fov_mm, rotation=rotation, centre_mm=centre_mm)
    return brain_phantom_at(points, seed=seed)


#: Centre (LPS mm) and radius (mm) of the air-filled frontal sinus (a susceptibility source).
SINUS_CENTRE_MM = np.array([0.0, -86.0, -14.0])
SINUS_RADIUS_MM = 13.0


def field_map_at(points_mm: np.ndarray, *, spread_hz: float = 40.0, seed: int = 0) -> np.ndarray:
    """B0 off-resonance (Hz) at LPS positions.

    A smooth background (random long-wavelength waves, standard deviation about
    ``spread_hz``) plus the field of the air-filled frontal sinus modelled as a sphere of
    susceptibility difference in a field along z, ``a (R/r)^3 (3 cos^2 theta - 1) / 2`` far
    from it, regularised to ``a R^3 (3 z^2 - r^2) / (2 (r^2 + R^2)^(5/2))`` so it stays smooth
    through the sinus, with ``a = -30 spread_hz`` (tissue is about 9 ppm more diamagnetic than
    air; 7 T frontal-lobe offsets reach a few hundred Hz). Defined everywhere (not masked).

    Parameters
    ----------
    points_mm : (..., 3) float
        LPS positions in mm.
    spread_hz : float
        Scale of the map (Hz).
    seed : int
        Seeds the smooth background.

    Returns
    -------
    (...,) float32, Hz
    """
    p = np.asarray(points_mm, dtype=np.float64)
    rng = np.random.default_rng(seed + 7919)
    background = _smooth_field(p, rng, 5, 300.0)
    d = p - SINUS_CENTRE_MM
    r2 = np.einsum("...i,...i->...", d, d)
    dipole = (
        SINUS_RADIUS_MM**3
        * (2 * d[..., 2] ** 2 - d[..., 0] ** 2 - d[..., 1] ** 2)
        / (2 * (r2 + SINUS_RADIUS_MM**2) ** 2.5)
    )
    return (spread_hz * (background - 30.0 * dipole)).astype(np.float32)


def field_map(
    shape: Sequence[int],
    *,
    spread_hz: float = 40.0,
    seed: int = 0,
    fov_mm: float | Sequence[float] | None = None,
    rotation: np.ndarray | None = None,
    centre_mm: Sequence[float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """Smooth B0 field map (Hz) on an image grid, largest near the frontal sinus.

    Parameters and grid conventions as :func:`brain_phantom`; see :func:`field_map_at` for
    the model. Returns a float32 array of ``shape`` in Hz.
    """
    points = grid_points(shape, fov_mm, rotation=rotation, centre_mm=centre_mm)
    return field_map_at(points, spread_hz=spread_hz, seed=seed)
