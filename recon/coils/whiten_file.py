"""Prewhiten a whole ISMRMRD file: every readout, noise readouts included.

The output is a copy of the input (XML header, acquisition headers, trajectories,
waveforms and any other group untouched) in which the samples of every readout are
multiplied by *one* whitening matrix ``W``, computed for the dwell time of the imaging
readouts (:mod:`recon.coils.prewhiten`). One linear coil transform for all readouts keeps
the file physically consistent: the noise readouts keep their relation to the imaging
readouts, so a tool that estimates the covariance from them again (with the dwell-time and
bandwidth scaling) finds the identity, and prewhitening the output again changes nothing.

The noise comes from, in this order: a covariance file (``.npy``/``.npz``), a separate
ISMRMRD noise scan (its noise readouts, or all its readouts when none is flagged as
noise), or the noise readouts of the input file itself. Without any, the file is copied
unchanged with a :class:`~recon.coils.prewhiten.NoiseWarning`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from recon.coils.prewhiten import (
    DEFAULT_NOISE_BANDWIDTH,
    NoiseReport,
    noise_covariance,
    scale_covariance,
    warn_no_noise,
    whitening_matrix,
)
from recon.coils.rawfile import rewrite_readouts
from recon.errors import InputError
from recon.io.atomic import atomic_path
from recon.io.flags import ReadoutKind
from recon.io.ismrmrd import RawData, read_dataset


def header_bandwidth(raw: RawData) -> float:
    """Relative receiver noise bandwidth of ``raw``'s header, else 0.793 (Siemens)."""
    value = raw.header.relative_noise_bandwidth
    if value is None:
        value = raw.header.user_parameters.get("relativeReceiverNoiseBandwidth")
    return float(value) if value else DEFAULT_NOISE_BANDWIDTH


def imaging_dwell_us(raw: RawData) -> float | None:
    """Median ``sample_time_us`` of the usable non-noise readouts (None if there are none)."""
    rows = np.flatnonzero(raw.usable & (raw.kinds != int(ReadoutKind.NOISE)))
    if rows.size == 0:
        return None
    return float(np.median(raw.head.sample_time_us[rows]))


def _noise_from_raw(raw: RawData, *, all_if_unflagged: bool) -> tuple[Any, float, int] | None:
    rows = raw.select(ReadoutKind.NOISE)
    if rows.size == 0 and all_if_unflagged:
        rows = np.flatnonzero(raw.usable)
    if rows.size == 0:
        return None
    psi_sum, count = 0, 0
    for _, block, _ in raw.iter_blocks(rows):
        samples = block.transpose(1, 0, 2).reshape(block.shape[1], -1)
        psi_sum = psi_sum + noise_covariance(samples) * samples.shape[1]
        count += samples.shape[1]
    dwell = float(np.median(raw.head.sample_time_us[rows]))
    return psi_sum / count, dwell, count


def load_noise(source: str | Path) -> tuple[np.ndarray, float | None, int, float | None]:
    """Noise covariance from another file.

    Parameters
    ----------
    source : path
        ``.npy`` (covariance only), ``.npz`` (keys ``covariance`` and optionally
        ``noise_dwell_us``, ``nsamples``, ``bandwidth``) or an ISMRMRD noise scan.

    Returns
    -------
    covariance (ncoils, ncoils) complex128, noise dwell time (us) or None, number of samples
    (0 when unknown), bandwidth stated by the source or None.
    """
    path = Path(source)
    if path.suffix in (".npy", ".npz"):
        try:
            loaded = np.load(path)
        except (OSError, ValueError) as error:
            raise InputError(f"{path}: cannot read noise covariance: {error}") from None
        if path.suffix == ".npy":
            psi, dwell, count, bw = loaded, None, 0, None
        else:
            if "covariance" not in loaded:
                raise InputError(f"{path}: no 'covariance' array in the .npz file")
            psi = loaded["covariance"]
            dwell = float(loaded["noise_dwell_us"]) if "noise_dwell_us" in loaded else None
            count = int(loaded["nsamples"]) if "nsamples" in loaded else 0
            bw = float(loaded["bandwidth"]) if "bandwidth" in loaded else None
        psi = np.asarray(psi, dtype=np.complex128)
        if psi.ndim != 2 or psi.shape[0] != psi.shape[1]:
            raise InputError(f"{path}: noise covariance must be square, got shape {psi.shape}")
        return psi, dwell, count, bw
    raw = read_dataset(path)
    found = _noise_from_raw(raw, all_if_unflagged=True)
    if found is None:
        raise InputError(f"{path}: no readouts to estimate the noise covariance from")
    psi, dwell, count = found
    return psi, dwell, count, header_bandwidth(raw)


def prewhiten_file(
    src: str | Path,
    dst: str | Path,
    *,
    noise: str | Path | None = None,
    bandwidth: float | None = None,
    group: str = "dataset",
) -> tuple[NoiseReport | None, np.ndarray | None]:
    """Write ``dst``: ``src`` with every readout whitened.

    Parameters
    ----------
    src, dst : path
        Input ISMRMRD file and output path (written under a temporary name, then renamed).
    noise : path, optional
        Covariance or separate noise scan (:func:`load_noise`); default: the noise readouts
        of ``src``.
    bandwidth : float, optional
        Relative receiver noise bandwidth; default: from the noise source's or ``src``'s
        header, else 0.793.
    group : str
        HDF5 group of the dataset.

    Returns
    -------
    report : NoiseReport or None
        None when no noise was found (the file is copied unchanged, with a warning).
    w : (ncoils, ncoils) complex64 or None
        The whitening matrix applied.
    """
    src, dst = Path(src), Path(dst)
    raw = read_dataset(src, group=group)
    if noise is not None:
        psi, noise_dwell, count, bw_source = load_noise(noise)
        origin = f"{Path(noise).name}"
    else:
        found = _noise_from_raw(raw, all_if_unflagged=False)
        psi, noise_dwell, count, bw_source = (*found, None) if found else (None, None, 0, None)
        origin = f"{src.name} (noise readouts)"
    bw = bandwidth if bandwidth is not None else (bw_source or header_bandwidth(raw))
    if psi is None:
        warn_no_noise(str(src))
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        return None, None
    ncoils = int(raw.head.active_channels[raw.usable][0]) if raw.usable.any() else psi.shape[0]
    if psi.shape[0] != ncoils:
        raise InputError(
            f"{origin}: noise covariance is {psi.shape[0]}x{psi.shape[0]} but {src.name} "
            f"has {ncoils} channels"
        )
    psi_img = scale_covariance(
        psi, noise_dwell_us=noise_dwell, imaging_dwell_us=imaging_dwell_us(raw), bandwidth=bw
    )
    w = whitening_matrix(psi_img)
    rewrite_readouts(src, dst, lambda block: w @ block, raw.usable, ncoils_in=ncoils, group=group)
    report = NoiseReport(np.asarray(psi), count, noise_dwell, float(bw), origin)
    return report, w
