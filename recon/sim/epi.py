"""Simulated 2D multi-slice EPI with Nyquist ghosts, written as a real ISMRMRD file.

Per slice, in acquisition order: three phase-correction navigators without phase encoding
(flag 24 ``ACQ_IS_PHASECORR_DATA``, polarities +, -, +), then, with acceleration, a separate
fully sampled calibration echo train over the central ``calib`` lines (flag 20), then the
imaging echo train (every ``accel``-th line, the k-space centre included). Within every echo
train the readout polarity alternates; reversed readouts (flag 22 ``ACQ_IS_REVERSE``) are
stored in acquisition order (decreasing kx), as scanners do.

With ``repetitions > 1`` the navigators and the imaging echo train are repeated (the
calibration train only in the first repetition, as the ACS scan precedes the series), with the
fMRI-like block design of :func:`recon.sim.simulate`: the object of repetition ``t`` is
``image (1 + activation timecourse[t])``, 3 % in occipital grey matter, 5 frames on / 5 off.

Signal model: the coil images are Fourier transformed along y (centred, orthonormal); in this
hybrid space (x, ky) a reversed line is multiplied by ``exp(+i D_s(x) / 2)`` and a forward
one by ``exp(-i D_s(x) / 2)``, ``D_s(x) = phi0_s + phi1_s x`` (x in pixels from the centre;
per-slice offsets drawn around ``phase_offset_rad`` and ``phase_slope_rad``), then each line
is read at its exact readout positions by a DFT along x: ``k_i`` of
:func:`recon.cartesian.epi.trapezoid_kx` (forward) or ``-k_i`` (reversed). With ramp sampling
the trapezoid timing goes to the header's ``trajectoryDescription`` (identifier
``ConventionalEPI``; ``rampUpTime``, ``flatTopTime``, ``rampDownTime``, ``acqDelayTime``,
``numSamples`` as longs in us, ``dwellTime`` as a double in us), as Siemens converters write it.

Multiband (``multiband = MB > 1``, simultaneous multi-slice with blipped CAIPI)
-------------------------------------------------------------------------------
The ``slices`` are split into ``G = slices / MB`` groups; group ``g`` excites slices
``g, g + G, .., g + (MB - 1) G`` together (``slice_gap_mm = G spacing`` apart).
Per repetition and group: three navigators and the imaging echo train of the collapsed
signal ``sum_b P_b(ky) K_{g + b G}`` in hybrid space, ``P_b`` the CAIPI phase of
:func:`recon.sim.sms.caipi_phase` (``shift = caipi_shift``, in-plane ``accel``; navigators
have no blips, ``P_b(0) = 1``), with the odd/even phase of slice ``g``, written with
``idx.slice = g`` (the first slice of the group) and its position. Before the series (in
repetition 0) a single-band reference (SBR) of every slice ``s`` (``idx.slice = s``, its own
position and odd/even phase): three navigators (flags 24 and 20) and a fully sampled echo
train over the central ``calib`` lines (flag 20). Header: encoding limit ``slice`` = ``G``
groups; ISMRMRD has no multiband fields, so ``userParameters`` carry them
(:data:`MULTIBAND_PARAMETERS`): ``MultibandFactor`` (long), ``MultibandCaipiShift`` (long),
``MultibandSliceGapMm`` (double, the distance between simultaneous slices along the slice
normal; slice ``g + b G`` sits at the group position plus ``b`` gaps).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.backend import fftc
from recon.cartesian.epi import MULTIBAND_PARAMETERS, trapezoid_kx
from recon.errors import ConfigError
from recon.io.atomic import atomic_path
from recon.io.rawwrite import RawWriter, new_headers
from recon.sim.coils import coil_sensitivities
from recon.sim.header import build_header
from recon.sim.noise import correlated_noise, noise_covariance
from recon.sim.phantom import brain_phantom, head_radius
from recon.sim.scan import ACTIVATION_AMPLITUDE, ACTIVATION_CENTRE_MM, ACTIVATION_RADIUS_MM
from recon.sim.sms import caipi_phase
from recon.sim.space import grid_points
from recon.sim.spec import SimSpec

# 1-based ISMRMRD flag numbers.
FIRST_IN_SLICE, LAST_IN_SLICE, CALIBRATION = 7, 8, 20
REVERSE, PHASE_CORRECTION, LAST_IN_MEASUREMENT = 22, 24, 25
NAVIGATOR_POLARITY = (False, True, False)  # reversed?
BLOCK = 5  # frames per on/off block of the activation


def _bit(flag: int) -> np.uint64:
    return np.uint64(1 << (flag - 1))


@dataclass
class EpiSpec:
    """Options of a simulated 2D EPI acquisition.

    Attributes
    ----------
    matrix : int
        In-plane matrix ``nx = ny``.
    fov_mm, slices, slice_thickness_mm, ncoils
        Geometry and receive array, as :class:`recon.sim.SimSpec`.
    accel : int
        In-plane acceleration along ky (GRAPPA).
    calib : int
        Lines of the separate calibration echo train (used when ``accel > 1``).
    ramp_sampling : bool
        Sample on the gradient ramps (else the readout is all flat top, uniformly sampled).
    ramp_up_us, flat_top_us, ramp_down_us, acq_delay_us : float
        Trapezoid timing with ramp sampling (whole us); samples run from ``acq_delay_us`` to at
        most ``acq_delay_us`` before the end of the ramp down.
    ramp_dwell_us : float
        Sample spacing with ramp sampling (us); the default gives 93 samples per readout, at
        most 0.8 grid units apart on the flat top for a 64 matrix (halve it with
        ``oversampling``). Without ramp sampling, ``nx_encoded`` samples span the flat top.
    oversampling : bool
        2x readout oversampling (the encoded FOV x is twice the recon FOV, as on Siemens).
    phase_offset_rad, phase_slope_rad : float
        Typical odd/even phase difference: constant (rad) and slope (rad per pixel).
    phase_curvature_rad : float
        Typical quadratic odd/even phase ``c (x / (matrix / 2))^2`` (rad at the edge of the
        recon FOV; 0: none), which a linear navigator fit leaves as a ghost.
    segments : int
        Shots of a segmented (interleaved multi-shot) EPI: shot ``k`` reads the imaging
        lines ``k, k + segments, ..`` of the lattice with its own three navigators, all with
        ``idx.segment = k``, and its own odd/even constant (``phase_offset_rad`` plus a
        uniform draw in ``+-segment_phase_rad``). Single band only.
    segment_phase_rad : float
        Spread of the odd/even constant between the shots of a slice (rad).
    noise_std : float
        Per-channel noise standard deviation of one sample (object units).
    te_ms, tr_ms : float
        Echo and repetition time (the time between frames of a series).
    repetitions : int
        Frames of the series (block-design activation when more than one).
    seed : int
    multiband : int
        Simultaneous slices per excitation (1: single band); must divide ``slices``.
    caipi_shift : int, optional
        CAIPI factor of :func:`recon.sim.sms.caipi_phase` (default ``multiband``; 0: none).
    slice_spacing_mm : float, optional
        Distance between the centres of adjacent slices (default ``slice_thickness_mm``,
        contiguous); the phantom and coil maps are sampled at the slice centres.
    """

    matrix: int = 64
    fov_mm: float = 220.0
    slices: int = 2
    slice_thickness_mm: float = 3.0
    ncoils: int = 8
    accel: int = 1
    calib: int = 24
    ramp_sampling: bool = True
    ramp_up_us: float = 100.0
    flat_top_us: float = 300.0
    ramp_down_us: float = 100.0
    acq_delay_us: float = 20.0
    ramp_dwell_us: float = 5.0
    oversampling: bool = False
    phase_offset_rad: float = 0.8
    phase_slope_rad: float = 0.05
    phase_curvature_rad: float = 0.0
    segments: int = 1
    segment_phase_rad: float = 0.3
    noise_std: float = 0.002
    te_ms: float = 25.0
    tr_ms: float = 2000.0
    repetitions: int = 1
    seed: int = 0
    multiband: int = 1
    caipi_shift: int | None = None
    slice_spacing_mm: float | None = None

    @property
    def spacing_mm(self) -> float:
        """Distance between adjacent slice centres (mm)."""
        return self.slice_thickness_mm if self.slice_spacing_mm is None else self.slice_spacing_mm

    @property
    def groups(self) -> int:
        """Excitations (collapsed slice groups) per repetition."""
        return self.slices // self.multiband

    @property
    def shift(self) -> int:
        """The CAIPI factor in use."""
        return self.multiband if self.caipi_shift is None else self.caipi_shift

    @property
    def slice_gap_mm(self) -> float:
        """Distance between simultaneously excited slices (mm)."""
        return self.groups * self.spacing_mm

    @property
    def nx_encoded(self) -> int:
        """Readout matrix: ``2 matrix`` with readout oversampling."""
        return 2 * self.matrix if self.oversampling else self.matrix

    @property
    def readout_us(self) -> float:
        return self.ramp_up_us + self.flat_top_us + self.ramp_down_us

    @property
    def dwell_us(self) -> float:
        """Sample spacing (us)."""
        return self.ramp_dwell_us if self.ramp_sampling else self.flat_top_us / self.nx_encoded

    @property
    def samples(self) -> int:
        """Samples per readout."""
        if not self.ramp_sampling:
            return self.nx_encoded
        return int((self.readout_us - 2 * self.acq_delay_us) // self.ramp_dwell_us) + 1

    def kx(self) -> np.ndarray:
        """Forward readout positions (grid units)."""
        if not self.ramp_sampling:
            return np.arange(self.nx_encoded) - self.nx_encoded / 2
        return trapezoid_kx(self.ramp_up_us, self.flat_top_us, self.ramp_down_us,
                            self.acq_delay_us, self.samples, self.dwell_us,
                            self.nx_encoded)  # fmt: skip

    def base(self) -> SimSpec:
        """The equivalent Cartesian :class:`SimSpec` (geometry, coils, header)."""
        accelerated = self.accel > 1
        return SimSpec(
            matrix=self.matrix, fov_mm=self.fov_mm, slices=self.slices,
            slice_thickness_mm=self.slice_thickness_mm, ncoils=self.ncoils, accel=self.accel,
            calib=self.calib if accelerated else 0, calib_mode="separate",
            oversampling=self.oversampling, noise_std=self.noise_std, noise_readouts=0,
            dwell_us=self.dwell_us, te_ms=self.te_ms, tr_ms=self.tr_ms,
            repetitions=self.repetitions, seed=self.seed,
        ).validate()  # fmt: skip

    def validate(self) -> EpiSpec:
        """Check the options; raise :class:`ConfigError` naming the first bad one."""
        if self.ramp_sampling and min(self.ramp_up_us, self.ramp_down_us) <= 0:
            raise ConfigError("simulate EPI: ramp sampling needs ramps longer than 0 us")
        if self.ramp_sampling and not 0 <= self.acq_delay_us < self.readout_us / 2:
            raise ConfigError(f"simulate EPI: acquisition delay {self.acq_delay_us} us invalid")
        timing = (self.ramp_up_us, self.flat_top_us, self.ramp_down_us, self.acq_delay_us)
        if any(t != round(t) for t in timing):
            raise ConfigError("simulate EPI: trapezoid times must be whole microseconds")
        if self.ramp_sampling and (self.ramp_dwell_us <= 0 or np.diff(self.kx()).max() > 1):
            raise ConfigError(
                f"simulate EPI: dwell {self.ramp_dwell_us} us leaves gaps over one grid unit "
                "on the flat top (regridding needs them <= 1)"
            )
        if self.multiband < 1 or self.slices % self.multiband:
            raise ConfigError(
                f"simulate EPI: multiband {self.multiband} must be positive and divide the "
                f"{self.slices} slices"
            )
        if self.spacing_mm < self.slice_thickness_mm:
            raise ConfigError(
                f"simulate EPI: slice spacing {self.spacing_mm} mm below the thickness "
                f"{self.slice_thickness_mm} mm"
            )
        if self.shift < 0:
            raise ConfigError(f"simulate EPI: caipi_shift {self.caipi_shift} must be >= 0")
        lines = len(range(self.matrix // 2 % self.accel, self.matrix, self.accel))
        if not 1 <= self.segments <= lines // 2:
            raise ConfigError(
                f"simulate EPI: segments {self.segments} must be in [1, {lines // 2}] "
                f"({lines} imaging lines)"
            )
        if self.segments > 1 and self.multiband > 1:
            raise ConfigError("simulate EPI: segmented multiband EPI is not simulated")
        self.base()
        return self


@dataclass
class EpiTruth:
    """What was simulated.

    Attributes
    ----------
    image : (nslices, ny, nx) complex64
        On the recon grid (the central ``matrix`` columns with readout oversampling).
    coil_maps : (ncoils, nslices, ny, nx) complex64, ``sum_c |S_c|^2 = 1``
    phi0, phi1 : (nslices,) float64
        Odd/even phase difference per slice (rad, rad per pixel of the encoded readout).
    phi2 : (nslices,) float64
        Quadratic odd/even phase (rad at the recon FOV edge, see ``phase_curvature_rad``).
    segment_phi0 : (nslices, segments) float64
        Odd/even constant of every shot (``phi0`` plus the shot's offset).
    activation : (nslices, ny, nx) float32
        Fractional signal change of the active region (zero for a single frame).
    timecourse : (repetitions,) float32
        The object of repetition ``t`` is ``image * (1 + activation * timecourse[t])``.
    counts : dict
        Readouts written: ``navigators``, ``calibration``, ``imaging``.
    path, truth_path : Path
    """

    image: np.ndarray
    coil_maps: np.ndarray
    phi0: np.ndarray
    phi1: np.ndarray
    activation: np.ndarray
    timecourse: np.ndarray
    counts: dict[str, int]
    path: Path
    truth_path: Path
    phi2: np.ndarray | None = None
    segment_phi0: np.ndarray | None = None


def _header(spec: EpiSpec) -> str:
    import ismrmrd.xsd as X

    base = spec.base()
    header = X.CreateFromDocument(build_header(base, step1_limits=(0, spec.matrix - 1,
                                                                   spec.matrix // 2)))  # fmt: skip
    encoding = header.encoding[0]
    encoding.trajectory = X.trajectoryType.EPI
    encoding.echoTrainLength = spec.matrix // spec.accel // spec.segments
    if spec.ramp_sampling:
        longs = {
            "rampUpTime": spec.ramp_up_us,
            "flatTopTime": spec.flat_top_us,
            "rampDownTime": spec.ramp_down_us,
            "acqDelayTime": spec.acq_delay_us,
            "numSamples": spec.samples,
        }
        encoding.trajectoryDescription = X.trajectoryDescriptionType(
            identifier="ConventionalEPI",
            userParameterLong=[
                X.userParameterLongType(name=k, value=round(v)) for k, v in longs.items()
            ],
            userParameterDouble=[X.userParameterDoubleType(name="dwellTime", value=spec.dwell_us)],
        )
    header.sequenceParameters.sequence_type = "EPI"
    header.measurementInformation.sequenceName = "epi"
    if spec.multiband > 1:
        encoding.encodingLimits.slice = X.limitType(
            minimum=0, maximum=spec.groups - 1, center=spec.groups // 2
        )
        factor, shift, gap = MULTIBAND_PARAMETERS
        params = header.userParameters
        params.userParameterLong.append(X.userParameterLongType(name=factor, value=spec.multiband))
        params.userParameterLong.append(X.userParameterLongType(name=shift, value=spec.shift))
        params.userParameterDouble.append(
            X.userParameterDoubleType(name=gap, value=spec.slice_gap_mm)
        )
    return X.ToXML(header)


def _readout(hybrid: np.ndarray, kx: np.ndarray) -> np.ndarray:
    """Lines ``(..., nx)`` in hybrid space (x) read at ``kx``: ``(..., len(kx))``."""
    nx = hybrid.shape[-1]
    x = np.arange(nx) - nx // 2
    dft = np.exp(-2j * np.pi * np.outer(kx, x) / nx) / np.sqrt(nx)
    return hybrid @ dft.T


def _echo_train(hybrid: np.ndarray, lines: np.ndarray, reverse: np.ndarray, error: np.ndarray,
                kx: np.ndarray) -> np.ndarray:  # fmt: skip
    """Readouts ``(nlines, ncoils, nsamples)`` of one echo train from the hybrid space
    ``(ncoils, ky, x)`` of a slice, with the odd/even phase ``error`` ``(x,)`` split
    between the polarities and reversed lines read at ``-kx`` in acquisition order."""
    sign = np.where(reverse, 0.5, -0.5)[None, :, None]
    lines_h = hybrid[:, lines, :] * np.exp(1j * sign * error[None, None, :])
    data = np.where(reverse[None, :, None], _readout(lines_h, -kx), _readout(lines_h, kx))
    return np.ascontiguousarray(data.transpose(1, 0, 2)).astype(np.complex64)


def _activation(spec: EpiSpec, shape: tuple[int, ...], fov: tuple[float, ...],
                image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Activation map and block-design timecourse, as :func:`recon.sim.simulate` draws them."""
    t = np.arange(spec.repetitions)
    timecourse = ((t // BLOCK) % 2 == 1).astype(np.float32)
    if spec.repetitions == 1:
        return np.zeros(shape, np.float32), timecourse
    points = grid_points(shape, fov)
    near = np.linalg.norm(points - ACTIVATION_CENTRE_MM, axis=-1) < ACTIVATION_RADIUS_MM
    brain = (head_radius(points) < 0.84) & (np.abs(image) > 0.3)
    return (ACTIVATION_AMPLITUDE * (near & brain)).astype(np.float32), timecourse


def simulate_epi(path: str | Path, spec: EpiSpec | None = None) -> EpiTruth:
    """Write a simulated EPI file ``path`` (ISMRMRD) and ``<path>.truth.npz``.

    Returns
    -------
    EpiTruth
    """
    spec = (spec or EpiSpec()).validate()
    path = Path(path)
    n, ns, nx = spec.matrix, spec.slices, spec.nx_encoded
    shape = (ns, n, nx)
    fov = (spec.spacing_mm * ns, spec.fov_mm, spec.fov_mm * nx / n)
    image = brain_phantom(shape, seed=spec.seed, fov_mm=fov)
    maps = coil_sensitivities(spec.ncoils, shape, fov_mm=fov)
    rng = np.random.default_rng(spec.seed + 3)
    phi0 = spec.phase_offset_rad * rng.uniform(0.7, 1.3, ns)
    phi1 = spec.phase_slope_rad * rng.uniform(0.7, 1.3, ns)
    extra = np.random.default_rng(spec.seed + 5)  # keeps the draws of the other options
    phi2 = spec.phase_curvature_rad * extra.uniform(0.7, 1.3, ns)
    segment_phi0 = phi0[:, None] + spec.segment_phase_rad * (
        extra.uniform(-1, 1, (ns, spec.segments)) if spec.segments > 1 else 0.0
    )
    cov = noise_covariance(spec.ncoils, seed=spec.seed) * spec.noise_std**2
    kx = spec.kx()
    x = np.arange(nx) - nx // 2
    curvature = (x / (n / 2)) ** 2

    def odd_even(s: int, segment: int = 0) -> np.ndarray:
        """``D(x)`` of slice (or group) ``s`` and shot ``segment`` on the encoded readout."""
        return segment_phi0[s, segment] + phi1[s] * x + phi2[s] * curvature

    activation, timecourse = _activation(spec, shape, fov, image)
    # hybrid space (ncoils, nslices, ky, x): centred orthonormal FFT along y only
    hybrid = fftc((maps * image).astype(np.complex64), axes=(-2,))
    active = fftc((maps * image * activation).astype(np.complex64), axes=(-2,))
    counts = {"navigators": 0, "calibration": 0, "imaging": 0}
    centre = n // 2
    imaging = np.arange(centre % spec.accel, n, spec.accel)
    calib = np.arange(centre - spec.calib // 2, centre - spec.calib // 2 + spec.calib)
    navigators = ("navigators", np.full(3, centre), np.array(NAVIGATOR_POLARITY))
    calibration = ("calibration", calib, np.arange(len(calib)) % 2 == 1)
    shots = [
        (
            "imaging",
            imaging[k :: spec.segments],
            np.arange(len(imaging[k :: spec.segments])) % 2 == 1,
        )
        for k in range(spec.segments)
    ]

    def position(s: int) -> tuple[float, float, float]:
        return (0.0, 0.0, (s - ns // 2) * spec.spacing_mm)

    def trains():
        """``(train, hybrid (ncoils, ky, x), error (x,), slice counter, position, repetition,
        extra flags, segment, first and last train of the slice)`` in acquisition order."""
        sbr = np.uint64(0)
        if spec.multiband > 1:  # single-band reference of every slice before the series
            sbr = _bit(CALIBRATION)
            for s in range(ns):
                for train in (navigators, calibration):
                    yield train, hybrid[:, s], odd_even(s), s, position(s), 0, sbr, 0, True, True
        phase = caipi_phase(n, spec.multiband, spec.shift, spec.accel)[:, :, None]
        for rep in range(spec.repetitions):
            frame = hybrid + timecourse[rep] * active
            first = spec.accel > 1 and rep == 0 and spec.multiband == 1
            for g in range(spec.groups):
                members = g + spec.groups * np.arange(spec.multiband)
                data = (phase[None] * frame[:, members]).sum(axis=1)  # (ncoils, ky, x)
                for k, shot in enumerate(shots):
                    edges = (k == 0, k == spec.segments - 1)
                    acs = [calibration] if first and k == 0 else []
                    for train in (navigators, *acs, shot):
                        yield train, data, odd_even(g, k), g, position(g), rep, 0, k, *edges

    scan = 0
    with RawWriter(path, _header(spec)) as raw:
        last = None
        for (kind, lines, reverse), data, error, s, pos, rep, extra, k, *edges in trains():
            data = _echo_train(data, lines, reverse, error, kx)
            if spec.noise_std > 0:
                noise = correlated_noise(cov, (len(lines), spec.samples), rng)
                data += noise.transpose(1, 0, 2)
            head = new_headers(len(lines), ncoils=spec.ncoils, nsamples=spec.samples)
            head["scan_counter"] = scan + np.arange(len(lines))
            head["sample_time_us"] = spec.dwell_us
            head["idx"]["kspace_encode_step_1"] = lines
            head["idx"]["slice"] = s
            head["idx"]["repetition"] = rep
            head["idx"]["segment"] = k
            head["position"] = pos
            flags = np.where(reverse, _bit(REVERSE), np.uint64(0)).astype(np.uint64)
            flags |= {"navigators": _bit(PHASE_CORRECTION),
                      "calibration": _bit(CALIBRATION),
                      "imaging": np.uint64(0)}[kind] | np.uint64(extra)  # fmt: skip
            if kind == "imaging":
                flags[0] |= _bit(FIRST_IN_SLICE) if edges[0] else np.uint64(0)
                flags[-1] |= _bit(LAST_IN_SLICE) if edges[1] else np.uint64(0)
            head["flags"] = flags
            if last is not None:
                raw.append(*last)
            last = (head, data)
            scan += len(lines)
            counts[kind] += len(lines)
        last[0]["flags"][-1] |= _bit(LAST_IN_MEASUREMENT)
        raw.append(*last)
    crop = slice((nx - n) // 2, (nx - n) // 2 + n)  # the recon FOV
    image, maps, activation = image[..., crop], maps[..., crop], activation[..., crop]
    truth_path = path.with_name(path.name + ".truth.npz")
    with atomic_path(truth_path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, image=image, coil_maps=maps, phi0=phi0, phi1=phi1, phi2=phi2,
                 segment_phi0=segment_phi0, activation=activation, timecourse=timecourse,
                 spec=np.array(repr(spec)))  # fmt: skip
    return EpiTruth(image, maps, phi0, phi1, activation, timecourse, counts, path, truth_path,
                    phi2, segment_phi0)  # fmt: skip
