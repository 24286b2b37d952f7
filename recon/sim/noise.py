"""Receiver noise: a realistic channel covariance and correlated complex Gaussian noise.

The covariance follows the array geometry of :mod:`recon.sim.coils`: the correlation between
two channels is ``0.05 + 0.15 exp(-(d / L)^2)`` in magnitude, ``d`` the distance between the
loop centres and ``L`` such that nearest neighbours reach about 0.155 (neighbours couple most,
through shared fields and imperfect decoupling), with a random relative phase per channel, and
channel noise levels vary by about +-20 % (seeded). Being ``0.8 I + 0.05 J + 0.15 K`` (``J``
all ones, ``K`` the Gaussian kernel, both positive semi-definite) similar to a diagonal
unitary, the correlation is Hermitian positive definite with off-diagonal magnitudes in
[0.05, 0.2].
"""

from __future__ import annotations

import numpy as np

from recon.sim.coils import coil_layout

_NEIGHBOUR_KERNEL = 0.7  # kernel value between nearest neighbours


def noise_covariance(ncoils: int, *, seed: int = 0) -> np.ndarray:
    """Channel noise covariance of the simulated array.

    Parameters
    ----------
    ncoils : int
        Number of channels.
    seed : int
        Seeds the channel noise levels and phases.

    Returns
    -------
    (ncoils, ncoils) complex128
        Hermitian positive definite; diagonal (variances) with mean 1, correlation
        coefficients ``|Psi_ij| / sqrt(Psi_ii Psi_jj)`` between 0.05 and 0.2 off the diagonal.
    """
    rng = np.random.default_rng(seed)
    centres, _, _ = coil_layout(ncoils)
    distance = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    nearest = distance[~np.eye(ncoils, dtype=bool)].min() if ncoils > 1 else 1.0
    length = nearest / np.sqrt(np.log(1 / _NEIGHBOUR_KERNEL))
    correlation = (
        0.8 * np.eye(ncoils)
        + 0.05 * np.ones((ncoils, ncoils))
        + 0.15 * np.exp(-((distance / length) ** 2))
    )
    phase = np.exp(1j * rng.uniform(-np.pi, np.pi, ncoils))
    correlation = phase[:, None] * correlation * phase.conj()[None, :]
    sigma = rng.uniform(0.8, 1.2, ncoils)
    sigma /= np.sqrt(np.mean(sigma**2))
    covariance = sigma[:, None] * correlation * sigma[None, :]
    return 0.5 * (covariance + covariance.conj().T)


def correlated_noise(
    covariance: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator
) -> np.ndarray:
    """Complex Gaussian noise with channel covariance ``covariance`` along axis 0.

    White circular noise of unit variance (``E|n|^2 = 1``) coloured by the Cholesky factor
    ``L`` of the covariance (``L L^H = covariance``), so ``E[n n^H] = covariance``.

    Parameters
    ----------
    covariance : (ncoils, ncoils) complex
    shape : tuple
        Shape of the samples per channel; the result is ``(ncoils, *shape)``.
    rng : numpy Generator

    Returns
    -------
    (ncoils, *shape) complex64
    """
    ncoils = covariance.shape[0]
    chol = np.linalg.cholesky(covariance)
    size = int(np.prod(shape))
    white = rng.standard_normal((ncoils, size), dtype=np.float32) + 1j * rng.standard_normal(
        (ncoils, size), dtype=np.float32
    )
    white *= np.float32(np.sqrt(0.5))
    return (chol.astype(np.complex64) @ white).reshape(ncoils, *shape)
