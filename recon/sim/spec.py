"""What to simulate: :class:`SimSpec`, the options of a simulated acquisition, validated."""

from __future__ import annotations

import math
from dataclasses import dataclass

from recon.errors import ConfigError

TRAJECTORIES = ("cartesian", "radial", "golden-radial", "spiral", "stack-of-stars")
CALIBRATION_MODES = ("embedded", "separate", "interleaved")


@dataclass
class SimSpec:
    """Options of a simulated 7 T head acquisition (defaults: 2D Cartesian, 32 coils).

    Attributes
    ----------
    matrix : int
        Reconstructed in-plane matrix ``nx = ny`` (the encoded readout is ``2 matrix`` with
        oversampling).
    fov_mm : float
        In-plane field of view (mm).
    slices : int
        2D slices, or 3D partitions (``nz``) with ``three_d`` / stack-of-stars.
    slice_thickness_mm : float
        Slice thickness = slice spacing (2D), or partition thickness (3D), mm.
    three_d : bool
        Cartesian 3D (ky x kz phase encoding) instead of 2D multi-slice.
    ncoils : int
        Receive channels.
    accel, accel_z : int
        Undersampling along ky and (3D) kz.
    caipi_shift : int
        2D-CAIPIRINHA ky shift per sampled kz partition (3D; ``0 <= shift < accel``).
    calib, calib_z : int
        Calibration (ACS) lines along ky and (3D) kz; 0: none. ``calib_z`` defaults to
        ``min(calib, slices)``.
    calib_mode : str
        ``embedded`` (ACS lines among the imaging lines, flagged 20/21), ``separate`` (a
        calibration pass flagged 20 before the imaging) or ``interleaved`` (no ACS lines;
        the sampling pattern shifts by one line per repetition, as in TSENSE).
    partial_fourier : float
        Fraction of ky lines acquired (0.5 < f <= 1); the first lines are skipped.
    oversampling : bool
        Readouts sample twice the FOV along x (2x readout oversampling).
    trajectory : str
        ``cartesian``, ``radial`` (uniform angles), ``golden-radial``, ``spiral`` or
        ``stack-of-stars`` (golden-angle spokes on Cartesian kz partitions).
    spokes : int, optional
        Spokes per slice/partition (radial) or spiral interleaves; default: Nyquist
        ``ceil(pi matrix / 2)`` spokes, 16 interleaves.
    repetitions : int
        Time frames; with more than one, a block-design activation (3 % in occipital grey
        matter, 5 frames on / 5 off) modulates the object, fMRI-like.
    field_map : bool
        Add B0 off-resonance during the readouts (see :mod:`recon.sim.kspace`).
    field_spread_hz : float
        Scale of the B0 map (Hz).
    noise_std : float
        Per-channel noise standard deviation of one imaging sample (mean over channels), in
        the units of the object (orthonormal FFT: the same in image space). 0: no noise.
    noise_readouts : int
        Noise-only readouts (flag 19) written first.
    dwell_us, noise_dwell_us : float
        Sample spacing of the imaging and the noise readouts (us); the noise readouts'
        variance is scaled by ``dwell_us / noise_dwell_us``. Default noise dwell: the imaging
        dwell.
    te_ms, tr_ms, flip_deg : float
        Sequence parameters (echo time, repetition time, flip angle).
    echoes : int
        Gradient echoes per excitation (Cartesian), written as ISMRMRD contrasts
        ``0 .. echoes-1`` at ``TE_e = te_ms + e echo_spacing_ms`` (a multi-echo B0 mapping
        scan with ``field_map``: echo ``e`` carries the phase ``2 pi f TE_e``); the header
        lists every TE.
    echo_spacing_ms : float
        Time between successive echoes (ms).
    oblique_deg : tuple of 3 float
        Rotation of the slice/slab about x, y and z (degrees), see
        :func:`recon.sim.space.rotation_matrix`.
    centre_mm : tuple of 3 float
        LPS position of the slab / slice-stack centre relative to the head centre.
    seed : int
        Seeds the phantom details, coil noise covariance and noise.
    """

    matrix: int = 128
    fov_mm: float = 220.0
    slices: int = 1
    slice_thickness_mm: float = 3.0
    three_d: bool = False
    ncoils: int = 32
    accel: int = 1
    accel_z: int = 1
    caipi_shift: int = 0
    calib: int = 24
    calib_z: int | None = None
    calib_mode: str = "embedded"
    partial_fourier: float = 1.0
    oversampling: bool = True
    trajectory: str = "cartesian"
    spokes: int | None = None
    repetitions: int = 1
    field_map: bool = False
    field_spread_hz: float = 40.0
    noise_std: float = 0.01
    noise_readouts: int = 128
    dwell_us: float = 5.0
    noise_dwell_us: float | None = None
    te_ms: float = 15.0
    echoes: int = 1
    echo_spacing_ms: float = 1.0
    tr_ms: float = 50.0
    flip_deg: float = 20.0
    oblique_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    centre_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    seed: int = 0

    # ------------------------------------------------------------------ derived values
    @property
    def cartesian(self) -> bool:
        return self.trajectory == "cartesian"

    @property
    def volumetric(self) -> bool:
        """3D encoding (Cartesian 3D or stack of stars): ``slices`` are kz partitions."""
        return self.three_d or self.trajectory == "stack-of-stars"

    @property
    def nx_encoded(self) -> int:
        """Readout samples of a Cartesian readout (or per spoke: 2 matrix when oversampled)."""
        return 2 * self.matrix if self.oversampling else self.matrix

    @property
    def nspokes(self) -> int:
        """Spokes per slice/partition (radial, stack of stars) or spiral interleaves."""
        if self.spokes is not None:
            return self.spokes
        return 16 if self.trajectory == "spiral" else math.ceil(math.pi * self.matrix / 2)

    @property
    def calib_lines_z(self) -> int:
        if not self.volumetric:
            return 1
        return min(self.calib, self.slices) if self.calib_z is None else self.calib_z

    @property
    def echo_times_ms(self) -> list[float]:
        """TE of every echo (ms)."""
        return [self.te_ms + e * self.echo_spacing_ms for e in range(self.echoes)]

    @property
    def noise_dwell(self) -> float:
        return self.dwell_us if self.noise_dwell_us is None else self.noise_dwell_us

    # ------------------------------------------------------------------ validation
    def validate(self) -> SimSpec:
        """Check the options; raise :class:`ConfigError` naming the first bad one."""

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(f"simulate: {message}")

        need(
            self.trajectory in TRAJECTORIES,
            f"trajectory {self.trajectory!r} is not one of {', '.join(TRAJECTORIES)}",
        )
        need(
            self.calib_mode in CALIBRATION_MODES,
            f"calibration mode {self.calib_mode!r} is not one of {', '.join(CALIBRATION_MODES)}",
        )
        need(
            8 <= self.matrix <= 1024 and self.matrix % 2 == 0,
            f"matrix {self.matrix} must be even and in [8, 1024]",
        )
        need(1 <= self.ncoils <= 128, f"coils {self.ncoils} must be in [1, 128]")
        need(self.slices >= 1, f"slices {self.slices} must be >= 1")
        need(self.repetitions >= 1, f"repetitions {self.repetitions} must be >= 1")
        need(self.fov_mm > 0 and self.slice_thickness_mm > 0, "FOV and thickness must be > 0")
        need(self.noise_std >= 0, f"noise level {self.noise_std} must be >= 0")
        need(self.noise_readouts >= 0, f"noise readouts {self.noise_readouts} must be >= 0")
        need(self.dwell_us > 0 and self.noise_dwell > 0, "dwell times must be > 0")
        need(self.field_spread_hz >= 0, "field-map spread must be >= 0")
        need(1 <= self.echoes <= 16, f"echoes {self.echoes} must be in [1, 16]")
        need(self.echo_spacing_ms > 0, f"echo spacing {self.echo_spacing_ms} ms must be > 0")
        need(self.echoes == 1 or self.cartesian, "multi-echo is for Cartesian trajectories")
        need(
            self.te_ms >= 0 and self.tr_ms > 0 and 0 < self.flip_deg <= 180,
            "TE must be >= 0, TR > 0 and the flip angle in (0, 180] degrees",
        )
        need(
            len(self.oblique_deg) == 3 and len(self.centre_mm) == 3,
            "oblique angles and centre need 3 values",
        )
        if self.three_d:
            need(self.trajectory == "cartesian", "--3d is for Cartesian; use stack-of-stars")
        if not self.cartesian:
            need(
                self.accel == 1 and self.accel_z == 1,
                "non-Cartesian undersampling is set by the number of spokes, not --accel",
            )
            need(self.partial_fourier == 1.0, "partial Fourier is for Cartesian trajectories")
            need(self.nspokes >= 1, f"spokes {self.nspokes} must be >= 1")
            return self
        ny, nz = self.matrix, self.slices if self.three_d else 1
        need(1 <= self.accel <= ny // 2, f"accel {self.accel} must be in [1, {ny // 2}]")
        need(self.accel_z == 1 or self.three_d, "accel-z needs a 3D acquisition (--3d)")
        need(
            1 <= self.accel_z <= max(1, nz // 2),
            f"accel-z {self.accel_z} must be in [1, {max(1, nz // 2)}]",
        )
        need(
            self.caipi_shift == 0 or (self.three_d and 0 <= self.caipi_shift < self.accel),
            f"CAIPI shift {self.caipi_shift} needs --3d and must be in [0, accel)",
        )
        need(
            0.5 < self.partial_fourier <= 1.0,
            f"partial Fourier {self.partial_fourier} must be in (0.5, 1]",
        )
        skipped = ny - math.ceil(self.partial_fourier * ny)
        need(0 <= self.calib <= ny, f"calibration lines {self.calib} must be in [0, {ny}]")
        if self.calib_mode == "interleaved":
            need(
                self.repetitions >= self.accel * self.accel_z,
                "interleaved calibration needs at least accel x accel-z repetitions",
            )
        elif self.accel * self.accel_z > 1:
            need(self.calib > 0, "undersampled Cartesian scans need calibration lines (--calib)")
        need(
            ny // 2 - self.calib // 2 >= skipped,
            f"{self.calib} calibration lines do not fit in the partial-Fourier k-space",
        )
        if self.calib > 0 and self.calib_mode != "interleaved":
            need(
                1 <= self.calib_lines_z <= nz,
                f"calib-z {self.calib_lines_z} must be in [1, {nz}]",
            )
        return self
