"""Sort readouts into arrays: Cartesian k-space grids, or samples plus trajectory.

Cartesian (:func:`sort_cartesian`)
    Imaging readouts (``IMAGING`` and ``CALIBRATION_AND_IMAGING``) go into
    ``kspace (*batch, ncoils, nz, ny, nx)`` with the batch axes :data:`BATCH_AXES`
    (``average`` only when averages are kept). A readout lands at

    - row ``y = e1 - centre(e1) + ny // 2`` and partition ``z = e2 - centre(e2) + nz // 2``,
      with the centres from the header's encoding limits (``N // 2`` when absent), so the
      k-space centre is at index ``N // 2`` (the centred-FFT convention) and partial Fourier
      lines land where they belong;
    - columns ``x = s - (center_sample - discard_pre) + nx // 2`` for sample ``s`` after the
      ``discard_pre``/``discard_post`` samples are dropped, so asymmetric echoes are placed
      by their centre sample (a ``center_sample`` of 0 means "not stated": the readout is
      taken as centred).

    ``nx, ny, nz`` are the encoded matrix. Reverse-flagged readouts are flipped along the
    readout first. Lines acquired more than once at the same place are averaged. Calibration
    readouts (``CALIBRATION`` and ``CALIBRATION_AND_IMAGING``) are placed the same way into
    ``calib (*batch, ncoils, cz, cy, nx)``, the bounding box ``calib_region`` of all
    calibration lines. Readout oversampling (encoded FOV x > recon FOV x) is removed on
    request by cropping the centre of the readout in image space.

    Counters are checked: one that falls outside the encoded matrix raises
    :class:`~recon.errors.InputError`; one outside the header's encoding limits but inside
    the matrix gives a :class:`SortWarning`.

Non-Cartesian (:func:`sort_noncartesian`)
    Samples ``(*batch, ncoils, nreadouts, nsamples)`` and ``coord (*batch, nreadouts,
    nsamples, ndim)`` in grid units in ``[-N/2, N/2)`` with ``coord[..., -1]`` pairing with
    ``x`` (SigPy's convention, DESIGN.md); see :func:`trajectory_to_grid` for how the file's
    convention is recognised and scaled.

Memory: each function allocates its output once and fills it block by block
(:meth:`RawData.iter_blocks`); ``slices=`` (and ``repetitions=``) restrict what is read, and
:func:`iter_cartesian` yields one slice at a time for files larger than memory.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from recon.errors import InputError
from recon.geometry import Geometry, geometry_from_header, stack_slices
from recon.io.flags import REVERSE, ReadoutKind, has_flag
from recon.io.header import Encoding
from recon.io.ismrmrd import BLOCK_BYTES, RawData

#: Batch axes of sorted data, outermost first (``average`` only when averages are kept).
BATCH_AXES = ("slice", "contrast", "phase", "repetition", "set", "average")

IMAGING_KINDS = (ReadoutKind.IMAGING, ReadoutKind.CALIBRATION_AND_IMAGING)
CALIBRATION_KINDS = (ReadoutKind.CALIBRATION, ReadoutKind.CALIBRATION_AND_IMAGING)


class SortWarning(UserWarning):
    """A readout counter outside the header's limits, or other recoverable oddities."""


@dataclass
class NoiseData:
    """Noise-only readouts.

    Attributes
    ----------
    samples : (ncoils, nsamples) complex64
        All noise samples of the file, readouts concatenated.
    dwell_time_us : float
        Their sample spacing (``sample_time_us``), microseconds.
    relative_bandwidth : float or None
        ``relativeReceiverNoiseBandwidth`` from the header (Siemens 0.793), if stated.
    """

    samples: np.ndarray
    dwell_time_us: float
    relative_bandwidth: float | None = None


@dataclass
class CartesianData:
    """Cartesian k-space of one encoding, sorted.

    Attributes
    ----------
    kspace : (*batch, ncoils, nz, ny, nx) complex64
        Imaging readouts on the grid, zeros where not sampled.
    mask : (*batch, nz, ny) bool
        Which lines of ``kspace`` were sampled.
    axes : tuple of str
        Names of the batch axes (:data:`BATCH_AXES`, ``average`` only if kept).
    counters : dict of str to (n,) int arrays
        The counter value of each index along each batch axis.
    calib : (*batch, ncoils, cz, cy, nx) complex64 or None
        Calibration lines (both calibration kinds) inside ``calib_region``.
    calib_mask : (*batch, cz, cy) bool or None
        Which lines of ``calib`` were sampled.
    calib_region : (slice, slice) or None
        ``(z, y)`` index ranges of ``calib`` within the k-space grid.
    noise : NoiseData or None
        Noise readouts of the file (all of them, whatever ``slices=`` selects).
    encoding : Encoding
        The header encoding the data belong to.
    acceleration : (R_y, R_z)
        From the header.
    dwell_time_us : float
        Sample spacing of the imaging readouts as acquired, microseconds (the
        orthonormal oversampling removal leaves the noise per sample unchanged, so this is
        the dwell to compare with the noise dwell when prewhitening).
    oversampling_removed : bool
        True if the readout was cropped to the recon field of view.
    geometry : list of Geometry
        One per index of the ``slice`` axis: the image grid ``(nz, ny, nx)`` in the patient.
    """

    kspace: np.ndarray
    mask: np.ndarray
    axes: tuple[str, ...]
    counters: dict[str, np.ndarray]
    encoding: Encoding
    acceleration: tuple[int, int]
    dwell_time_us: float
    oversampling_removed: bool
    geometry: list[Geometry]
    calib: np.ndarray | None = None
    calib_mask: np.ndarray | None = None
    calib_region: tuple[slice, slice] | None = None
    noise: NoiseData | None = None

    @property
    def ncoils(self) -> int:
        return int(self.kspace.shape[-4])

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid ``(nz, ny, nx)``."""
        return tuple(self.kspace.shape[-3:])

    def stacked_geometry(self) -> Geometry:
        """Geometry of all slices stacked along z (2D multi-slice) or of the single slab."""
        if len(self.geometry) == 1:
            return self.geometry[0]
        return stack_slices(self.geometry)

    def partial_fourier(self) -> tuple[float, float]:
        """Sampled extent of ``(z, y)`` (first to last sampled line) over the matrix size."""
        any_y = self.mask.reshape(-1, *self.mask.shape[-2:]).any(axis=0)
        rows = np.flatnonzero(any_y.any(axis=0))
        parts = np.flatnonzero(any_y.any(axis=1))
        nz, ny = any_y.shape
        fy = (rows[-1] - rows[0] + 1) / ny if rows.size else 0.0
        fz = (parts[-1] - parts[0] + 1) / nz if parts.size else 0.0
        return float(fz), float(fy)


@dataclass
class NonCartesianData:
    """Non-Cartesian samples of one encoding.

    Attributes
    ----------
    samples : (*batch, ncoils, nreadouts, nsamples) complex64
    coord : (*batch, nreadouts, nsamples, ndim) float32
        Grid units in ``[-N/2, N/2)``, ``coord[..., -1]`` along x (readout), then y, z.
    weights : (*batch, nreadouts, nsamples) float32 or None
        Density weights when the file stores them as an extra trajectory dimension.
    axes, counters, encoding, geometry : as in :class:`CartesianData`
    image_shape : tuple
        ``(ny, nx)`` or ``(nz, ny, nx)``: the grid the coordinates refer to.
    convention : str
        How the file's trajectory was recognised (see :func:`trajectory_to_grid`).
    """

    samples: np.ndarray
    coord: np.ndarray
    axes: tuple[str, ...]
    counters: dict[str, np.ndarray]
    encoding: Encoding
    image_shape: tuple[int, ...]
    convention: str
    dwell_time_us: float
    geometry: list[Geometry]
    weights: np.ndarray | None = None
    noise: NoiseData | None = None


# --------------------------------------------------------------------------------------
# shared helpers


def noise_samples(raw: RawData) -> NoiseData | None:
    """All noise readouts of ``raw`` concatenated, or None when there are none."""
    rows = raw.select(ReadoutKind.NOISE)
    if rows.size == 0:
        return None
    parts = [block for _, block, _ in raw.iter_blocks(rows)]
    samples = np.concatenate([p.transpose(1, 0, 2).reshape(p.shape[1], -1) for p in parts], 1)
    dwell = float(np.median(raw.head.sample_time_us[rows]))
    return NoiseData(samples, dwell, raw.header.relative_noise_bandwidth)


def _encoding(raw: RawData, index: int) -> Encoding:
    if not 0 <= index < len(raw.header.encodings):
        raise InputError(
            f"{raw.path}: encoding {index} requested, the header has {len(raw.header.encodings)}"
        )
    return raw.header.encodings[index]


def _selected(
    raw: RawData,
    kinds: Sequence[ReadoutKind],
    encoding: int,
    slices: Sequence[int] | None,
    repetitions: Sequence[int] | None,
) -> np.ndarray:
    rows = raw.select(*kinds, encoding=encoding)
    if slices is not None:
        rows = rows[np.isin(raw.head.slice[rows], np.asarray(slices))]
    if repetitions is not None:
        rows = rows[np.isin(raw.head.repetition[rows], np.asarray(repetitions))]
    return rows


def _batch_index(
    raw: RawData, rows: np.ndarray, axes: Sequence[str], counters: dict[str, np.ndarray]
) -> tuple[np.ndarray, tuple[int, ...]]:
    """Flat batch index of every row, and the batch shape."""
    shape = tuple(len(counters[a]) for a in axes)
    if not axes:
        return np.zeros(len(rows), dtype=np.int64), shape
    positions = []
    for axis in axes:
        values = getattr(raw.head, axis)[rows].astype(np.int64)
        positions.append(np.searchsorted(counters[axis], values))
    return np.ravel_multi_index(positions, shape), shape


def _batch_counters(
    raw: RawData, rows: np.ndarray, axes: Sequence[str], encoding: Encoding
) -> dict[str, np.ndarray]:
    """The distinct counter values along each batch axis (checked against the limits)."""
    counters = {}
    for axis in axes:
        values = getattr(raw.head, axis)[rows].astype(np.int64)
        limit = encoding.limit(axis)
        if limit is not None and values.size:
            outside = (values < limit.minimum) | (values > limit.maximum)
            if outside.any():
                warnings.warn(
                    f"{raw.path}: {int(outside.sum())} readout(s) have {axis} counter "
                    f"outside the encoding limits {limit.minimum}..{limit.maximum} "
                    f"(e.g. {int(values[outside][0])}); they are kept",
                    SortWarning,
                    stacklevel=3,
                )
        counters[axis] = np.unique(values) if values.size else np.zeros(1, dtype=np.int64)
    return counters


def _grid_positions(
    raw: RawData, rows: np.ndarray, counter: str, limit_name: str, encoding: Encoding, n: int
) -> np.ndarray:
    """Grid index along y or z of each row (centre of the limits at ``n // 2``)."""
    values = getattr(raw.head, counter)[rows].astype(np.int64)
    limit = encoding.limit(limit_name)
    centre = n // 2 if limit is None else limit.center
    index = values - centre + n // 2
    bad = (index < 0) | (index >= n)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{raw.path}: readout {rows[i]} has {counter} = {values[i]}, outside the encoded "
            f"matrix of {n} (centre {centre})"
        )
    if limit is not None:
        outside = (values < limit.minimum) | (values > limit.maximum)
        if outside.any():
            warnings.warn(
                f"{raw.path}: {int(outside.sum())} readout(s) have {counter} outside the "
                f"encoding limits {limit.minimum}..{limit.maximum}; placed anyway",
                SortWarning,
                stacklevel=3,
            )
    return index


def _column_offsets(raw: RawData, rows: np.ndarray, nx: int) -> np.ndarray:
    """First grid column of each readout after discarding samples."""
    head = raw.head
    ns = head.number_of_samples[rows].astype(np.int64)
    pre = head.discard_pre[rows].astype(np.int64)
    post = head.discard_post[rows].astype(np.int64)
    stated = head.center_sample[rows].astype(np.int64)
    kept = ns - pre - post
    # center_sample 0 means "not stated": the readout is taken as centred.
    centre = np.where(stated > 0, stated - pre, kept // 2)
    start = nx // 2 - centre
    bad = (start < 0) | (start + kept > nx)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{raw.path}: readout {rows[i]} with {kept[i]} samples centred at {centre[i]} does "
            f"not fit the encoded readout matrix of {nx}"
        )
    return start


def _slice_geometry(
    raw: RawData, rows: np.ndarray, encoding: Encoding, shape: tuple[int, int, int], fov_x: float
) -> Geometry:
    head = raw.head
    first = rows[0]
    return geometry_from_header(
        shape,
        (fov_x, encoding.encoded_fov_mm[1], encoding.encoded_fov_mm[2]),
        head.position[first],
        head.read_dir[first],
        head.phase_dir[first],
        head.slice_dir[first],
        head.patient_table_position[first],
    )


def _take(array: np.ndarray, select: np.ndarray) -> np.ndarray:
    """``array[select]`` along the first axis, without a copy when everything is selected."""
    return array if select.all() else array[select]


def _block_budget(block_bytes: int, output_bytes: int) -> int:
    """Bytes read per block: at most 1/16 of the output (>= 256 KiB), so reading needs
    about 1.15x the output (a block of samples and HDF5's copy of it) rather than 2x."""
    return int(min(block_bytes, max(2**18, output_bytes // 16)))


class _Grid:
    """Accumulates readouts into ``target (nbatch, nc, nz, ny, nx)`` with line counts."""

    def __init__(self, target: np.ndarray, z0: int = 0, y0: int = 0) -> None:
        self.target, self.z0, self.y0 = target, z0, y0
        self.counts = np.zeros((target.shape[0], *target.shape[2:4]), dtype=np.int32)

    def add(
        self, b: np.ndarray, z: np.ndarray, y: np.ndarray, x0: np.ndarray, data: np.ndarray
    ) -> None:
        z = z - self.z0
        y = y - self.y0
        ns = data.shape[-1]
        # Fancy-index += is buffered: split into rounds without repeated (b, z, y).
        key = (b * self.counts.shape[1] + z) * self.counts.shape[2] + y
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        first = np.r_[True, sorted_key[1:] != sorted_key[:-1]]
        rank = np.empty_like(order)
        group_start = np.maximum.accumulate(np.where(first, np.arange(len(key)), 0))
        rank[order] = np.arange(len(key)) - group_start
        for r in range(int(rank.max()) + 1 if len(rank) else 0):
            in_round = rank == r
            for start in np.unique(x0[in_round]):
                sel = np.flatnonzero(in_round & (x0 == start))
                # Small pieces: fancy-index += makes a temporary copy of what it updates.
                for part in np.array_split(sel, max(1, len(sel) // 16)):
                    bp, zp, yp = b[part], z[part], y[part]
                    self.target[bp, :, zp, yp, start : start + ns] += data[part]
                    self.counts[bp, zp, yp] += 1

    def finish(self) -> np.ndarray:
        """Average repeated lines; returns the sampling mask ``(nbatch, nz, ny)``."""
        repeated = self.counts > 1
        if repeated.any():
            scale = np.ones(self.counts.shape, dtype=np.float32)
            scale[repeated] = 1.0 / self.counts[repeated]
            self.target *= scale[:, None, :, :, None]
        return self.counts > 0


def _remove_oversampling(data: np.ndarray, nx_out: int) -> np.ndarray:
    """Crop the readout (last axis) of k-space lines to its central ``nx_out`` in image space.

    Orthonormal transforms both ways, so the image of the result is exactly the central
    part of the image of ``data`` and the noise variance per sample is unchanged (as in
    Gadgetron's readout-oversampling removal).
    """
    import scipy.fft

    n = data.shape[-1]
    image = scipy.fft.fftshift(
        scipy.fft.ifft(scipy.fft.ifftshift(data, axes=-1), axis=-1, norm="ortho"), axes=-1
    )
    start = n // 2 - nx_out // 2
    image = image[..., start : start + nx_out]
    out = scipy.fft.fftshift(
        scipy.fft.fft(scipy.fft.ifftshift(image, axes=-1), axis=-1, norm="ortho"), axes=-1
    )
    return out.astype(np.complex64, copy=False)


# --------------------------------------------------------------------------------------
# Cartesian


def sort_cartesian(
    raw: RawData,
    *,
    encoding: int = 0,
    slices: Sequence[int] | None = None,
    repetitions: Sequence[int] | None = None,
    average: str = "mean",
    remove_oversampling: bool = False,
    with_noise: bool = True,
    block_bytes: int = BLOCK_BYTES,
) -> CartesianData:
    """Sort the Cartesian readouts of one encoding into k-space arrays.

    Parameters
    ----------
    raw : RawData
        From :func:`recon.io.ismrmrd.read_dataset`.
    encoding : int
        Which ``<encoding>`` (readouts with that ``encoding_space_ref``).
    slices, repetitions : sequences of int, optional
        Read only these slice / repetition counters (memory: only they are loaded).
    average : {"mean", "keep"}
        Average repeated acquisitions (``average`` counter) or keep them on a batch axis.
    remove_oversampling : bool
        Crop the readout to the recon field of view (when encoded FOV x > recon FOV x).
    with_noise : bool
        Also collect the noise readouts.
    block_bytes : int
        Budget of one block of samples read at once.

    Returns
    -------
    CartesianData
    """
    if average not in ("mean", "keep"):
        raise InputError(f"average must be 'mean' or 'keep', not {average!r}")
    enc = _encoding(raw, encoding)
    imaging = _selected(raw, IMAGING_KINDS, encoding, slices, repetitions)
    calibration = _selected(raw, CALIBRATION_KINDS, encoding, slices, repetitions)
    if imaging.size == 0:
        raise InputError(
            f"{raw.path}: no imaging readouts"
            + ("" if slices is None and repetitions is None else " in the selected slices")
        )
    axes = BATCH_AXES if average == "keep" else BATCH_AXES[:-1]
    both = np.union1d(imaging, calibration)
    counters = _batch_counters(raw, both, axes, enc)
    nx_enc, ny, nz = enc.encoded_matrix
    ratio = enc.readout_oversampling
    nx = nx_enc
    if remove_oversampling and ratio > 1.0 + 1e-6:
        nx = round(nx_enc / ratio)
    nc = int(raw.head.active_channels[imaging[0]])

    batch_shape = tuple(len(counters[a]) for a in axes)
    nbatch = int(np.prod(batch_shape))
    kspace = np.zeros((nbatch, nc, nz, ny, nx), dtype=np.complex64)
    block_bytes = _block_budget(block_bytes, kspace.nbytes)
    grid = _Grid(kspace)

    is_imaging = np.isin(raw.kinds, [int(k) for k in IMAGING_KINDS])
    is_calib = np.isin(raw.kinds, [int(k) for k in CALIBRATION_KINDS])
    x_start = np.zeros(len(raw), dtype=np.int64)
    x_start[both] = _column_offsets(raw, both, nx_enc)
    y_all = np.zeros(len(raw), dtype=np.int64)
    z_all = np.zeros(len(raw), dtype=np.int64)
    y_all[both] = _grid_positions(
        raw, both, "kspace_encode_step_1", "kspace_encoding_step_1", enc, ny
    )
    z_all[both] = _grid_positions(
        raw, both, "kspace_encode_step_2", "kspace_encoding_step_2", enc, nz
    )

    calib = calib_grid = None
    region = None
    if calibration.size:
        cy, cz = y_all[calibration], z_all[calibration]
        region = (slice(int(cz.min()), int(cz.max()) + 1), slice(int(cy.min()), int(cy.max()) + 1))
        calib = np.zeros(
            (nbatch, nc, region[0].stop - region[0].start, region[1].stop - region[1].start, nx),
            dtype=np.complex64,
        )
        calib_grid = _Grid(calib, region[0].start, region[1].start)

    b_all = np.zeros(len(raw), dtype=np.int64)
    b_all[both], _ = _batch_index(raw, both, axes, counters)
    reverse = has_flag(raw.head.flags, REVERSE)

    for rows, block, _ in raw.iter_blocks(both, block_bytes=block_bytes):
        pre = raw.head.discard_pre[rows]
        post = raw.head.discard_post[rows]
        for p, q in sorted({(int(a), int(b)) for a, b in zip(pre, post, strict=True)}):
            same = (pre == p) & (post == q)
            sub = rows[same]
            data = _take(block, same)[..., p : block.shape[-1] - q]
            flip = reverse[sub]
            if flip.any():
                data[flip] = data[flip, :, ::-1]
            starts = x_start[sub]
            if nx != nx_enc:
                # Place on a full-length readout first, then crop in image space.
                full = np.zeros((len(sub), nc, nx_enc), dtype=np.complex64)
                for start in np.unique(starts):
                    sel = starts == start
                    full[sel, :, start : start + data.shape[-1]] = data[sel]
                data = _remove_oversampling(full, nx)
                starts = np.zeros(len(sub), dtype=np.int64)
            img = is_imaging[sub]
            if img.any():
                grid.add(b_all[sub[img]], z_all[sub[img]], y_all[sub[img]], starts[img],
                         _take(data, img))  # fmt: skip
            cal = is_calib[sub]
            if calib_grid is not None and cal.any():
                calib_grid.add(b_all[sub[cal]], z_all[sub[cal]], y_all[sub[cal]], starts[cal],
                               _take(data, cal))  # fmt: skip
            del data
        del block

    mask = grid.finish().reshape(*batch_shape, nz, ny)
    calib_mask = None
    if calib_grid is not None:
        calib_mask = calib_grid.finish().reshape(*batch_shape, *calib.shape[2:4])
        calib = calib.reshape(*batch_shape, *calib.shape[1:])

    fov_x = enc.encoded_fov_mm[0] * nx / nx_enc
    geometry = []
    for value in counters["slice"]:
        slice_rows = imaging[raw.head.slice[imaging] == value]
        geometry.append(_slice_geometry(raw, slice_rows, enc, (nz, ny, nx), fov_x))
    dwell = float(np.median(raw.head.sample_time_us[imaging]))
    return CartesianData(
        kspace=kspace.reshape(*batch_shape, nc, nz, ny, nx),
        mask=mask,
        axes=tuple(axes),
        counters=counters,
        encoding=enc,
        acceleration=enc.acceleration,
        dwell_time_us=dwell,
        oversampling_removed=nx != nx_enc,
        geometry=geometry,
        calib=calib,
        calib_mask=calib_mask,
        calib_region=region,
        noise=noise_samples(raw) if with_noise else None,
    )


def iter_cartesian(raw: RawData, *, by: str = "slice", **options) -> Iterator[CartesianData]:
    """Sort one slice (``by="slice"``) or one repetition at a time (files larger than memory).

    ``options`` are passed to :func:`sort_cartesian`; the noise readouts are collected once
    and attached to every part.
    """
    if by not in ("slice", "repetition"):
        raise InputError(f"iter_cartesian: by must be 'slice' or 'repetition', not {by!r}")
    encoding = options.get("encoding", 0)
    rows = raw.select(*IMAGING_KINDS, encoding=encoding)
    noise = noise_samples(raw) if options.pop("with_noise", True) else None
    key = "slices" if by == "slice" else "repetitions"
    for value in np.unique(getattr(raw.head, by)[rows]):
        # No local reference to the part: the caller may drop it before asking for the next.
        yield _attach_noise(
            sort_cartesian(raw, with_noise=False, **{key: [int(value)]}, **options), noise
        )


def _attach_noise(part: CartesianData, noise: NoiseData | None) -> CartesianData:
    part.noise = noise
    return part


# --------------------------------------------------------------------------------------
# non-Cartesian

#: Trajectory conventions recognised by :func:`trajectory_to_grid`: name -> per-axis scale
#: as a function of (matrix size N, field of view in mm).
CONVENTIONS = {
    "grid": lambda n, fov: 1.0,
    "normalized": lambda n, fov: float(n),
    "radians": lambda n, fov: n / (2 * np.pi),
    "cycles_per_m": lambda n, fov: fov / 1000.0,
    "rad_per_m": lambda n, fov: fov / (2000.0 * np.pi),
}


def trajectory_to_grid(
    traj: np.ndarray,
    matrix: Sequence[int],
    fov_mm: Sequence[float],
    convention: str | None = None,
) -> tuple[np.ndarray, str]:
    """Convert ISMRMRD trajectory samples to grid units (DESIGN.md convention).

    Parameters
    ----------
    traj : (..., ndim) float
        As stored: ``traj[..., 0]`` is kx (readout), ``[..., 1]`` ky, ``[..., 2]`` kz.
    matrix : sequence of int
        Matrix ``(x, y[, z])`` of the encoded space.
    fov_mm : sequence of float
        Field of view ``(x, y[, z])`` in mm.
    convention : str, optional
        Force one of :data:`CONVENTIONS`; by default it is recognised.

    Returns
    -------
    coord : (..., ndim) float32
        ``(..., [z,] y, x)``: reversed axis order, grid units in ``[-N/2, N/2)``.
    convention : str
        The convention used.

    Notes
    -----
    Files store trajectories in one of these conventions, each recognised by the largest
    ``|k|`` along each axis, ``m_d``, relative to the grid edge ``N_d / 2``: ``grid``
    (already grid units, ``|k| <= N/2``: scale 1), ``normalized`` (cycles per sample,
    ``|k| <= 1/2``: scale ``N``), ``radians`` (``|k| <= pi``: scale ``N / 2 pi``),
    ``cycles_per_m`` (scale ``FOV`` in m) and ``rad_per_m`` (scale ``FOV / 2 pi``). The
    convention chosen is the one whose scaled maximum, over all axes, is closest (in
    log ratio) to ``N_d / 2``, i.e. the one that makes the trajectory just reach the
    edge of the grid (a fully sampled k-space extent). Values equal to ``N/2`` after
    scaling are wrapped to ``-N/2``.
    """
    traj = np.asarray(traj, dtype=np.float32)
    ndim = traj.shape[-1]
    matrix = [int(n) for n in matrix[:ndim]]
    fovs = [float(f) if f > 0 else float(n) for f, n in zip(fov_mm[:ndim], matrix, strict=True)]
    peaks = np.abs(traj.reshape(-1, ndim)).max(axis=0) if traj.size else np.zeros(ndim)
    if convention is None:
        best, best_score = "grid", np.inf
        for name, scale in CONVENTIONS.items():
            ratios = [
                peaks[d] * scale(matrix[d], fovs[d]) / (matrix[d] / 2)
                for d in range(ndim)
                if peaks[d] > 0 and matrix[d] > 1
            ]
            if not ratios:
                continue
            score = abs(np.log(max(ratios)))
            if score < best_score:
                best, best_score = name, score
        convention = best
    if convention not in CONVENTIONS:
        raise InputError(
            f"unknown trajectory convention {convention!r}; use one of {sorted(CONVENTIONS)}"
        )
    scale = np.array([CONVENTIONS[convention](matrix[d], fovs[d]) for d in range(ndim)])
    # float32 throughout (one array the size of the result plus the reversed copy).
    coord = traj * scale.astype(np.float32)
    half = np.array(matrix, dtype=np.float32) / 2
    np.subtract(coord, 2 * half, out=coord, where=coord >= half)
    return np.ascontiguousarray(coord[..., ::-1]), convention


def sort_noncartesian(
    raw: RawData,
    *,
    encoding: int = 0,
    slices: Sequence[int] | None = None,
    repetitions: Sequence[int] | None = None,
    convention: str | None = None,
    with_noise: bool = True,
    block_bytes: int = BLOCK_BYTES,
) -> NonCartesianData:
    """Samples and trajectory of the non-Cartesian imaging readouts of one encoding.

    Readouts are grouped by the batch counters (slice, contrast, phase, repetition, set);
    averages are kept as extra readouts. Every batch must hold the same number of readouts
    of the same length.

    The trajectory comes from the file (``trajectory_dimensions`` > 0), converted by
    :func:`trajectory_to_grid`. For a 2D slice (encoded ``z`` = 1) a third trajectory
    dimension is dropped when it is constant, and used as density ``weights`` otherwise
    (Gadgetron stores spiral density weights there). For a stack of 2D trajectories
    (encoded ``z`` > 1 and 2 trajectory dimensions) ``kz`` is the Cartesian partition
    ``e2 - centre(e2)``.
    """
    enc = _encoding(raw, encoding)
    rows = _selected(raw, IMAGING_KINDS, encoding, slices, repetitions)
    if rows.size == 0:
        raise InputError(f"{raw.path}: no imaging readouts")
    head = raw.head
    tdims = np.unique(head.trajectory_dimensions[rows])
    if tdims.size != 1 or tdims[0] == 0:
        raise InputError(
            f"{raw.path}: non-Cartesian readouts need a stored trajectory "
            f"(trajectory_dimensions = {sorted(int(t) for t in tdims)})"
        )
    nsamples = np.unique(head.number_of_samples[rows])
    if nsamples.size != 1:
        raise InputError(
            f"{raw.path}: imaging readouts differ in length ({sorted(int(n) for n in nsamples)})"
        )
    ns = int(nsamples[0])
    axes = BATCH_AXES[:-1]
    counters = _batch_counters(raw, rows, axes, enc)
    b, batch_shape = _batch_index(raw, rows, axes, counters)
    per_batch = np.bincount(b, minlength=int(np.prod(batch_shape)))
    if (per_batch != per_batch[0]).any():
        raise InputError(
            f"{raw.path}: batches hold different numbers of readouts "
            f"({per_batch.min()}..{per_batch.max()})"
        )
    nread = int(per_batch[0])
    nbatch = len(per_batch)
    nc = int(head.active_channels[rows[0]])
    ndim_file = int(tdims[0])
    samples = np.zeros((nbatch, nc, nread, ns), dtype=np.complex64)
    block_bytes = _block_budget(block_bytes, samples.nbytes)
    traj = np.zeros((nbatch, nread, ns, ndim_file), dtype=np.float32)
    # Position of each readout within its batch, in acquisition order.
    order = np.argsort(b, kind="stable")
    slot = np.empty(len(rows), dtype=np.int64)
    slot[order] = np.arange(len(rows)) - np.repeat(np.cumsum(per_batch) - per_batch, per_batch)
    where = {int(r): i for i, r in enumerate(rows)}
    for block_rows, data, coords in raw.iter_blocks(rows, traj=True, block_bytes=block_bytes):
        i = np.array([where[int(r)] for r in block_rows])
        samples[b[i], :, slot[i], :] = data
        traj[b[i], slot[i]] = coords

    nx, ny, nz = enc.encoded_matrix
    weights = None
    if nz == 1:
        if ndim_file >= 3:
            extra = traj[..., 2]
            if np.ptp(extra) > 0:
                weights = extra.astype(np.float32)
            traj = traj[..., :2]
        matrix, fov = (nx, ny), enc.encoded_fov_mm[:2]
        coord, used = trajectory_to_grid(traj, matrix, fov, convention)
        image_shape: tuple[int, ...] = (ny, nx)
    else:
        matrix, fov = (nx, ny, nz), enc.encoded_fov_mm
        if ndim_file == 2:
            coord2, used = trajectory_to_grid(traj, matrix[:2], fov[:2], convention)
            limit = enc.limit("kspace_encoding_step_2")
            centre = nz // 2 if limit is None else limit.center
            kz = np.zeros((nbatch, nread), dtype=np.float32)
            kz[b, slot] = head.kspace_encode_step_2[rows].astype(np.float32) - centre
            kz = np.broadcast_to(kz[..., None, None], (*coord2.shape[:-1], 1))
            coord = np.concatenate([kz, coord2], axis=-1)
        else:
            coord, used = trajectory_to_grid(traj[..., :3], matrix, fov, convention)
        image_shape = (nz, ny, nx)
    geometry = []
    for value in counters["slice"]:
        slice_rows = rows[head.slice[rows] == value]
        shape3 = image_shape if len(image_shape) == 3 else (1, *image_shape)
        geometry.append(_slice_geometry(raw, slice_rows, enc, shape3, enc.encoded_fov_mm[0]))
    return NonCartesianData(
        samples=samples.reshape(*batch_shape, nc, nread, ns),
        coord=coord.reshape(*batch_shape, nread, ns, coord.shape[-1]),
        axes=tuple(axes),
        counters=counters,
        encoding=enc,
        image_shape=image_shape,
        convention=used,
        dwell_time_us=float(np.median(head.sample_time_us[rows])),
        geometry=geometry,
        weights=None if weights is None else weights.reshape(*batch_shape, nread, ns),
        noise=noise_samples(raw) if with_noise else None,
    )
