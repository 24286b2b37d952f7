"""EPI: ramp-sampling regridding and Nyquist ghost correction from phase-correction navigators.

Readout trajectory
------------------
A trapezoidal readout gradient (ramp up ``ru``, flat top ``ft``, ramp down ``rd``, all in us)
is sampled at ``t_i = acqDelayTime + i dwellTime`` for ``i < numSamples`` (the Siemens
``trajectoryDescription`` of identifier ``ConventionalEPI``, as read by Gadgetron's
EPIReconXGadget). The k-space position is the gradient area ``A(t_i)``, scaled so the samples
span the encoded grid ``[-nx/2, nx/2 - 1]`` (grid units; without ramps ``k_i = i - nx/2``).
A reversed readout (flag 22) runs the same trapezoid with the opposite sign, so after the
sample order is flipped its sample ``j`` sits at ``-k_{n-1-j}`` (one grid unit off the
forward positions even without ramps). Every line is regridded onto the uniform grid with
the exact band-limited interpolator ``F_u F_k^+`` (``F_k`` the readout DFT at the sampled
positions, ``F_u`` at the grid; the object is confined to the readout FOV), the
least-squares sinc interpolation of Gadgetron's EPIReconXObjectTrapezoid.

Nyquist ghost
-------------
Odd and even echoes see different eddy currents and timing: in the hybrid space (x, ky) the
reversed lines carry a phase ``exp(i D(x))`` relative to the forward ones, with
``D(x) = phi0 + phi1 x`` (x in pixels from the centre), which puts a ghost at N/2 along y.
Three navigator readouts without phase encoding (flag 24, polarities +, -, +) measure it per
slice (Heid, ISMRM 1997; Feinberg et al.): ``z(x) = p_rev(x) conj(p_fwd(x))`` summed over the
coils, with ``p_fwd`` the mean of the forward navigators (cancelling the linear drift between
echoes 1 and 3). The linear fit is done without phase unwrapping: the slope from the phase of
the lag-1 autocorrelation ``sum_x z(x+1) conj(z(x))`` (Ahn & Cho, IEEE TMI 1987), the
constant from the phase of ``sum_x z(x) exp(-i phi1 x)``. Lines are corrected by
``exp(-+ i D(x) / 2)`` (reversed / forward) in hybrid space, before GRAPPA or the FFT.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from recon.backend import fftc, ifftc, rss
from recon.cartesian.grappa import GrappaRecon, calibrate, detect_lattice, find_acs, grappa
from recon.errors import InputError
from recon.geometry import Geometry, geometry_from_header, stack_slices
from recon.io.flags import CALIBRATION as CALIBRATION_FLAG
from recon.io.flags import REVERSE, ReadoutKind, has_flag
from recon.io.ismrmrd import RawData
from recon.io.sort import CALIBRATION_KINDS, IMAGING_KINDS
from recon.iterative.blas import single_threaded_blas

#: trajectoryDescription user parameters of a Siemens ConventionalEPI readout.
TRAPEZOID_KEYS = ("rampUpTime", "flatTopTime", "rampDownTime", "acqDelayTime", "numSamples")


def _gradient_area(t: np.ndarray, ramp_up: float, flat_top: float, ramp_down: float):
    """Area under a unit trapezoid from 0 to ``t`` (us)."""
    t = np.asarray(t, dtype=np.float64)
    up = np.clip(t, 0, ramp_up)
    area = up**2 / (2 * ramp_up) if ramp_up > 0 else np.zeros_like(t)
    area = area + np.clip(t - ramp_up, 0, flat_top)
    if ramp_down > 0:
        down = np.clip(t - ramp_up - flat_top, 0, ramp_down)
        area = area + down - down**2 / (2 * ramp_down)
    return area


def trapezoid_kx(ramp_up_us: float, flat_top_us: float, ramp_down_us: float,
                 acq_delay_us: float, num_samples: int, dwell_us: float,
                 nx: int) -> np.ndarray:  # fmt: skip
    """k-space positions (grid units) of a forward trapezoidal readout.

    Parameters
    ----------
    ramp_up_us, flat_top_us, ramp_down_us : float
        Gradient trapezoid timing (us).
    acq_delay_us : float
        Time of the first sample after the start of the ramp up (us).
    num_samples : int
        Samples per readout.
    dwell_us : float
        Sample spacing (us).
    nx : int
        Encoded matrix along the readout.

    Returns
    -------
    (num_samples,) float64
        ``k_i`` increasing from ``-nx/2`` to ``nx/2 - 1``.
    """
    end = ramp_up_us + flat_top_us + ramp_down_us
    t = acq_delay_us + np.arange(num_samples) * dwell_us
    if num_samples < 2 or dwell_us <= 0 or acq_delay_us < 0 or t[-1] > end + 1e-9:
        raise InputError(
            f"EPI trapezoid: {num_samples} samples of {dwell_us} us from {acq_delay_us} us "
            f"do not fit in the {end} us readout gradient"
        )
    area = _gradient_area(t, ramp_up_us, flat_top_us, ramp_down_us)
    if area[-1] - area[0] <= 0:
        raise InputError("EPI trapezoid: the samples cover no gradient area")
    return -nx / 2 + (nx - 1) * (area - area[0]) / (area[-1] - area[0])


def header_kx(trajectory_description: dict[str, Any], nx: int, dwell_us: float) -> np.ndarray:
    """Forward readout positions from a header's ``trajectoryDescription`` (see
    :func:`trapezoid_kx`); ``dwellTime`` there (us) wins over the readouts' ``dwell_us``.

    Without the trapezoid parameters the readout is uniform, ``k_i = i - nx/2``."""
    missing = [key for key in TRAPEZOID_KEYS if key not in trajectory_description]
    if len(missing) == len(TRAPEZOID_KEYS):
        return np.arange(nx) - nx / 2
    if missing:
        raise InputError(f"EPI trajectoryDescription lacks {', '.join(missing)}")
    d = trajectory_description
    dwell = float(d.get("dwellTime", dwell_us))
    return trapezoid_kx(float(d["rampUpTime"]), float(d["flatTopTime"]),
                        float(d["rampDownTime"]), float(d["acqDelayTime"]),
                        int(d["numSamples"]), dwell, nx)  # fmt: skip


def regrid_matrix(kx: np.ndarray, nx: int, nx_out: int | None = None) -> np.ndarray:
    """Operator ``(nx_out, len(kx))`` complex64 taking a readout sampled at ``kx`` (grid units
    of ``nx``) to the uniform grid ``-nx_out/2 .. nx_out/2 - 1``.

    ``U_out C F_k^+``: ``F_k[k, x] = exp(-2 pi i k x / nx) / sqrt(nx)`` over the ``nx`` centred
    pixels ``x`` (the least-squares readout profile), ``C`` keeps the central ``nx_out`` pixels
    (readout-oversampling removal; default ``nx_out = nx``, no crop), ``U_out`` the orthonormal
    DFT onto the output grid. Uniform samples at ``k = i - nx/2`` without crop give the
    identity. Reversed readouts, once flipped, sit at ``-kx[::-1]``. Well conditioned when no
    gap between samples exceeds one grid unit (ramp sampling then needs more samples than
    ``nx``).
    """
    nx_out = nx if nx_out is None else nx_out
    x = np.arange(nx) - nx // 2
    sampled = np.exp(-2j * np.pi * np.outer(np.asarray(kx, dtype=np.float64), x) / nx)
    first = nx // 2 - nx_out // 2
    centred = np.arange(nx_out) - nx_out // 2
    uniform = np.exp(-2j * np.pi * np.outer(centred, centred) / nx_out) / np.sqrt(nx_out)
    with single_threaded_blas(np):  # small SVD: BLAS threads only spin-wait (recon.iterative.blas)
        profile = np.linalg.pinv(sampled / np.sqrt(nx), rcond=1e-8)[first : first + nx_out]
        return (uniform @ profile).astype(np.complex64)


@functools.lru_cache(maxsize=8)
def readout_operators(kx: tuple[float, ...], nx: int, nx_out: int) -> tuple[np.ndarray, ...]:
    """:func:`regrid_matrix` of forward and of flipped reversed readouts at ``kx``, made once
    per readout timing (a series sorts every slice and repetition with the same two);
    read-only."""
    k = np.asarray(kx)
    operators = (regrid_matrix(k, nx, nx_out), regrid_matrix(-k[::-1], nx, nx_out))
    for operator in operators:
        operator.setflags(write=False)
    return operators


#: ``epi.navigator_fit`` names and the polynomial order of the odd/even phase they fit.
NAVIGATOR_FITS = {"constant": 0, "linear": 1, "quadratic": 2, "cubic": 3}


@dataclass
class GhostPhase:
    """Odd/even phase difference ``D(x) = phi0 + phi1 x + sum_k c_k u^k`` (rad; x in pixels
    from the centre, ``u = x / (nx / 2)``, ``c_k`` of ``higher`` for ``k = 2, 3, ..``)."""

    phi0: float
    phi1: float
    higher: tuple[float, ...] = ()

    def profile(self, nx: int) -> np.ndarray:
        """``D(x)`` for the ``nx`` pixels, float64."""
        x = np.arange(nx) - nx // 2
        u = x / (nx / 2)
        terms = sum(c * u ** (k + 2) for k, c in enumerate(self.higher))
        return self.phi0 + self.phi1 * x + terms


def fit_ghost_phase(navigators: np.ndarray, reverse: np.ndarray, order: int = 1) -> GhostPhase:
    """Polynomial fit of the reversed-minus-forward phase of navigator readouts.

    Parameters
    ----------
    navigators : (nnav, ncoils, nx) complex
        Regridded navigator lines (k-space along x, reversed ones flipped).
    reverse : (nnav,) bool
        Polarity of each navigator; both polarities must be present.
    order : int
        1: constant and slope; 0: constant only (``phi1 = 0``), for noisy navigators;
        2, 3: the linear fit, then a polynomial in ``u`` of this order fitted to the
        remaining phase (small, so no unwrapping) by least squares weighted by ``|z(x)|``
        over the pixels above 5 % of its maximum.
    """
    reverse = np.asarray(reverse, dtype=bool)
    if reverse.all() or not reverse.any():
        raise InputError("EPI navigators: need readouts of both polarities")
    profiles = ifftc(np.asarray(navigators, dtype=np.complex64), axes=(-1,))
    z = (profiles[reverse].mean(axis=0) * np.conj(profiles[~reverse].mean(axis=0))).sum(axis=0)
    phi1 = float(np.angle(np.vdot(z[:-1], z[1:]))) if order >= 1 else 0.0
    nx = z.shape[-1]
    x = np.arange(nx) - nx // 2
    phi0 = float(np.angle(np.sum(z * np.exp(-1j * phi1 * x))))
    if order <= 1:
        return GhostPhase(phi0, phi1)
    weight = np.abs(z)
    keep = weight > 0.05 * weight.max()
    remaining = np.angle(z * np.exp(-1j * (phi0 + phi1 * x)))
    u = x / (nx / 2)
    basis = np.stack([u**k for k in range(order + 1)], axis=1) * np.sqrt(weight)[:, None]
    coef = np.linalg.lstsq(basis[keep], (remaining * np.sqrt(weight))[keep], rcond=None)[0]
    return GhostPhase(phi0 + coef[0], phi1 + coef[1] / (nx / 2), tuple(float(c) for c in coef[2:]))


def correct_ghost(kspace: np.ndarray, reverse: np.ndarray, phase: GhostPhase) -> np.ndarray:
    """Remove ``D(x)`` from lines ``(ncoils, ny, nx)``: reversed lines times
    ``exp(-i D / 2)``, forward ones times ``exp(+i D / 2)``, in hybrid space."""
    nx = kspace.shape[-1]
    half = np.exp(0.5j * phase.profile(nx)).astype(np.complex64)
    factor = np.where(np.asarray(reverse, dtype=bool)[:, None], np.conj(half), half)
    return fftc(ifftc(kspace, axes=(-1,)) * factor, axes=(-1,)).astype(np.complex64)


@dataclass
class EpiSlices:
    """Regridded (and ghost-corrected) EPI k-space per slice.

    Attributes
    ----------
    kspace : (nslices, ncoils, ny, nx) complex64
        Imaging lines, zeros where not sampled (``nx`` of the recon FOV when the readout
        oversampling was removed).
    calib : (nslices, ncoils, cy, nx) complex64 or None
        Calibration (ACS) lines, ``cy`` lines from the first calibration line.
    phases : list of GhostPhase or None
        Per slice, when corrected.
    acceleration : int
        R along ky (from the header).
    geometry : Geometry
        The slices stacked, ``(nslices, ny, nx)`` (for :func:`recon.io.export.export_nifti`).
    calib_first : int
        ``kspace_encode_step_1`` of the first calibration line (row 0 of ``calib``).
    segment_phases : list of dict or None
        With ``per_segment``: per slice, the phase of every shot (``idx.segment``) from its
        own navigators.
    """

    kspace: np.ndarray
    calib: np.ndarray | None
    phases: list[GhostPhase] | None
    acceleration: int
    geometry: Geometry
    calib_first: int = 0
    segment_phases: list[dict[int, GhostPhase]] | None = None


def sort_epi(raw: RawData, *, repetition: int = 0, correct: bool = True,
             remove_oversampling: bool = True, slices: Sequence[int] | None = None,
             fit_order: int = 1, readouts: np.ndarray | None = None,
             per_segment: bool = False) -> EpiSlices:  # fmt: skip
    """Sort one repetition of a 2D EPI file into regridded, ghost-corrected k-space per slice.

    Every readout is flipped when reversed (flag 22) and regridded from the header's trapezoid
    (``numSamples`` samples, :func:`header_kx`) onto the encoded ``nx``; imaging and
    calibration lines are placed by ``kspace_encode_step_1`` (calibration-only lines of every
    repetition: a separate ACS scan serves the whole series); with ``correct``, the slice's
    phase-correction readouts (flag 24) give :class:`GhostPhase` (:func:`fit_ghost_phase`),
    removed from all its lines (:func:`correct_ghost`). With ``remove_oversampling`` the
    regridding also crops the readout to the recon field of view (encoded FOV x larger than
    the recon FOV x, e.g. Siemens' 2x readout oversampling). ``slices`` (``idx.slice``
    values) restricts the sort to those slices (all by default); ``fit_order`` is the
    navigator fit's ``order`` (:func:`fit_ghost_phase`). ``readouts`` (bool per readout)
    restricts the sort to those readouts (e.g. a multiband series without its single-band
    reference, :func:`reconstruct_sms_epi`). With ``per_segment`` (segmented multi-shot EPI)
    the lines of each shot (``idx.segment``) are corrected with the phase of that shot's own
    navigators, lines of a shot without navigators with the slice's pooled phase.

    Raises
    ------
    InputError
        No imaging readouts in the repetition, readouts of another length than the trapezoid's
        ``numSamples`` or outside the encoded lines, a slice (or, with ``per_segment``, a
        shot) without navigators of both polarities when ``correct``, or an incomplete
        trapezoid description.
    """
    enc = raw.header.encoding
    nx_enc, ny, _ = enc.encoded_matrix
    nx, fov_x = nx_enc, enc.encoded_fov_mm[0]
    if remove_oversampling and enc.encoded_fov_mm[0] > enc.recon_fov_mm[0] * (1 + 1e-6):
        nx, fov_x = enc.recon_matrix[0], enc.recon_fov_mm[0]
    head = raw.head
    usable = raw.usable & (head.encoding_space_ref == 0)
    if slices is not None:
        usable = usable & np.isin(head.slice, list(slices))
    if readouts is not None:
        usable = usable & readouts
    here = usable & (head.repetition == repetition)
    calib_only = raw.kinds == ReadoutKind.CALIBRATION
    rows = {
        "imaging": np.flatnonzero(here & np.isin(raw.kinds, [int(k) for k in IMAGING_KINDS])),
        # a separate calibration scan (often only before the first repetition) serves all
        "calib": np.flatnonzero(np.where(calib_only, usable, here) & np.isin(
            raw.kinds, [int(k) for k in CALIBRATION_KINDS])),
        "nav": np.flatnonzero(here & (raw.kinds == ReadoutKind.PHASE_CORRECTION)),
    }  # fmt: skip
    if rows["imaging"].size == 0:
        raise InputError(f"{raw.path}: no EPI imaging readouts in repetition {repetition}")
    slices = np.unique(head.slice[rows["imaging"]])
    nc = int(head.active_channels[rows["imaging"][0]])
    dwell = float(np.median(head.sample_time_us[rows["imaging"]]))
    kx = header_kx(enc.trajectory_description, nx_enc, dwell)
    ns = len(kx)
    if np.any(head.number_of_samples[np.concatenate(list(rows.values()))] != ns):
        raise InputError(f"{raw.path}: EPI readouts do not all have the {ns} samples expected")
    operators = readout_operators(tuple(float(k) for k in kx), nx_enc, nx)
    reverse = has_flag(head.flags, REVERSE)
    ky = head.kspace_encode_step_1.astype(np.int64)
    used = np.concatenate(list(rows.values()))
    if ky[used].min() < 0 or ky[used].max() >= ny:
        raise InputError(f"{raw.path}: EPI kspace_encode_step_1 outside the {ny} encoded lines")
    slot = np.searchsorted(slices, head.slice)

    def lines(which: np.ndarray) -> np.ndarray:
        """(len(which), ncoils, nx): flipped and regridded readouts."""
        out = np.zeros((len(which), nc, nx), dtype=np.complex64)
        if which.size == 0:
            return out
        where = {int(r): i for i, r in enumerate(which)}
        for block_rows, block, _ in raw.iter_blocks(which):
            i = np.array([where[int(r)] for r in block_rows])
            rev = reverse[block_rows]
            block = np.where(rev[:, None, None], block[..., ::-1], block)
            out[i] = np.where(rev[:, None, None], block @ operators[1].T, block @ operators[0].T)
        return out

    kspace = np.zeros((len(slices), nc, ny, nx), dtype=np.complex64)
    rev_img = np.zeros((len(slices), ny), dtype=bool)
    seg_img = np.zeros((len(slices), ny), dtype=np.int64)
    r = rows["imaging"]
    kspace[slot[r], :, ky[r]] = lines(r)
    rev_img[slot[r], ky[r]] = reverse[r]
    seg_img[slot[r], ky[r]] = head.segment[r]
    calib = rev_cal = seg_cal = None
    calib_first = 0
    r = rows["calib"]
    r = r[np.isin(head.slice[r], slices)]
    if r.size:
        first = calib_first = int(ky[r].min())
        calib = np.zeros((len(slices), nc, int(ky[r].max()) - first + 1, nx), np.complex64)
        rev_cal = np.zeros(calib.shape[::2], dtype=bool)
        seg_cal = np.zeros(calib.shape[::2], dtype=np.int64)
        calib[slot[r], :, ky[r] - first] = lines(r)
        rev_cal[slot[r], ky[r] - first] = reverse[r]
        seg_cal[slot[r], ky[r] - first] = head.segment[r]
    geometry = []
    for value in slices:
        first = rows["imaging"][head.slice[rows["imaging"]] == value][0]
        geometry.append(
            geometry_from_header(
                (1, ny, nx),
                (fov_x, *enc.encoded_fov_mm[1:]),
                head.position[first],
                head.read_dir[first],
                head.phase_dir[first],
                head.slice_dir[first],
                head.patient_table_position[first],
            )
        )
    result = EpiSlices(
        kspace, calib, None, enc.acceleration[0], stack_slices(geometry), calib_first
    )
    if not correct:
        return result
    r = rows["nav"]
    navigators = lines(r)
    phases, segment_phases = [], []

    def fit(which: np.ndarray, what: str) -> GhostPhase:
        if not (reverse[r][which].any() and (~reverse[r][which]).any()):
            raise InputError(
                f"{raw.path}: {what} lacks phase-correction readouts of both polarities"
            )
        return fit_ghost_phase(navigators[which], reverse[r][which], fit_order)

    for s, value in enumerate(slices):
        mine = head.slice[r] == value
        phase = fit(mine, f"slice {value}")
        own = {}
        if per_segment:
            for k in np.unique(head.segment[r][mine]):
                which = mine & (head.segment[r] == k)
                own[int(k)] = fit(which, f"slice {value} segment {k}")
        phases.append(phase)
        segment_phases.append(own)
        kspace[s] = _correct_segments(kspace[s], rev_img[s], seg_img[s], phase, own)
        if calib is not None:
            calib[s] = _correct_segments(calib[s], rev_cal[s], seg_cal[s], phase, own)
    result.phases = phases
    result.segment_phases = segment_phases if per_segment else None
    return result


def _correct_segments(kspace: np.ndarray, reverse: np.ndarray, segment: np.ndarray,
                      pooled: GhostPhase, own: dict[int, GhostPhase]) -> np.ndarray:  # fmt: skip
    """Ghost-correct lines ``(ncoils, ny, nx)``: the lines of shot ``k`` (``segment``) with
    ``own[k]``, all others with the phase ``pooled`` over the slice's navigators."""
    if not own:
        return correct_ghost(kspace, reverse, pooled)
    out = np.empty_like(kspace)
    for k in np.unique(segment):
        lines = segment == k
        out[:, lines] = correct_ghost(kspace[:, lines], reverse[lines], own.get(int(k), pooled))
    return out


def reconstruct_epi(epi: EpiSlices) -> np.ndarray:
    """Magnitude images ``(nslices, ny, nx)`` float32: GRAPPA with the calibration lines
    (:func:`recon.cartesian.grappa.grappa`) when accelerated, else the root-sum-of-squares of
    the coil images."""
    images = []
    for s in range(epi.kspace.shape[0]):
        if epi.acceleration > 1:
            acs = None if epi.calib is None else epi.calib[s]
            images.append(grappa(epi.kspace[s], ry=epi.acceleration, acs=acs))
        else:
            images.append(rss(ifftc(epi.kspace[s], axes=(-2, -1)), axis=0))
    return np.abs(np.stack(images)).astype(np.float32)


class EpiSeriesRecon:
    """Reconstruct the frames of an EPI series (fMRI) with GRAPPA weights calibrated once.

    The first accelerated frame calibrates one kernel per slice from its calibration lines
    (:func:`recon.cartesian.grappa.calibrate`); every frame is then unmixed in image space by
    :class:`recon.cartesian.grappa.GrappaRecon`, which reuses the weights, and combined by
    root-sum-of-squares. Unaccelerated frames go through :func:`reconstruct_epi`.
    """

    def __init__(self) -> None:
        self.recons: list[GrappaRecon] | None = None

    def __call__(self, epi: EpiSlices) -> np.ndarray:
        """Magnitude images ``(nslices, ny, nx)`` float32 of one frame from :func:`sort_epi`."""
        if epi.acceleration == 1:
            return reconstruct_epi(epi)
        if self.recons is None:
            if epi.calib is None:
                raise InputError("EPI series: the first frame has no calibration lines")
            self.recons = []
            for s in range(epi.kspace.shape[0]):
                lattice = detect_lattice(np.abs(epi.kspace[s]).sum(axis=(0, -1)) > 0,
                                         epi.acceleration)  # fmt: skip
                kernel = calibrate(epi.calib[s], ry=epi.acceleration, shift=lattice.shift)
                self.recons.append(GrappaRecon(kernel, epi.kspace.shape[-2:], lattice))
        if len(self.recons) != epi.kspace.shape[0]:
            raise InputError(f"EPI series: {epi.kspace.shape[0]} slices, calibrated for "
                             f"{len(self.recons)}")  # fmt: skip
        images = [rss(r(epi.kspace[s]), axis=0) for s, r in enumerate(self.recons)]
        return np.abs(np.stack(images)).astype(np.float32)


# --------------------------------------------------------------------------------------
# simultaneous multi-slice (multiband) EPI

#: userParameters of a multiband EPI file; ISMRMRD has no multiband fields, these are the
#: names :func:`recon.sim.epi.simulate_epi` writes: ``MultibandFactor`` (long),
#: ``MultibandCaipiShift`` (long, the CAIPI factor of :func:`recon.sim.sms.caipi_phase`),
#: ``MultibandSliceGapMm`` (double, distance between simultaneous slices).
MULTIBAND_PARAMETERS = ("MultibandFactor", "MultibandCaipiShift", "MultibandSliceGapMm")


@dataclass
class Multiband:
    """Multiband factor, CAIPI factor and gap (mm) between simultaneously excited slices;
    ``groups``: collapsed slice groups ``G`` per repetition (0 until a plan sets it)."""

    factor: int
    shift: int
    gap_mm: float
    groups: int = 0

    def members(self, group: int) -> list[int]:
        """The true slices ``group + b G`` (``b < factor``) excited with ``group``."""
        return [group + self.groups * b for b in range(self.factor)]


def multiband_parameters(raw: RawData) -> Multiband | None:
    """The file's :data:`MULTIBAND_PARAMETERS`, or None for a single-band file.

    Raises
    ------
    InputError
        A multiband factor without the CAIPI factor, or invalid values.
    """
    params = raw.header.user_parameters
    factor_name, shift_name, gap_name = MULTIBAND_PARAMETERS
    factor = int(params.get(factor_name) or 1)
    if factor <= 1:
        return None
    if shift_name not in params:
        raise InputError(f"{raw.path}: {factor_name} {factor} without {shift_name}")
    shift, gap = int(params[shift_name]), float(params.get(gap_name) or 0.0)
    if shift < 0:
        raise InputError(f"{raw.path}: {shift_name} {shift} must be >= 0")
    return Multiband(factor, shift, gap)


def is_sbr(raw: RawData) -> np.ndarray:
    """Readouts of the single-band reference: flag 20 (navigators too, flags 24 and 20)."""
    return has_flag(raw.head.flags, CALIBRATION_FLAG)


def sort_sbr(raw: RawData, *, correct: bool = True, fit_order: int = 1,
             slices: Sequence[int] | None = None) -> EpiSlices:  # fmt: skip
    """The single-band reference of a multiband EPI file, one entry per slice.

    The readouts flagged ``ACQ_IS_PARALLEL_CALIBRATION`` (20) are sorted like the imaging
    lines of a single-band scan by :func:`sort_epi` (regridding; with ``correct``, ghost
    correction from the slice's own reference navigators, flags 24 and 20); ``slices``
    (``idx.slice`` values) restricts it to those slices.

    Returns
    -------
    EpiSlices
        ``kspace`` ``(nslices, ncoils, ny, nx)``: every slice on the full grid, zero outside
        the reference lines; ``geometry`` the true slices in ``idx.slice`` order.
    """
    sbr = is_sbr(raw)
    lines = sbr & (raw.kinds == ReadoutKind.CALIBRATION)
    if not lines.any():
        raise InputError(f"{raw.path}: multiband EPI without a single-band reference")
    kinds = np.where(lines, ReadoutKind.IMAGING, raw.kinds)
    relabelled = replace(raw, kinds=kinds.astype(raw.kinds.dtype))
    return sort_epi(relabelled, correct=correct, fit_order=fit_order, slices=slices, readouts=sbr)


class SmsEpiSeriesRecon:
    """Multiband EPI frames: split-slice GRAPPA, then in-plane GRAPPA, calibrated once.

    Group ``g`` of ``G`` collapsed groups holds slices ``g + b G`` (``b < MB``), as
    :func:`recon.sim.epi.simulate_epi` writes them. On the first frame each group's
    slice-separation kernel (:func:`recon.cartesian.slice_grappa.calibrate`, split-slice by
    default) is fitted on the ghost-corrected single-band references of its slices, and with
    in-plane acceleration each slice's GRAPPA kernel on its own reference lines; every frame
    reuses them. ``counts`` records the calibrations made (``slice_grappa`` per group,
    ``grappa`` per slice).

    Parameters
    ----------
    sbr : EpiSlices
        From :func:`sort_sbr`.
    multiband : Multiband
    kernel, reg, split
        Slice-GRAPPA kernel ``(ky, kx)``, regularisation and objective.
    inplane_kernel, inplane_reg
        In-plane GRAPPA kernel and regularisation (:func:`recon.cartesian.grappa.calibrate`).
    """

    def __init__(self, sbr: EpiSlices, multiband: Multiband, *,
                 kernel: Sequence[int] = (5, 5), reg: float = 1e-3, split: bool = True,
                 inplane_kernel: Sequence[int] | None = None,
                 inplane_reg: float = 5e-4) -> None:  # fmt: skip
        self.sbr, self.multiband = sbr, multiband
        self.options = {"kernel": tuple(kernel), "reg": reg, "split": split}
        self.inplane = {"kernel": inplane_kernel, "reg": inplane_reg}
        self.counts: Counter = Counter()
        self._separation: dict[int, Any] = {}
        self._unalias: dict[int, GrappaRecon] = {}
        self._acs = find_acs(np.abs(sbr.kspace).sum(axis=(0, 1, 3)) > 0)[1]

    def __call__(self, epi: EpiSlices) -> np.ndarray:
        """Magnitude images ``(nslices, ny, nx)`` float32 of one collapsed frame
        (``epi.kspace`` ``(ngroups, ncoils, ny, nx)`` from :func:`sort_epi`)."""
        # imported here: slice_grappa imports recon.sim, whose EPI writer imports this module
        from recon.cartesian import slice_grappa

        ngroups, _, ny, nx = epi.kspace.shape
        mb, ry = self.multiband.factor, epi.acceleration
        nslices = self.sbr.kspace.shape[0]
        if (
            ngroups != self.multiband.groups
            or ngroups * mb != nslices
            or (self.sbr.kspace.shape[1:] != epi.kspace.shape[1:])
        ):
            raise InputError(
                f"multiband EPI: {ngroups} groups of {mb} slices, k-space {epi.kspace.shape[1:]}"
                f" vs a single-band reference of {nslices} slices {self.sbr.kspace.shape[1:]}"
            )
        out = np.zeros((nslices, ny, nx), dtype=np.float32)
        for g in range(ngroups):
            members = self.multiband.members(g)
            if g not in self._separation:
                self._separation[g] = slice_grappa.calibrate(
                    self.sbr.kspace[members], shift=self.multiband.shift, ry=ry,
                    acs=self._acs, **self.options)  # fmt: skip
                self.counts["slice_grappa"] += 1
            slices = slice_grappa.separate(self._separation[g], epi.kspace[g])
            if ry == 1:
                coils = ifftc(slices, axes=(-2, -1))
            else:
                lattice = None
                coils = np.empty_like(slices)
                for b, s in enumerate(members):
                    if s not in self._unalias:
                        if lattice is None:
                            sampled = np.abs(epi.kspace[g]).sum(axis=(0, 2)) > 0
                            lattice = detect_lattice(sampled, ry, 1, 0)
                        weights = calibrate(self.sbr.kspace[s][:, self._acs], ry=ry,
                                            kernel=self.inplane["kernel"],
                                            reg=self.inplane["reg"])  # fmt: skip
                        self._unalias[int(s)] = GrappaRecon(weights, (ny, nx), lattice)
                        self.counts["grappa"] += 1
                    coils[b] = self._unalias[int(s)](slices[b])
            out[members] = np.abs(rss(coils, axis=1))
        return out


@dataclass
class SmsEpiResult:
    """A reconstructed multiband EPI series.

    Attributes
    ----------
    images : (nrepetitions, nslices, ny, nx) float32
        Magnitude images, slices in ``idx.slice`` order of the single-band reference.
    geometry : Geometry
        The ``nslices`` true slices stacked (for :func:`recon.io.export.export_nifti`).
    repetitions : list of int
    counts : Counter
        Calibrations made (``slice_grappa``, ``grappa``).
    phases : list of list of GhostPhase or None
        Per repetition, the odd/even phase of each collapsed group (when corrected).
    """

    images: np.ndarray
    geometry: Geometry
    repetitions: list[int]
    counts: Counter
    phases: list[list[GhostPhase] | None]


def reconstruct_sms_epi(raw: RawData, *, correct: bool = True, fit_order: int = 1,
                        **options: Any) -> SmsEpiResult:  # fmt: skip
    """Reconstruct a multiband (SMS, blipped-CAIPI) 2D EPI series.

    The single-band reference is sorted and ghost-corrected (:func:`sort_sbr`); every
    repetition of the collapsed data is sorted and ghost-corrected from its own navigators
    (:func:`sort_epi`, one odd/even phase per excitation), separated by split-slice GRAPPA and
    unaliased by in-plane GRAPPA (:class:`SmsEpiSeriesRecon`, calibrated once for the series).
    ``options`` go to :class:`SmsEpiSeriesRecon`.

    Raises
    ------
    InputError
        Not a multiband file (:func:`multiband_parameters`), no single-band reference, or
        inconsistent groups and slices.
    """
    multiband = multiband_parameters(raw)
    if multiband is None:
        raise InputError(f"{raw.path}: not a multiband EPI file (no MultibandFactor > 1)")
    sbr = sort_sbr(raw, correct=correct, fit_order=fit_order)
    multiband = replace(multiband, groups=sbr.kspace.shape[0] // multiband.factor)
    series = ~is_sbr(raw)
    rows = np.flatnonzero(series & raw.usable & np.isin(raw.kinds, [int(k) for k in IMAGING_KINDS]))
    repetitions = sorted(int(r) for r in np.unique(raw.head.repetition[rows]))
    recon = SmsEpiSeriesRecon(sbr, multiband, **options)
    images, phases = [], []
    for repetition in repetitions:
        epi = sort_epi(raw, repetition=repetition, correct=correct, fit_order=fit_order,
                       readouts=series)  # fmt: skip
        images.append(recon(epi))
        phases.append(epi.phases)
    return SmsEpiResult(np.stack(images), sbr.geometry, repetitions, recon.counts, phases)
