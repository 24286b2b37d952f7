"""Non-Cartesian k-space trajectories in grid units (SigPy convention).

Every function returns coordinates of shape ``(..., ndim)`` in grid units in ``[-N/2, N/2]``
(``N`` the image matrix; the largest radius is ``N/2`` so a spoke or arm touches the edge of
k-space), with ``coord[..., -1]`` pairing with the last image axis (x, readout) and
``coord[..., 0]`` with the first (y in 2D, z in 3D). Readouts sample ``k = 0`` at sample
``nsamples // 2`` (radial) or 0 (spiral), as scanners do. float32.

Golden angles: 2D radial uses ``pi (sqrt(5) - 1) / 2`` (111.25 deg) between successive
full spokes (Winkelmann et al., IEEE TMI 2007;26:68); 3D radial uses the 2D golden means
0.4656 and 0.6823 (Chan et al., MRM 2009;61:354).
"""

from __future__ import annotations

import numpy as np

GOLDEN_ANGLE = np.pi * (np.sqrt(5.0) - 1.0) / 2.0  # radians, about 111.246 deg
_GOLDEN_MEANS_3D = (0.465571231876768, 0.682327803828019)


def _check(name: str, value: int, minimum: int = 1) -> int:
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def spoke_angles(nspokes: int, *, golden: bool = True) -> np.ndarray:
    """Azimuthal angles (radians, float64) of ``nspokes`` full-diameter spokes.

    Uniform: ``pi i / nspokes`` (covers the half circle evenly); golden:
    ``i * GOLDEN_ANGLE mod 2 pi``.
    """
    i = np.arange(_check("nspokes", nspokes))
    if golden:
        return np.mod(i * GOLDEN_ANGLE, 2 * np.pi)
    return np.pi * i / nspokes


def _radii(nsamples: int, n: int | None) -> np.ndarray:
    nsamples = _check("nsamples", nsamples, 2)
    n = nsamples if n is None else _check("n", n)
    return (np.arange(nsamples) - nsamples // 2) * (n / nsamples)


def radial(nspokes: int, nsamples: int, *, golden: bool = True, n: int | None = None) -> np.ndarray:
    """2D radial trajectory of full-diameter spokes.

    Parameters
    ----------
    nspokes : int
        Number of spokes (``pi N / 2`` samples the periphery at Nyquist).
    nsamples : int
        Samples per spoke; ``2 N`` for 2x readout oversampling.
    golden : bool
        Golden-angle increments (else uniform over pi).
    n : int, optional
        Image matrix ``N`` (default ``nsamples``): the sample spacing is ``N / nsamples``.

    Returns
    -------
    (nspokes, nsamples, 2) float32
        ``(ky, kx)`` in grid units; sample ``nsamples // 2`` is ``k = 0``.
    """
    angles = spoke_angles(nspokes, golden=golden)
    r = _radii(nsamples, n)
    coord = np.stack(
        [r[None, :] * np.sin(angles)[:, None], r[None, :] * np.cos(angles)[:, None]], axis=-1
    )
    return coord.astype(np.float32)


def spiral(
    ninterleaves: int,
    nsamples: int,
    *,
    n: int,
    turns: float | None = None,
) -> np.ndarray:
    """2D constant-linear-velocity Archimedean spiral; arms rotated by ``2 pi / ninterleaves``.

    ``k(t) = (N/2) sqrt(t) exp(i (2 pi turns sqrt(t) + 2 pi l / ninterleaves))`` for
    ``t = j / nsamples``: the radius grows linearly with the angle (Archimedean) and the speed
    along the curve is constant. ``turns = N / (2 ninterleaves)`` (default) spaces adjacent
    arms one grid unit apart radially (Nyquist for the full FOV).

    Parameters
    ----------
    ninterleaves : int
        Number of spiral arms.
    nsamples : int
        Samples per arm (enough that consecutive samples are < 1 grid unit apart:
        about ``pi N turns / 2``).
    n : int
        Image matrix ``N``.
    turns : float, optional
        Revolutions per arm.

    Returns
    -------
    (ninterleaves, nsamples, 2) float32
        ``(ky, kx)``; sample 0 is ``k = 0``.
    """
    ninterleaves = _check("ninterleaves", ninterleaves)
    nsamples = _check("nsamples", nsamples, 2)
    n = _check("n", n)
    turns = n / (2 * ninterleaves) if turns is None else float(turns)
    s = np.sqrt(np.arange(nsamples) / nsamples)
    theta = 2 * np.pi * turns * s[None, :] + 2 * np.pi * np.arange(ninterleaves)[:, None] / (
        ninterleaves
    )
    r = (n / 2) * s[None, :]
    return np.stack([r * np.sin(theta), r * np.cos(theta)], axis=-1).astype(np.float32)


def stack_of_stars(
    nspokes: int,
    nsamples: int,
    npartitions: int,
    *,
    golden: bool = True,
    n: int | None = None,
) -> np.ndarray:
    """Stack of stars: the same 2D radial spokes on every Cartesian kz partition.

    Parameters
    ----------
    nspokes, nsamples, golden, n
        As :func:`radial`, per partition.
    npartitions : int
        Number of kz partitions (the image has ``nz = npartitions`` slices); partition
        ``p`` sits at ``kz = p - npartitions // 2``.

    Returns
    -------
    (npartitions, nspokes, nsamples, 3) float32
        ``(kz, ky, kx)`` in grid units.
    """
    npartitions = _check("npartitions", npartitions)
    plane = radial(nspokes, nsamples, golden=golden, n=n)
    kz = (np.arange(npartitions) - npartitions // 2).astype(np.float32)
    coord = np.empty((npartitions, *plane.shape[:-1], 3), dtype=np.float32)
    coord[..., 0] = kz[:, None, None]
    coord[..., 1:] = plane[None]
    return coord


def radial_3d(
    nspokes: int, nsamples: int, *, n: int | None = None, golden: bool = True
) -> np.ndarray:
    """3D radial ("kooshball") trajectory of full-diameter spokes.

    Spoke directions cover the half sphere: golden means (Chan et al. 2009),
    ``cos(polar) = frac(i g1)`` and ``azimuth = 2 pi frac(i g2)``, or with ``golden=False``
    a Fibonacci lattice on the half sphere, ``cos(polar) = (i + 0.5) / nspokes`` and
    ``azimuth = 2 i GOLDEN_ANGLE`` (even coverage for the full set only).

    Returns
    -------
    (nspokes, nsamples, 3) float32
        ``(kz, ky, kx)`` in grid units; sample ``nsamples // 2`` is ``k = 0``.
    """
    i = np.arange(_check("nspokes", nspokes))
    if golden:
        cos_polar = np.mod(i * _GOLDEN_MEANS_3D[0], 1.0)
        azimuth = 2 * np.pi * np.mod(i * _GOLDEN_MEANS_3D[1], 1.0)
    else:
        cos_polar = (i + 0.5) / nspokes
        azimuth = np.mod(2 * i * GOLDEN_ANGLE, 2 * np.pi)
    sin_polar = np.sqrt(1 - cos_polar**2)
    direction = np.stack(
        [cos_polar, sin_polar * np.sin(azimuth), sin_polar * np.cos(azimuth)], axis=-1
    )
    r = _radii(nsamples, n)
    return (r[None, :, None] * direction[:, None, :]).astype(np.float32)
