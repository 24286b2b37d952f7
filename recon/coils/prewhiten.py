"""Noise prewhitening: coil noise covariance, whitening matrix, application.

The receiver noise of the coils is correlated. From noise-only readouts ``n`` (coils x
samples) the covariance is ``Psi = (1/N) sum n n^H`` *without* mean subtraction (the noise
has zero mean; subtracting the sample mean would remove a real DC offset of the receivers
from the estimate, BART's ``whiten`` argues the same). With ``L L^H = Psi`` (Cholesky), the
whitening matrix is ``W = L^-1``: ``W n`` has identity covariance.

Noise readouts are usually sampled with another dwell time than the imaging readouts, and
the noise variance per sample grows with the sampling bandwidth ``1 / dwell``. A noise
scan also sees the roll-off of the receiver's anti-aliasing filter over its whole band,
whereas the image noise comes from the flat pass band: the measured variance is the
pass-band variance times the *relative receiver noise bandwidth* ``b`` (Siemens 0.793;
Kellman & McVeigh, MRM 2005;54:1439). The covariance of a readout sampled with dwell time
``t`` is therefore::

    Psi(t) = Psi_noise * (t_noise / t) / b

which is what Gadgetron's NoiseAdjustGadget applies to its whitening matrix (its scale
``sqrt(2 t / t_noise * b)`` also holds the factor 2 of Kellman's SNR units, which we leave
to :func:`recon.coils.combine` instead). Whitening the noise readouts themselves with the
same rule gives them covariance ``b * I``, so prewhitening an already whitened file is the
identity (up to the estimation error).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from recon.backend import array_module, to_host
from recon.errors import InputError

#: Siemens' relative receiver noise bandwidth, used when the header does not state one.
DEFAULT_NOISE_BANDWIDTH = 0.793


class NoiseWarning(UserWarning):
    """Prewhitening was skipped or its estimate is poorly conditioned."""


def noise_covariance(noise: Any, *, coil_axis: int = 0) -> Any:
    """Sample covariance ``Psi = (1/N) n n^H`` of noise samples (no mean subtraction).

    Parameters
    ----------
    noise : array, complex, shape ``(ncoils, ...)`` with the coils at ``coil_axis``
        Noise-only samples (any number of readouts and samples per readout).
    coil_axis : int
        The coil axis of ``noise``.

    Returns
    -------
    array, complex128, shape ``(ncoils, ncoils)``
        Hermitian covariance, same array module as ``noise``; ``Psi[i, j] = E[n_i conj(n_j)]``.
    """
    xp = array_module(noise)
    n = xp.moveaxis(xp.asarray(noise), coil_axis, 0)
    n = n.reshape(n.shape[0], -1).astype(xp.complex128)
    if n.shape[1] == 0:
        raise InputError("noise covariance: no noise samples")
    psi = (n @ n.conj().T) / n.shape[1]
    return 0.5 * (psi + psi.conj().T)


def scale_covariance(
    psi: Any,
    *,
    noise_dwell_us: float | None,
    imaging_dwell_us: float | None,
    bandwidth: float | None = DEFAULT_NOISE_BANDWIDTH,
) -> Any:
    """Covariance at dwell ``imaging_dwell_us`` from one measured at ``noise_dwell_us``.

    Returns ``psi * (noise_dwell_us / imaging_dwell_us) / bandwidth`` (module docstring). A
    missing or zero dwell time leaves the dwell ratio at 1 (Gadgetron does the same);
    ``bandwidth=None`` means 1.
    """
    ratio = 1.0
    if noise_dwell_us and imaging_dwell_us:
        ratio = float(noise_dwell_us) / float(imaging_dwell_us)
    b = 1.0 if bandwidth is None else float(bandwidth)
    if b <= 0:
        raise InputError(f"receiver noise bandwidth must be positive, got {b}")
    return psi * (ratio / b)


def whitening_matrix(psi: Any) -> Any:
    """``W = L^-1`` with ``L L^H = psi`` (lower Cholesky factor), so ``W psi W^H = I``.

    Parameters
    ----------
    psi : array, complex, shape ``(ncoils, ncoils)``
        Hermitian positive definite noise covariance.

    Returns
    -------
    array, complex64, shape ``(ncoils, ncoils)``, lower triangular
        Same array module as ``psi``.
    """
    xp = array_module(psi)
    psi = xp.asarray(psi, dtype=xp.complex128)
    try:
        chol = xp.linalg.cholesky(0.5 * (psi + psi.conj().T))
    except Exception as error:  # numpy LinAlgError, cupy returns NaN or raises
        raise InputError(f"noise covariance is not positive definite: {error}") from None
    if not bool(xp.all(xp.isfinite(chol))):
        raise InputError("noise covariance is not positive definite (Cholesky failed)")
    eye = xp.eye(psi.shape[0], dtype=xp.complex128)
    w = _solve_lower(xp, chol, eye)
    return w.astype(xp.complex64)


def _solve_lower(xp: Any, chol: Any, rhs: Any) -> Any:
    if xp is np:
        import scipy.linalg

        return scipy.linalg.solve_triangular(chol, rhs, lower=True)
    import cupyx.scipy.linalg

    return cupyx.scipy.linalg.solve_triangular(chol, rhs, lower=True)


def prewhiten(data: Any, w: Any, *, coil_axis: int = 0) -> Any:
    """Apply the whitening matrix along the coil axis: ``out[i] = sum_j W[i, j] data[j]``.

    Parameters
    ----------
    data : array, complex, coils at ``coil_axis`` (e.g. ``(ncoils, nz, ny, nx)`` k-space or
        ``(nreadouts, ncoils, nsamples)`` readouts with ``coil_axis=1``)
    w : array, shape ``(ncoils, ncoils)``
        From :func:`whitening_matrix` (or any coil-mixing matrix).
    coil_axis : int

    Returns
    -------
    array, same shape and array module as ``data``, complex64 unless ``data`` is complex128.
    """
    xp = array_module(data)
    dtype = xp.complex128 if data.dtype == xp.complex128 else xp.complex64
    moved = xp.moveaxis(data, coil_axis, -1)
    out = moved @ xp.asarray(w, dtype=dtype).T
    return xp.moveaxis(out, -1, coil_axis).astype(dtype, copy=False)


def correlation_matrix(psi: Any) -> np.ndarray:
    """``C[i, j] = Psi[i, j] / sqrt(Psi[i, i] Psi[j, j])`` as a complex NumPy array."""
    psi = to_host(psi).astype(np.complex128)
    d = np.sqrt(np.clip(np.real(np.diag(psi)), np.finfo(float).tiny, None))
    return psi / np.outer(d, d)


@dataclass
class NoiseReport:
    """What prewhitening found, for logs and the JSON/PNG report.

    Attributes
    ----------
    covariance : (ncoils, ncoils) complex128
        Measured covariance of the noise samples (at their own dwell time, not scaled).
    nsamples : int
        Number of noise samples per coil it was estimated from.
    noise_dwell_us, bandwidth : float or None
        Dwell time of the noise samples and the relative receiver noise bandwidth used.
    source : str
        Where the noise came from (file name and kind).
    """

    covariance: np.ndarray
    nsamples: int
    noise_dwell_us: float | None
    bandwidth: float
    source: str

    @property
    def correlation(self) -> np.ndarray:
        """Complex correlation coefficients (:func:`correlation_matrix`)."""
        return correlation_matrix(self.covariance)

    def summary(self) -> dict[str, Any]:
        """Scalars for a log line: max/mean off-diagonal |correlation|, condition number."""
        corr = np.abs(self.correlation)
        off = corr[~np.eye(len(corr), dtype=bool)]
        eig = np.linalg.eigvalsh(self.covariance)
        return {
            "ncoils": len(corr),
            "nsamples": self.nsamples,
            "noise_dwell_us": self.noise_dwell_us,
            "bandwidth": self.bandwidth,
            "max_offdiag_correlation": float(off.max()) if off.size else 0.0,
            "mean_offdiag_correlation": float(off.mean()) if off.size else 0.0,
            "condition_number": float(eig[-1] / max(eig[0], np.finfo(float).tiny)),
            "source": self.source,
        }

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable report: summary, covariance and correlation (real/imag lists)."""
        corr = self.correlation
        return {
            **self.summary(),
            "covariance_real": self.covariance.real.tolist(),
            "covariance_imag": self.covariance.imag.tolist(),
            "correlation_abs": np.abs(corr).tolist(),
            "correlation_real": corr.real.tolist(),
            "correlation_imag": corr.imag.tolist(),
        }

    def plot(self, path: Any, coil_names: list[str] | None = None) -> None:
        """Write a PNG of |correlation| (left) and the coil noise levels (right)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        corr = np.abs(self.correlation)
        n = len(corr)
        fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4.2))
        im = ax0.imshow(corr, vmin=0, vmax=1, cmap="viridis")
        ax0.set_title(f"|noise correlation| ({n} coils, {self.nsamples} samples)")
        ax0.set_xlabel("coil")
        ax0.set_ylabel("coil")
        fig.colorbar(im, ax=ax0, fraction=0.046)
        ax1.bar(np.arange(n), np.sqrt(np.real(np.diag(self.covariance))))
        ax1.set_title("noise standard deviation per coil")
        ax1.set_xlabel("coil")
        if coil_names and len(coil_names) == n and n <= 32:
            ax1.set_xticks(np.arange(n), coil_names, rotation=90, fontsize=6)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


def warn_no_noise(source: str) -> None:
    """Warn that prewhitening is skipped because ``source`` holds no noise samples."""
    warnings.warn(
        f"{source}: no noise readouts; prewhitening skipped (data left as acquired)",
        NoiseWarning,
        stacklevel=3,
    )
