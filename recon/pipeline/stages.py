"""Stage objects: thin adapters from the pipeline's :class:`Unit` to the engine's functions.

A *unit* is what the runner reconstructs in one go: one slice (2D) or one volume (3D) of
one repetition / contrast / phase / set. Every stage is called as ``stage(unit, context)``
and updates the unit: per-coil k-space (``unit.data``: Cartesian ``(ncoils, nz, ny, nx)``,
non-Cartesian ``(ncoils, *pts)``), coil images ``unit.coils (ncoils, nz, ny, nx)`` or the
combined image ``unit.image (nz, ny, nx)``.

Anything that does not change between repetitions (whitening matrix, compression matrix,
GRAPPA weights, coil maps, density compensation, NUFFT plans and Toeplitz PSF) is built
through :meth:`Context.calibrated`, once per key, and counted in ``Context.counts`` so a
test can check that a 40-repetition series was calibrated once per slice.
"""

from __future__ import annotations

import abc
import hashlib
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recon.backend import Device, array_module, fftc, ifftc, to_host
from recon.errors import ConfigError, InputError
from recon.io.sort import NoiseData
from recon.pipeline.config import ScannerConfig


@dataclass
class Unit:
    """One slice / volume of one repetition, as it passes through the stages.

    Attributes
    ----------
    key : dict of str to int
        Counter values (slice, contrast, phase, repetition, set).
    family : str
        ``"cartesian"`` or ``"noncartesian"``.
    shape : (nz, ny, nx) for Cartesian; ``image_shape`` ((ny, nx) or (nz, ny, nx)) otherwise
    data : array
        Per-coil k-space ``(ncoils, nz, ny, nx)`` or samples ``(ncoils, *pts)``.
    sampled : (nz, ny) bool
        Cartesian: acquired lines, calibration lines included.
    lattice : (nz, ny) bool
        Cartesian: acquired imaging lines (the undersampling pattern).
    calib : (ncoils, cz, cy, nx) array or None
        Cartesian calibration lines inside ``calib_region`` (z, y slices).
    calib_separate : bool
        The calibration lines come from a separate reference scan (EPI ACS before a series):
        they calibrate GRAPPA but are not merged into this unit's k-space.
    extent : (nz, ny) bool or None
        Cartesian: lines the acquisition covers (GRAPPA fills inside, leaves the rest empty);
        the bounding box of ``sampled`` when None.
    coord : (*pts, ndim) array or None
        Non-Cartesian coordinates, grid units.
    acceleration : (R_y, R_z)
    dwell_time_us : float
        Imaging dwell time (for the noise scaling).
    """

    key: dict[str, int]
    family: str
    shape: tuple[int, ...]
    data: Any
    acceleration: tuple[int, int] = (1, 1)
    dwell_time_us: float = 0.0
    sampled: Any = None
    lattice: Any = None
    calib: Any = None
    calib_region: tuple[slice, slice] | None = None
    calib_separate: bool = False
    extent: Any = None
    coord: Any = None
    weights: Any = None
    maps: Any = None
    coils: Any = None
    image: Any = None

    @property
    def ndim(self) -> int:
        """Spatial dimensions of the reconstruction (2 or 3)."""
        if self.family == "noncartesian":
            return len(self.shape)
        return 2 if self.shape[0] == 1 else 3

    @property
    def ncoils(self) -> int:
        return int(self.data.shape[0])

    def trajectory_id(self) -> str:
        """Digest of the coordinates: calibrations depending on them are keyed by it."""
        if self.coord is None:
            return ""
        return hashlib.sha1(np.ascontiguousarray(to_host(self.coord)).view(np.uint8)).hexdigest()


@dataclass
class Context:
    """What the stages share over a run: config, device, noise, cached calibrations.

    ``field_map`` (``noncartesian.field_map``) maps a slice value to its B0 map (Hz) of the
    unit's image shape; ``echo_time_s`` is the time of the first readout sample.
    """

    config: ScannerConfig
    device: Device
    noise: NoiseData | None = None
    noise_bandwidth: float | None = None
    source: str = ""
    field_map: dict[int, Any] | None = None
    echo_time_s: float = 0.0
    echo_phase: Any = None  # recon.cartesian.b0map.EchoPhase when the chain has 'b0map'
    counts: Counter = field(default_factory=Counter)
    cache: dict[tuple, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def calibrated(self, kind: str, key: Any, build: Callable[[], Any]) -> Any:
        """``build()`` once per ``(kind, key)``; later calls return the cached result.

        ``counts[kind]`` counts the calibrations actually made (a ``None`` result, such as
        no whitening matrix without noise readouts, is cached but not counted).
        """
        full = (kind, key)
        if full not in self.cache:
            self.cache[full] = build()
            if self.cache[full] is not None:  # None: nothing to calibrate (e.g. no noise)
                self.counts[kind] += 1
        return self.cache[full]

    def note(self, message: str) -> None:
        """Record something the user should know (also issued as a warning once)."""
        if message not in self.notes:
            self.notes.append(message)
            warnings.warn(message, PipelineWarning, stacklevel=3)


class PipelineWarning(UserWarning):
    """A stage was skipped or adapted (e.g. no noise readouts for prewhitening)."""


def _slice_key(unit: Unit) -> tuple:
    return (unit.key.get("slice", 0), unit.trajectory_id())


class Stage(abc.ABC):
    """Base of all stages: ``name`` (as in the config chains) and ``__call__``."""

    name = ""

    @abc.abstractmethod
    def __call__(self, unit: Unit, ctx: Context) -> None:
        """Update ``unit`` in place (data, coil images or image)."""


class Prewhiten(Stage):
    """Noise prewhitening with the file's noise readouts (:mod:`recon.coils.prewhiten`)."""

    name = "prewhiten"

    def __call__(self, unit: Unit, ctx: Context) -> None:
        from recon.coils.prewhiten import prewhiten

        w = ctx.calibrated("noise", unit.dwell_time_us, lambda: self._matrix(unit, ctx))
        if w is None:
            return
        unit.data = prewhiten(unit.data, w, coil_axis=0)
        if unit.calib is not None:
            unit.calib = prewhiten(unit.calib, w, coil_axis=0)

    @staticmethod
    def _matrix(unit: Unit, ctx: Context) -> Any:
        from recon.coils.prewhiten import noise_covariance, scale_covariance, whitening_matrix

        if ctx.noise is None:
            ctx.note(f"{ctx.source}: no noise readouts; prewhitening skipped")
            return None
        if ctx.noise.samples.shape[0] != unit.ncoils:
            raise InputError(
                f"{ctx.source}: {ctx.noise.samples.shape[0]} noise channels for "
                f"{unit.ncoils} imaging channels"
            )
        psi = noise_covariance(ctx.device.to(ctx.noise.samples))
        psi = scale_covariance(
            psi,
            noise_dwell_us=ctx.noise.dwell_time_us,
            imaging_dwell_us=unit.dwell_time_us,
            bandwidth=ctx.noise_bandwidth,
        )
        return whitening_matrix(psi)


class Compress(Stage):
    """Coil compression to ``compress.coils`` virtual coils (:mod:`recon.coils.compress`):
    SVD (one matrix) or GCC (one aligned matrix per readout position, Cartesian only),
    fitted once per slice on the calibration lines (or the data when there are none)."""

    name = "compress"

    def __call__(self, unit: Unit, ctx: Context) -> None:
        from recon.coils import compress

        target = int(ctx.config["compress"]["coils"])
        if target == 0 or target >= unit.ncoils:
            return
        method = ctx.config["compress"]["method"]
        source = unit.calib if unit.calib is not None else unit.data
        if method == "svd":
            matrix = ctx.calibrated(
                "compress",
                _slice_key(unit),
                lambda: compress.svd_compression_matrix(source, target, coil_axis=0),
            )
            apply = compress.apply_compression
        else:
            matrix = ctx.calibrated(
                "compress", _slice_key(unit), lambda: compress.gcc_matrices(source, target)
            )
            apply = compress.apply_gcc
        unit.data = apply(unit.data, matrix, coil_axis=0)
        if unit.calib is not None:
            unit.calib = apply(unit.calib, matrix, coil_axis=0)


class SensitivityMaps(Stage):
    """Coil maps from the calibration data, once per slice."""

    name = "sensmaps"

    def __call__(self, unit: Unit, ctx: Context) -> None:
        unit.maps = ctx.calibrated("maps", _slice_key(unit), lambda: self._maps(unit, ctx))

    def _maps(self, unit: Unit, ctx: Context) -> Any:
        xp = ctx.device.xp
        shape = unit.shape
        if unit.ncoils == 1:
            return xp.ones((1, *shape), dtype=xp.complex64)
        cfg = ctx.config["sensitivity"]
        method = cfg["method"]
        if unit.family == "noncartesian":
            return self._noncartesian(unit, ctx, cfg)
        if method == "lowres":
            from recon.cartesian.chain import lowres_maps

            kspace = merged_kspace(unit)
            return ctx.device.to(lowres_maps(to_host(kspace), to_host(unit.sampled)))
        from recon.coils import sensitivity

        calib = unit.calib if unit.calib is not None else merged_kspace(unit)
        if method == "espirit":
            return sensitivity.espirit_maps(
                calib,
                tuple(shape),
                kernel_width=cfg["kernel"],
                calib_width=cfg["calib_size"],
                thresh=cfg["threshold"],
                crop=cfg["crop"],
            )
        images = sensitivity.calibration_images(calib, tuple(shape))
        if method == "walsh":
            return sensitivity.walsh_maps(images, window=cfg["kernel"])
        return sensitivity.inati_maps(images, window=cfg["kernel"])

    @staticmethod
    def _noncartesian(unit: Unit, ctx: Context, cfg: dict[str, Any]) -> Any:
        xp = ctx.device.xp
        eps = ctx.config["noncartesian"]["eps"]
        weights = unit.weights
        if weights is None:
            weights = xp.ones(unit.coord.shape[:-1], dtype=xp.float32)
        if cfg["method"] == "lowres":
            from recon.noncart.reconstruct import calibration_maps

            return calibration_maps(
                unit.data,
                unit.coord,
                unit.shape,
                weights=weights,
                radius=cfg["radius"],
                eps=eps,
                device=ctx.device,
            )
        from recon.coils import sensitivity

        size = min(cfg["calib_size"], *unit.shape)
        calib = sensitivity.noncartesian_calibration(
            unit.data, unit.coord, (size,) * len(unit.shape), dcf=weights, eps=eps
        )
        if cfg["method"] == "espirit":
            return sensitivity.espirit_maps(
                calib,
                tuple(unit.shape),
                kernel_width=cfg["kernel"],
                calib_width=size,
                thresh=cfg["threshold"],
                crop=cfg["crop"],
            )
        images = sensitivity.calibration_images(calib, tuple(unit.shape))
        if cfg["method"] == "walsh":
            return sensitivity.walsh_maps(images, window=cfg["kernel"])
        return sensitivity.inati_maps(images, window=cfg["kernel"])


def merged_kspace(unit: Unit) -> Any:
    """Imaging and calibration lines on one grid ``(ncoils, nz, ny, nx)`` (imaging lines only
    when the calibration is a separate scan)."""
    if unit.calib is None or unit.calib_separate:
        return unit.data
    xp = array_module(unit.data)
    k = unit.data.copy()
    sz, sy = unit.calib_region
    region = k[:, sz, sy, :]
    have = xp.abs(unit.calib).sum(axis=(0, -1)) > 0
    k[:, sz, sy, :] = xp.where(have[None, :, :, None], unit.calib, region)
    return k


class Grappa(Stage):
    """GRAPPA (2D, or 3D with CAIPIRINHA shift) with weights calibrated once per slice.

    The missing lines are filled in image space (:class:`recon.cartesian.grappa.GrappaRecon`),
    the acquired lines (calibration lines included) are put back, and lines outside the
    acquired extent are left empty for the partial Fourier stage.
    """

    name = "grappa"

    def __call__(self, unit: Unit, ctx: Context) -> None:
        recon = ctx.calibrated("grappa", _slice_key(unit), lambda: self._calibrate(unit, ctx))
        ndim = unit.ndim
        ks = merged_kspace(unit)
        ks = ks[:, 0] if ndim == 2 else ks
        axes = tuple(range(1, ndim + 1))
        filled = fftc(recon(ks), axes=axes)
        xp = ctx.device.xp
        sampled = xp.asarray(unit.sampled)
        keep = sampled[0] if ndim == 2 else sampled
        filled = xp.where(keep[..., None], ks, filled)
        extent = unit.extent if unit.extent is not None else _extent_box(to_host(unit.sampled))
        box = xp.asarray(extent)
        filled = filled * (box[0] if ndim == 2 else box)[..., None]
        unit.data = (filled[:, None] if ndim == 2 else filled).astype(xp.complex64)

    @staticmethod
    def _calibrate(unit: Unit, ctx: Context) -> Any:
        from recon.cartesian.grappa import GrappaRecon, calibrate, detect_lattice

        ry, rz = unit.acceleration
        ndim = unit.ndim
        if unit.calib is None:
            raise InputError(
                f"{ctx.source}: GRAPPA needs calibration lines for slice "
                f"{unit.key.get('slice', 0)}; none were acquired with it"
            )
        lattice_mask = to_host(unit.lattice)
        lattice = detect_lattice(lattice_mask if ndim == 3 else lattice_mask[0], ry, rz)
        acs = unit.calib[:, 0] if ndim == 2 else unit.calib
        cfg = ctx.config["grappa"]
        kernel = cfg["kernel_2d"] if ndim == 2 else cfg["kernel_3d"]
        kern = calibrate(acs, ry=ry, rz=rz, shift=lattice.shift, kernel=kernel, reg=cfg["lambda"])
        shape = unit.shape[1:] if ndim == 2 else unit.shape
        return GrappaRecon(kern, shape, lattice)


def _extent_box(sampled: np.ndarray) -> np.ndarray:
    """Boolean ``(nz, ny)``: inside the bounding box of the acquired lines."""
    zs, ys = np.nonzero(sampled)
    box = np.zeros_like(sampled)
    box[zs.min() : zs.max() + 1, ys.min() : ys.max() + 1] = True
    return box


class PartialFourier(Stage):
    """Partial Fourier along ky per coil (:mod:`recon.cartesian.partial_fourier`)."""

    name = "partial_fourier"

    def __call__(self, unit: Unit, ctx: Context) -> None:
        from recon.cartesian.partial_fourier import partial_fourier

        cfg = ctx.config["partial_fourier"]
        unit.data = partial_fourier(
            unit.data, cfg["method"], axis=-2, ndim=unit.ndim, iterations=cfg["iterations"]
        )


class Fft(Stage):
    """Per-coil images by the centred inverse FFT."""

    name = "fft"

    def __call__(self, unit: Unit, ctx: Context) -> None:
        unit.coils = ifftc(unit.data, axes=(-3, -2, -1))
        unit.data = None


class B0Map(Stage):
    """Echo-to-echo phase of the per-coil images, summed for the B0 field map
    (:class:`recon.cartesian.b0map.EchoPhase`); the images pass on unchanged."""

    name = "b0map"

    def __call__(self, unit: Unit, ctx: Context) -> None:
        ctx.echo_phase.add(unit.key, unit.coils)


class Combine(Stage):
    """Coil combination (:mod:`recon.coils.combine`): root-sum-of-squares, Roemer with the
    coil maps (``sensitivity``), or adaptive (Inati maps from the images themselves)."""

    name = "combine"

    def __call__(self, unit: Unit, ctx: Context) -> None:
        from recon.coils.combine import adaptive_combine, combine_roemer, combine_rss

        coils = unit.coils
        method = ctx.config["combine"]["method"]
        if method == "rss":
            image = combine_rss(coils)
        elif method == "sensitivity":
            image = combine_roemer(coils, unit.maps.reshape(coils.shape))
        else:
            spatial = coils if unit.ndim == 3 else coils[:, 0]
            image = adaptive_combine(spatial, method="inati")
        unit.image = image.reshape(_image_shape(unit))
        unit.coils = None


def _image_shape(unit: Unit) -> tuple[int, int, int]:
    shape = unit.shape
    return tuple(shape) if len(shape) == 3 else (1, *shape)


class Sense(Stage):
    """Cartesian CG-SENSE or pics (L1-wavelet / TV / LLR) with the coil maps."""

    name = "sense"
    regularized = False

    def __call__(self, unit: Unit, ctx: Context) -> None:
        from recon.iterative.pics import pics

        if unit.family == "noncartesian":
            return self._noncartesian(unit, ctx)
        xp = ctx.device.xp
        ndim = unit.ndim
        ks = merged_kspace(unit)
        sampled = xp.asarray(unit.sampled)
        nx = ks.shape[-1]
        mask = xp.broadcast_to(sampled[..., None], (*sampled.shape, nx))
        maps = unit.maps
        if ndim == 2:
            ks, maps, mask = ks[:, 0], maps[:, 0], mask[0]
        if self.regularized:
            cfg = ctx.config["pics"]
            options = dict(
                regularizers=cfg["regularizer"], iterations=cfg["iterations"], solver=cfg["solver"]
            )
        else:
            cfg = ctx.config["sense"]
            options = dict(regularizers="", iterations=cfg["iterations"], l2=cfg["lambda"])
        image = pics(ks, maps, mask=mask, ndim=ndim, **options)
        unit.image = image[0].reshape(_image_shape(unit))
        unit.data = None

    def _noncartesian(self, unit: Unit, ctx: Context) -> None:
        from recon.noncart.reconstruct import noncart_pics

        cfg = ctx.config["noncartesian"]
        image = noncart_pics(
            unit.data,
            unit.coord,
            unit.maps,
            regularizers=ctx.config["pics"]["regularizer"],
            weights=unit.weights,
            iterations=cfg["iterations"],
            eps=cfg["eps"],
            device=ctx.device,
        )
        unit.image = image.reshape(_image_shape(unit))
        unit.data = None


class Pics(Sense):
    """Regularised SENSE (``[pics]``), Cartesian or non-Cartesian."""

    name = "pics"
    regularized = True


class DensityCompensation(Stage):
    """Density compensation weights (``noncartesian.dcf``), once per trajectory."""

    name = "dcf"

    def __call__(self, unit: Unit, ctx: Context) -> None:
        from recon.noncart.reconstruct import density_weights

        cfg = ctx.config["noncartesian"]
        unit.weights = ctx.calibrated(
            "dcf",
            _slice_key(unit),
            lambda: density_weights(
                unit.coord, unit.shape, cfg["dcf"], eps=cfg["eps"], device=ctx.device
            ),
        )


class Grid(Stage):
    """Gridding: adjoint NUFFT of the density-compensated samples, per coil."""

    name = "grid"

    def __call__(self, unit: Unit, ctx: Context) -> None:
        from recon.noncart.nufft import NufftPlan

        cfg = ctx.config["noncartesian"]
        plan = ctx.calibrated(
            "nufft",
            _slice_key(unit),
            lambda: NufftPlan(unit.shape, unit.coord, eps=cfg["eps"], device=ctx.device),
        )
        samples = unit.data if unit.weights is None else unit.data * unit.weights
        coils = plan.adjoint(samples)
        unit.coils = coils.reshape(unit.ncoils, *_image_shape(unit))
        unit.data = None


class CgSense(Stage):
    """Non-Cartesian CG-SENSE; the encoding operator (NUFFT plan, Toeplitz PSF) is built once
    per slice and trajectory and reused for every repetition. With a field map
    (``noncartesian.field_map``) the operator models the off-resonance phase during the
    readout by time segmentation (:class:`recon.noncart.offresonance.OffResonanceSense`;
    sample ``i`` of a readout at ``TE + i dwell``)."""

    name = "cg-sense"

    def __call__(self, unit: Unit, ctx: Context) -> None:
        from recon.iterative.solvers import conjugate_gradient
        from recon.noncart.reconstruct import NoncartSense

        cfg = ctx.config["noncartesian"]
        if ctx.field_map is not None:
            op = ctx.calibrated("offresonance", _slice_key(unit), lambda: _offres(unit, ctx))
        else:
            op = ctx.calibrated(
                "toeplitz",
                _slice_key(unit),
                lambda: NoncartSense(
                    unit.coord,
                    unit.maps,
                    weights=unit.weights,
                    eps=cfg["eps"],
                    toeplitz=cfg["toeplitz"],
                    device=ctx.device,
                ),
            )
        image = conjugate_gradient(
            op.normal, op.rhs(unit.data), iterations=cfg["iterations"], tol=1e-6
        )
        unit.image = image.reshape(_image_shape(unit))
        unit.data = None


def _offres(unit: Unit, ctx: Context) -> Any:
    """The off-resonance encoding operator of a unit (see :class:`CgSense`)."""
    from recon.noncart.offresonance import OffResonanceSense

    cfg = ctx.config["noncartesian"]
    slice_value = unit.key.get("slice", 0)
    field_hz = ctx.field_map.get(slice_value)
    shape = tuple(unit.shape)
    if field_hz is None or tuple(field_hz.shape) != shape:
        have = None if field_hz is None else tuple(field_hz.shape)
        raise InputError(
            f"noncartesian.field_map {cfg['field_map']}: slice {slice_value} needs a map of "
            f"shape {shape} (z, y, x), the file gives {have}"
        )
    xp = ctx.device.xp
    pts = unit.coord.shape[:-1]
    readout = ctx.echo_time_s + np.arange(pts[-1]) * unit.dwell_time_us * 1e-6
    times = xp.asarray(np.broadcast_to(readout, pts).astype(np.float32))
    return OffResonanceSense(
        unit.coord,
        unit.maps.reshape(unit.ncoils, *shape),
        xp.asarray(field_hz, dtype=xp.float32),
        times,
        weights=unit.weights,
        eps=cfg["eps"],
        toeplitz=cfg["toeplitz"],
        device=ctx.device,
    )


#: Stage classes by their name in the config chains.
STAGE_CLASSES: dict[str, type[Stage]] = {
    cls.name: cls
    for cls in (
        Prewhiten,
        Compress,
        SensitivityMaps,
        Grappa,
        PartialFourier,
        Fft,
        B0Map,
        Combine,
        Sense,
        Pics,
        DensityCompensation,
        Grid,
        CgSense,
    )
}


def build_chain(names: list[str]) -> list[Stage]:
    """Stage objects for a validated chain of names."""
    try:
        return [STAGE_CLASSES[name]() for name in names]
    except KeyError as error:
        raise ConfigError(f"unknown stage {error.args[0]!r}") from None
