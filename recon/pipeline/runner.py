"""The pipeline runner: plan from the header, reconstruct unit by unit, write outputs.

:func:`plan_run` reads only the headers of an ISMRMRD file (no samples), decides the
acquisition type (Cartesian 2D/3D, accelerated or not, non-Cartesian, EPI), takes the stage
chain of the scanner config for it and checks that the chain is possible for these data
(GRAPPA and Cartesian coil maps need calibration lines, ``noise.required`` needs noise
readouts). A bad config or an impossible choice therefore fails before any work starts.
EPI units are sorted by :func:`recon.cartesian.epi.sort_epi` (ramp-sampling regridding, Nyquist
ghost correction from the navigators of the same slice and repetition) and then run the
Cartesian stages; the separate ACS scan calibrates GRAPPA once per slice for the series.
Multiband EPI (``MultibandFactor`` > 1 in the userParameters, see
:func:`recon.cartesian.epi.multiband_parameters`) is reconstructed per true slice: the
collapsed group is sorted and ghost-corrected, the slice is split off by split-slice GRAPPA
(calibrated once per group on the single-band reference, through the context cache), and the
Cartesian stages follow with the slice's single-band reference as its separate ACS.

:func:`reconstruct` then sorts and reconstructs one *unit* at a time (one slice of a 2D
scan or one volume of a 3D scan, for each repetition / contrast / phase / set), so memory
stays bounded by one unit's k-space. Calibrations are built once per slice and reused
across repetitions (:class:`recon.pipeline.stages.Context`). Per-stage wall time and peak
traced memory are recorded.

:func:`run_file` does both and writes the images (NIfTI + JSON sidecar, PNG, ISMRMRD images
with Meta, DICOM; a series as 4D NIfTI with the TR, optionally a temporal SNR map) through
:mod:`recon.io.export` into a staging folder beside the output
folder, moved into place only when complete; the sidecar, the Meta attributes, ``run.json``,
``provenance.json`` and ``config_used.toml`` record the exact configuration, so ``recon run IN
--config OUT/config_used.toml`` reproduces the images.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import shutil
import time
import tracemalloc
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from recon import __version__
from recon.backend import Device, to_host
from recon.cartesian.b0map import EchoPhase, echo_pairs
from recon.cartesian.epi import (
    NAVIGATOR_FITS,
    is_sbr,
    multiband_parameters,
    sort_epi,
    sort_sbr,
)
from recon.cartesian.grappa import find_acs
from recon.errors import ConfigError, InputError
from recon.geometry import Geometry, stack_slices
from recon.io.flags import REVERSE, ReadoutKind, has_flag
from recon.io.ismrmrd import RawData, read_dataset
from recon.io.sort import (
    CALIBRATION_KINDS,
    IMAGING_KINDS,
    noise_samples,
    sort_cartesian,
    sort_noncartesian,
)
from recon.iterative.blas import limit_blas_threads
from recon.pipeline.config import (
    ScannerConfig,
    Selection,
    header_facts,
    load_config,
    select_config,
)
from recon.pipeline.stages import Context, Stage, Unit, build_chain

#: Counters that make one unit (besides the slice), outermost first.
FRAME_AXES = ("contrast", "phase", "repetition", "set")

#: Output formats of ``recon run`` (``--format``).
FORMATS = ("nifti", "png", "ismrmrd", "dicom")

ProgressCallback = Callable[[str, int, int], None]


@dataclass
class Plan:
    """What will be run on a file, decided from its headers only."""

    raw: RawData
    config: ScannerConfig
    selection: Selection
    acquisition: str
    chain: list[str]
    device: Device
    formats: list[str]
    slices: list[int]
    frames: list[tuple[int, ...]]
    ncoils: int
    multiband: Any = None  # recon.cartesian.epi.Multiband of a multiband EPI file

    @property
    def family(self) -> str:
        return "noncartesian" if self.acquisition == "noncartesian" else "cartesian"

    @property
    def nunits(self) -> int:
        return len(self.slices) * len(self.frames)

    @property
    def sorted_slices(self) -> list[int]:
        """The ``idx.slice`` values the units are sorted by: the collapsed groups
        ``0 .. G-1`` of a multiband file (each yields its ``MB`` slices), else :attr:`slices`."""
        if self.multiband is None:
            return self.slices
        return sorted({s % self.multiband.groups for s in self.slices})


@dataclass
class StageTiming:
    """Accumulated cost of one stage over all units."""

    seconds: float = 0.0
    calls: int = 0
    peak_bytes: int = 0


@dataclass
class Reconstruction:
    """Images of a run in memory, with what it took to make them."""

    images: np.ndarray  # (nframes, nz, ny, nx), float32 magnitude or complex64
    geometry: Geometry
    frames: list[tuple[int, ...]]
    timings: dict[str, StageTiming]
    calibrations: dict[str, int]
    peak_memory_bytes: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    field_map_hz: np.ndarray | None = None  # (nslices * nz, ny, nx) with stage 'b0map'


@dataclass
class RunResult:
    """Summary of ``recon run`` (also written as ``run.json``)."""

    input: str
    output_dir: str
    config: str
    selection: dict[str, Any]
    acquisition: str
    chain: list[str]
    device: str
    outputs: list[str]
    image_shape: list[int]
    units: int
    seconds: float
    timings: dict[str, dict[str, float]]
    calibrations: dict[str, int]
    peak_memory_bytes: int
    notes: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------
# planning


def _accelerated(raw: RawData) -> bool:
    ry, rz = raw.header.encoding.acceleration
    return ry * rz > 1


def _is_noncartesian(raw: RawData, rows: np.ndarray) -> bool:
    """A stored trajectory, or a header naming a non-Cartesian trajectory."""
    if (raw.head.trajectory_dimensions[rows] > 0).any():
        return True
    return raw.header.encoding.trajectory in ("radial", "spiral", "goldenangle")


def _is_epi(raw: RawData, rows: np.ndarray) -> bool:
    """A header naming an EPI trajectory, or phase-correction navigators with bipolar (partly
    reversed) imaging readouts."""
    if raw.header.encoding.trajectory == "epi":
        return True
    navigators = raw.select(ReadoutKind.PHASE_CORRECTION, encoding=0)
    return navigators.size > 0 and bool(has_flag(raw.head.flags[rows], REVERSE).any())


def acquisition_type(raw: RawData) -> str:
    """One of :data:`recon.pipeline.config.ACQUISITIONS` for the file's first encoding."""
    rows = raw.select(*IMAGING_KINDS, encoding=0)
    if rows.size == 0:
        raise InputError(f"{raw.path}: no imaging readouts")
    if _is_epi(raw, rows):
        if raw.header.encoding.encoded_matrix[2] > 1:
            raise InputError(f"{raw.path}: 3D EPI is not supported (2D multi-slice EPI is)")
        return "epi" + ("_accelerated" if _accelerated(raw) else "")
    if _is_noncartesian(raw, rows):
        return "noncartesian"
    dims = "3d" if raw.header.encoding.encoded_matrix[2] > 1 else "2d"
    return f"cartesian_{dims}" + ("_accelerated" if _accelerated(raw) else "")


def _check_possible(
    raw: RawData, config: ScannerConfig, acquisition: str, chain: list[str]
) -> None:
    where = f"{raw.path.name} with scanner config {config.name}"
    calib = raw.select(*CALIBRATION_KINDS, encoding=0)
    family = "noncartesian" if acquisition == "noncartesian" else "cartesian"
    if "grappa" in chain and calib.size == 0:
        raise ConfigError(
            f"{where}: GRAPPA chosen (chain.{acquisition}) but the file has no calibration "
            "data (no readouts flagged PARALLEL_CALIBRATION); choose a SENSE/pics chain "
            "with --set or a config for these data"
        )
    if family == "cartesian" and "sensmaps" in chain and _accelerated(raw) and calib.size == 0:
        raise ConfigError(
            f"{where}: coil maps (chain.{acquisition}) need calibration lines and the "
            "accelerated file has none"
        )
    if config["combine"]["method"] == "sensitivity" and "combine" in chain:
        if "sensmaps" not in chain:
            raise ConfigError(
                f"{where}: 'combine.method' = 'sensitivity' needs 'sensmaps' in chain.{acquisition}"
            )
    if config["noise"]["required"] and raw.select(ReadoutKind.NOISE).size == 0:
        raise ConfigError(f"{where}: noise.required is true and the file has no noise readouts")
    if acquisition.startswith("epi") and config["epi"]["ghost_correction"]:
        if raw.select(ReadoutKind.PHASE_CORRECTION, encoding=0).size == 0:
            raise InputError(
                f"{where}: EPI without phase-correction navigators; set "
                "epi.ghost_correction=false to reconstruct without ghost correction"
            )
    if "b0map" in chain:
        try:
            echo_pairs(raw.header.te_ms)
        except InputError as error:
            raise InputError(f"{where}: {error}") from None
        rows = raw.select(*IMAGING_KINDS, encoding=0)
        if np.unique(raw.head.contrast[rows]).size < 2:
            raise InputError(f"{where}: a B0 map needs two or more echoes (contrasts) of data")
    field_map = config["noncartesian"]["field_map"]
    if family == "noncartesian" and field_map:
        if "cg-sense" not in chain:
            raise ConfigError(
                f"{where}: noncartesian.field_map needs 'cg-sense' in chain.{acquisition}"
            )
        if not Path(field_map).is_file():
            raise ConfigError(f"{where}: noncartesian.field_map {field_map} does not exist")
    if family == "noncartesian":
        rows = raw.select(*IMAGING_KINDS, encoding=0)
        if (raw.head.trajectory_dimensions[rows] == 0).any():
            raise InputError(f"{raw.path}: non-Cartesian readouts without a stored trajectory")


def _with_b0map(config: ScannerConfig, acquisition: str, chain: list[str]) -> list[str]:
    """The chain with stage ``b0map`` after ``fft`` when ``output.b0_map`` asks for it."""
    if not config["output"]["b0_map"] or "b0map" in chain:
        return chain
    if "fft" not in chain:
        raise ConfigError(
            f"scanner config {config.name}: output.b0_map needs per-coil images, a chain with "
            f"'fft' (chain.{acquisition} is {' > '.join(chain)})"
        )
    at = chain.index("fft") + 1
    return [*chain[:at], "b0map", *chain[at:]]


def plan_run(
    raw: RawData,
    *,
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    device: str | None = None,
    formats: Sequence[str] | None = None,
) -> Plan:
    """Choose the config and chain for ``raw`` and check they can run (headers only).

    Parameters
    ----------
    raw : RawData
        From :func:`recon.io.ismrmrd.read_dataset`.
    config : str or Path, optional
        Config name or TOML path; chosen from the header when None.
    overrides : sequence of str
        ``section.key=value`` settings (``--set``).
    device : str, optional
        ``auto``, ``cpu``, ``cuda``; the config's ``compute.device`` when None.
    formats : sequence of str, optional
        Output formats; the config's ``output.formats`` when None.

    Raises
    ------
    ConfigError
        Unknown config, invalid values, impossible chain for these data.
    """
    rows = raw.select(*IMAGING_KINDS, encoding=0)
    if rows.size == 0:
        raise InputError(f"{raw.path}: no imaging readouts")
    ncoils = int(raw.head.active_channels[rows[0]])
    if config is None:
        selection = select_config(header_facts(raw.header, ncoils))
        name: str | Path = selection.name
    else:
        selection = Selection(str(config), (), False)
        name = config
    cfg = load_config(name, overrides)
    if formats is not None:
        formats = [f.strip().lower() for f in formats if f.strip()]
        for fmt in formats:
            if fmt not in FORMATS:
                raise ConfigError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
        cfg.values["output"]["formats"] = list(formats)
    if device is not None:
        cfg.values["compute"]["device"] = device
    dev = Device(cfg["compute"]["device"])
    acquisition = acquisition_type(raw)
    chain = _with_b0map(cfg, acquisition, cfg.chain(acquisition))
    _check_possible(raw, cfg, acquisition, chain)
    slices = sorted(int(s) for s in np.unique(raw.head.slice[rows]))
    multiband = None
    if acquisition.startswith("epi"):
        multiband = multiband_parameters(raw)
        if multiband is not None:
            # G from the header's slice limit: a stream's first unit holds only group 0
            limit = raw.header.encoding.limit("slice")
            groups = limit.maximum + 1 if limit is not None else len(slices)
            if any(not 0 <= s < groups for s in slices):
                raise InputError(
                    f"{raw.path}: multiband slice groups {slices} are not within 0..{groups - 1}"
                )
            multiband = replace(multiband, groups=groups)
            slices = list(range(groups * multiband.factor))
    three_d = raw.header.encoding.encoded_matrix[2] > 1
    if three_d and len(slices) > 1:
        raise InputError(
            f"{raw.path}: {len(slices)} slabs of a 3D acquisition; the pipeline reconstructs "
            "single-slab 3D or 2D multi-slice data"
        )
    counters = [np.unique(getattr(raw.head, axis)[rows]) for axis in FRAME_AXES]
    frames = [
        tuple(int(v) for v in combo)
        for combo in np.array(np.meshgrid(*counters, indexing="ij")).reshape(len(FRAME_AXES), -1).T
    ]
    return Plan(
        raw=raw,
        config=cfg,
        selection=selection,
        acquisition=acquisition,
        chain=chain,
        device=dev,
        formats=list(cfg["output"]["formats"]),
        slices=slices,
        frames=frames,
        ncoils=ncoils,
        multiband=multiband,
    )


# --------------------------------------------------------------------------------------
# units


def _cartesian_units(plan: Plan, slice_value: int, repetition: int):
    raw = plan.raw
    part = sort_cartesian(
        raw,
        slices=[slice_value],
        repetitions=[repetition],
        remove_oversampling=True,
        with_noise=False,
    )
    dev = plan.device
    batch_shape = part.kspace.shape[: len(part.axes)]
    for index in np.ndindex(*batch_shape):
        key = {axis: int(part.counters[axis][i]) for axis, i in zip(part.axes, index, strict=True)}
        calib = calib_mask = None
        if part.calib is not None:
            calib_mask = part.calib_mask[index]
            if calib_mask.any():
                calib = dev.to(part.calib[index])
        sampled = part.mask[index].copy()
        if calib is not None:
            sz, sy = part.calib_region
            sampled[sz, sy] |= calib_mask
        yield (
            Unit(
                key=key,
                family="cartesian",
                shape=tuple(part.shape),
                data=dev.to(part.kspace[index]),
                acceleration=part.acceleration,
                dwell_time_us=part.dwell_time_us,
                sampled=sampled,
                lattice=part.mask[index],
                calib=calib,
                calib_region=part.calib_region if calib is not None else None,
            ),
            part.geometry[0],
        )


def _noncartesian_units(plan: Plan, slice_value: int, repetition: int):
    part = sort_noncartesian(
        plan.raw, slices=[slice_value], repetitions=[repetition], with_noise=False
    )
    dev = plan.device
    batch_shape = part.samples.shape[: len(part.axes)]
    for index in np.ndindex(*batch_shape):
        key = {axis: int(part.counters[axis][i]) for axis, i in zip(part.axes, index, strict=True)}
        yield (
            Unit(
                key=key,
                family="noncartesian",
                shape=tuple(part.image_shape),
                data=dev.to(part.samples[index]),
                dwell_time_us=part.dwell_time_us,
                coord=dev.to(part.coord[index]),
            ),
            part.geometry[0],
        )


def _extent(raw: RawData, lattice: np.ndarray) -> np.ndarray:
    """EPI lines ``(1, ny)`` the acquisition covers: the encoded ``kspace_encoding_step_1``
    range (partial Fourier: lines beyond it stay empty), all lines without limits."""
    ny = lattice.shape[-1]
    extent = np.ones_like(lattice)
    limit = raw.header.encoding.limit("kspace_encoding_step_1")
    if limit is not None:
        extent[:] = False
        extent[0, max(limit.minimum, 0) : min(limit.maximum, ny - 1) + 1] = True
    return extent


def _epi_units(plan: Plan, slice_value: int, repetition: int):
    """One unit per EPI slice and repetition: regridded, ghost-corrected k-space
    ``(ncoils, 1, ny, nx)``; the ACS lines (a separate scan) only calibrate GRAPPA."""

    raw, cfg = plan.raw, plan.config["epi"]
    epi = sort_epi(
        raw,
        repetition=repetition,
        correct=cfg["ghost_correction"],
        slices=[slice_value],
        fit_order=NAVIGATOR_FITS[cfg["navigator_fit"]],
        per_segment=cfg["per_segment"],
    )
    dev = plan.device
    kspace = epi.kspace[0]  # (ncoils, ny, nx)
    ny = kspace.shape[-2]
    lattice = (np.abs(kspace).sum(axis=(0, -1)) > 0)[None]  # (1, ny)
    extent = _extent(raw, lattice)
    rows = raw.select(*IMAGING_KINDS, encoding=0)
    calib = calib_region = None
    if epi.calib is not None:
        calib = dev.to(epi.calib[0][:, None])  # (ncoils, 1, cy, nx)
        cy = epi.calib.shape[-2]
        calib_region = (slice(0, 1), slice(epi.calib_first, epi.calib_first + cy))
    key = {"slice": slice_value, "repetition": repetition}
    yield (
        Unit(
            key=key,
            family="cartesian",
            shape=(1, ny, kspace.shape[-1]),
            data=dev.to(kspace[:, None]),
            acceleration=(epi.acceleration, 1),
            dwell_time_us=float(np.median(raw.head.sample_time_us[rows])),
            sampled=lattice,
            lattice=lattice,
            calib=calib,
            calib_region=calib_region,
            calib_separate=True,
            extent=extent,
        ),
        epi.geometry,
    )


def _sms_epi_units(plan: Plan, group: int, repetition: int, ctx: Context):
    """Multiband EPI: the ``MB`` units of collapsed group ``g`` (true slices ``g + b G``).

    The group's k-space is sorted and ghost-corrected once, and split by split-slice GRAPPA
    into each slice's k-space ``(ncoils, 1, ny, nx)`` on the in-plane lattice; a slice's
    single-band reference lines are its separate ACS. The references (``sms_reference``, per
    slice) and the separation kernels (``slice_grappa``, per group) go through the context
    cache, so a series calibrates them once."""
    from recon.cartesian import slice_grappa  # imports recon.sim: not at start-up

    raw, cfg, mb = plan.raw, plan.config["epi"], plan.multiband
    members = mb.members(group)
    options = {
        "correct": cfg["ghost_correction"],
        "fit_order": NAVIGATOR_FITS[cfg["navigator_fit"]],
    }
    references = [
        ctx.calibrated("sms_reference", s, lambda s=s: sort_sbr(raw, slices=[s], **options))
        for s in members
    ]
    acs = [find_acs(np.abs(r.kspace[0]).sum(axis=(0, 2)) > 0)[1] for r in references]

    def separation() -> Any:
        sbr = sort_sbr(raw, slices=members, **options)
        return slice_grappa.calibrate(sbr.kspace, shift=mb.shift, ry=sbr.acceleration, acs=acs[0])

    kernel = ctx.calibrated("slice_grappa", group, separation)
    epi = sort_epi(raw, repetition=repetition, slices=[group], readouts=~is_sbr(raw), **options)
    separated = slice_grappa.separate(kernel, epi.kspace[0])  # (mb, ncoils, ny, nx)
    dev = plan.device
    ny, nx = separated.shape[-2:]
    lattice = (np.abs(epi.kspace[0]).sum(axis=(0, -1)) > 0)[None]  # (1, ny)
    extent = _extent(raw, lattice)
    rows = raw.select(*IMAGING_KINDS, encoding=0)
    dwell = float(np.median(raw.head.sample_time_us[rows]))
    for band, slice_value in enumerate(members):
        yield (
            Unit(
                key={"slice": slice_value, "repetition": repetition},
                family="cartesian",
                shape=(1, ny, nx),
                data=dev.to(separated[band][:, None]),
                acceleration=(epi.acceleration, 1),
                dwell_time_us=dwell,
                sampled=lattice,
                lattice=lattice,
                calib=dev.to(references[band].kspace[0][:, None, acs[band]]),  # (nc, 1, cy, nx)
                calib_region=(slice(0, 1), acs[band]),
                calib_separate=True,
                extent=extent,
            ),
            references[band].geometry,
        )


def _crop(image: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    index = tuple(
        slice(n // 2 - m // 2, n // 2 - m // 2 + m) if m < n else slice(None)
        for n, m in zip(image.shape[-3:], shape, strict=True)
    )
    return image[(..., *index)]


# --------------------------------------------------------------------------------------
# reconstruction


def _noise_bandwidth(raw: RawData, config: ScannerConfig) -> float:
    value = raw.header.relative_noise_bandwidth
    if value is None:
        value = raw.header.user_parameters.get("relativeReceiverNoiseBandwidth")
    return float(value) if value else float(config["scanner"]["noise_bandwidth"])


def new_context(plan: Plan) -> Context:
    """The calibration context of a series: noise, bandwidth, empty calibration cache.

    Pass the same context to several :func:`reconstruct` calls (e.g. the MRD server, one
    call per streamed unit) to calibrate once per slice across all of them.
    """
    raw = plan.raw
    te_ms = raw.header.te_ms
    return Context(
        config=plan.config,
        device=plan.device,
        noise=noise_samples(raw) if "prewhiten" in plan.chain else None,
        noise_bandwidth=_noise_bandwidth(raw, plan.config),
        source=raw.path.name,
        field_map=_field_map(plan),
        echo_time_s=float(te_ms[0]) * 1e-3 if te_ms else 0.0,
        echo_phase=EchoPhase(te_ms) if "b0map" in plan.chain else None,
    )


def _field_map(plan: Plan) -> dict[int, np.ndarray] | None:
    """``noncartesian.field_map`` (NIfTI, Hz, on the output grid) per slice value: the whole
    volume for 3D, plane ``k`` for the ``k``-th slice of 2D multi-slice data."""
    name = plan.config["noncartesian"]["field_map"]
    if not name or plan.acquisition != "noncartesian" or "cg-sense" not in plan.chain:
        return None
    import nibabel as nib

    try:
        volume = np.asarray(nib.load(name).dataobj, dtype=np.float32)
    except Exception as error:  # nibabel raises several types for unreadable files
        raise InputError(f"noncartesian.field_map {name}: cannot read ({error})") from None
    volume = volume.reshape(*volume.shape[:3], *([1] * (3 - volume.ndim))).T  # (nz, ny, nx)
    if not np.isfinite(volume).all():
        raise InputError(f"noncartesian.field_map {name}: contains NaN or Inf")
    if plan.raw.header.encoding.encoded_matrix[2] > 1:
        return {value: volume for value in plan.slices}
    if volume.shape[0] != len(plan.slices):
        raise InputError(
            f"noncartesian.field_map {name}: {volume.shape[0]} planes for {len(plan.slices)} slices"
        )
    return {value: volume[k] for k, value in enumerate(plan.slices)}


def reconstruct(
    plan: Plan,
    *,
    context: Context | None = None,
    progress: ProgressCallback | None = None,
    measure_memory: bool = True,
) -> Reconstruction:
    """Run the plan's chain on every unit; images and geometry in memory.

    Parameters
    ----------
    plan : Plan
        From :func:`plan_run`.
    context : Context, optional
        Calibrations to reuse and extend (:func:`new_context`); a new one by default. The
        B0 map of a chain with ``b0map`` is made only with a new context (with a shared one,
        call ``context.echo_phase.field_map`` when every echo has been through).
    progress : callable, optional
        ``progress(description, done, total)`` after every unit.
    measure_memory : bool
        Trace Python/NumPy allocations (peak per stage and overall).
    """
    raw, cfg = plan.raw, plan.config
    stages: list[Stage] = build_chain(plan.chain)
    ctx = context if context is not None else new_context(plan)
    timings = {name: StageTiming() for name in ["sort", *plan.chain]}
    tracing = measure_memory and not tracemalloc.is_tracing()
    if tracing:
        tracemalloc.start()
    frame_index = {frame: i for i, frame in enumerate(plan.frames)}
    slice_index = {value: i for i, value in enumerate(plan.slices)}
    units = _cartesian_units
    if plan.multiband is not None:
        units = functools.partial(_sms_epi_units, ctx=ctx)
    elif plan.acquisition.startswith("epi"):
        units = _epi_units
    elif plan.family == "noncartesian":
        units = _noncartesian_units
    recon_matrix = raw.header.encoding.recon_matrix
    crop = cfg["output"]["crop_to_recon_matrix"] and plan.family == "cartesian"
    keep_complex = cfg["output"]["dtype"] == "complex64"
    images: np.ndarray | None = None
    geometries: dict[int, Geometry] = {}
    repetitions = sorted({frame[FRAME_AXES.index("repetition")] for frame in plan.frames})
    start = time.perf_counter()
    done, total = 0, plan.nunits
    overall_peak = 0
    try:
        with plan.device.use(), _blas_threads(plan):
            for slice_value in plan.sorted_slices:
                for repetition in repetitions:
                    t0 = time.perf_counter()
                    if tracing:
                        tracemalloc.reset_peak()
                    iterator = units(plan, slice_value, repetition)
                    while True:
                        try:
                            unit, geometry = next(iterator)
                        except StopIteration:
                            break
                        _account(timings["sort"], t0, tracing)
                        for stage in stages:
                            t1 = time.perf_counter()
                            if tracing:
                                tracemalloc.reset_peak()
                            stage(unit, ctx)
                            _account(timings[stage.name], t1, tracing)
                        image = to_host(unit.image)
                        image = image if keep_complex else np.abs(image).astype(np.float32)
                        if crop:
                            rx, ry, rz = recon_matrix
                            image = _crop(image, (min(rz, image.shape[0]), ry, rx))
                        if images is None:
                            nz = image.shape[0]
                            images = np.zeros(
                                (len(plan.frames), len(plan.slices) * nz, *image.shape[1:]),
                                dtype=image.dtype,
                            )
                        nz = image.shape[0]
                        s_index = slice_index[unit.key.get("slice", slice_value)]
                        frame = tuple(unit.key.get(axis, 0) for axis in FRAME_AXES)
                        f = frame_index[frame]
                        images[f, s_index * nz : (s_index + 1) * nz] = image
                        geometries.setdefault(s_index, geometry.with_shape(image.shape))
                        done += 1
                        if progress is not None:
                            progress(
                                f"slice {plan.slices[s_index]} repetition {repetition}", done, total
                            )
                        t0 = time.perf_counter()
                        if tracing:
                            tracemalloc.reset_peak()
        if tracing:
            overall_peak = max(t.peak_bytes for t in timings.values())
    finally:
        if tracing:
            tracemalloc.stop()
    if images is None:
        raise InputError(f"{raw.path}: nothing to reconstruct")
    ordered = [geometries[i] for i in range(len(plan.slices))]
    geometry = ordered[0] if len(ordered) == 1 else stack_slices(ordered)
    geometry = geometry.with_shape(tuple(images.shape[-3:]))
    field_map = None
    if ctx.echo_phase is not None and context is None:
        maps = [ctx.echo_phase.field_map([value]) for value in plan.slices]
        if crop:
            rx, ry, rz = recon_matrix
            maps = [_crop(m, (min(rz, m.shape[0]), ry, rx)) for m in maps]
        field_map = np.concatenate(maps)
    return Reconstruction(
        images=images,
        geometry=geometry,
        frames=plan.frames,
        timings=timings,
        calibrations=dict(ctx.counts),
        peak_memory_bytes=overall_peak,
        seconds=time.perf_counter() - start,
        notes=list(ctx.notes),
        field_map_hz=field_map,
    )


def _blas_threads(plan: Plan) -> Any:
    """Limit the CPU BLAS threads (``compute.blas_threads``) while units are reconstructed.

    The stages multiply many small matrices (coil mixing per unit, per-pixel systems);
    OpenBLAS threads spin-wait between such calls, which on a shared machine made the
    prewhitening of a 40-repetition series 30x slower (2.0 s vs 0.06 s, measured) than
    with one thread.
    """
    threads = int(plan.config["compute"]["blas_threads"])
    if threads == 0 or plan.device.is_gpu:
        return contextlib.nullcontext()
    return limit_blas_threads(threads)


def _account(timing: Any, t0: float, tracing: bool) -> None:
    timing.seconds += time.perf_counter() - t0
    timing.calls += 1
    if tracing:
        timing.peak_bytes = max(timing.peak_bytes, tracemalloc.get_traced_memory()[1])


# --------------------------------------------------------------------------------------
# outputs


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def provenance(plan: Plan, recon: Reconstruction) -> dict[str, Any]:
    """Everything needed to reproduce the images: input, config values, software, costs."""
    import scipy

    return {
        "input": {"path": str(plan.raw.path), "sha256": _sha256(plan.raw.path)},
        "config": plan.config.provenance(),
        "selection": {
            "automatic": plan.selection.automatic,
            "matched": list(plan.selection.matched),
        },
        "acquisition": plan.acquisition,
        "chain": plan.chain,
        "device": str(plan.device),
        "software": {
            "recon": __version__,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
        },
        "timings": {k: asdict(v) for k, v in recon.timings.items()},
        "calibrations": recon.calibrations,
        "peak_memory_bytes": recon.peak_memory_bytes,
        "seconds": recon.seconds,
    }


def _frame_indices(plan: Plan) -> dict[str, list[int]]:
    indices = {}
    for i, axis in enumerate(FRAME_AXES):
        values = [frame[i] for frame in plan.frames]
        if len(set(values)) > 1:
            indices[axis] = values
    return indices


def temporal_snr(images: np.ndarray) -> np.ndarray:
    """Temporal SNR of a series: mean over standard deviation (``ddof=1``) of the magnitude.

    Parameters
    ----------
    images : (nframes, nz, ny, nx) array, ``nframes >= 2``

    Returns
    -------
    (nz, ny, nx) float32
        Zero where the magnitude does not vary (e.g. outside the object without noise).
    """
    magnitude = np.abs(images).astype(np.float64)
    mean = magnitude.mean(axis=0)
    std = magnitude.std(axis=0, ddof=1)
    tsnr = np.divide(mean, std, out=np.zeros_like(mean), where=std > 0)
    return tsnr.astype(np.float32)


def write_outputs(
    plan: Plan, recon: Reconstruction, folder: Path, stem: str, extra: dict[str, Any]
) -> list[Path]:
    """Write every requested format into ``folder`` (which must exist)."""
    from recon.io.dicom import write_dicom
    from recon.io.export import export_nifti, make_sidecar, write_json, write_png
    from recon.io.images import write_ismrmrd_images

    header = plan.raw.header
    images = recon.images
    magnitude = not np.iscomplexobj(images)
    method = f"{plan.acquisition}: {' > '.join(plan.chain)} (scanner config {plan.config.name})"
    sidecar = make_sidecar(header, method=method, parameters=plan.config.as_dict())
    sidecar["ReconProvenance"] = extra
    outputs = []
    for fmt in plan.formats:
        if fmt == "nifti":
            outputs.append(
                export_nifti(folder / stem, images, recon.geometry, sidecar, magnitude=magnitude)
            )
            outputs.append(folder / f"{stem}.json")
        elif fmt == "png":
            outputs.append(write_png(folder / f"{stem}.png", np.abs(images[0])))
        elif fmt == "ismrmrd":
            meta = {
                "ReconConfig": plan.config.name,
                "ReconConfigSHA256": plan.config.sha256,
                "ReconOverrides": " ".join(plan.config.overrides) or "none",
                "ReconChain": " > ".join(plan.chain),
                "ReconProvenance": json.dumps(extra, default=str),
            }
            outputs.append(
                write_ismrmrd_images(
                    folder / f"{stem}_images.h5",
                    images,
                    recon.geometry,
                    header=header,
                    complex_values=not magnitude,
                    indices=_frame_indices(plan),
                    as_volume=plan.acquisition.startswith("cartesian_3d"),
                    meta=meta,
                )
            )
        elif fmt == "dicom":
            outputs.append(
                write_dicom(folder / f"{stem}_dicom", np.abs(images), recon.geometry, header=header)
            )
    if recon.field_map_hz is not None:
        pairs, delta_te_s = echo_pairs(header.te_ms)
        fieldmap_sidecar = {
            "Units": "Hz",
            "EchoTimes": [t * 1e-3 for t in header.te_ms],
            "EchoPairs": pairs,
            "EchoSpacing": delta_te_s,
            "Method": "phase of sum over coils of x_{e+1} conj(x_e), smoothed (recon b0map)",
            "ReconProvenance": extra,
        }
        b0map = export_nifti(
            folder / f"{stem}_b0map", recon.field_map_hz, recon.geometry, fieldmap_sidecar
        )
        outputs.append(b0map)
        outputs.append(folder / f"{stem}_b0map.json")
    if plan.config["output"]["tsnr_map"]:
        if images.shape[0] > 1:
            outputs.append(
                export_nifti(folder / f"{stem}_tsnr", temporal_snr(images), recon.geometry)
            )
        else:
            recon.notes.append("output.tsnr_map: a single frame has no temporal SNR; not written")
    config_path = folder / "config_used.toml"
    config_path.write_text(plan.config.to_toml())
    outputs.append(config_path)
    write_json(folder / "provenance.json", extra)
    outputs.append(folder / "provenance.json")
    return outputs


def _move_into(staging: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for item in sorted(staging.iterdir()):
        target = out_dir / item.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(item, target)
    staging.rmdir()


def run_file(
    in_path: str | Path,
    out_dir: str | Path,
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    device: str | None = None,
    formats: Sequence[str] | None = None,
    *,
    progress: ProgressCallback | None = None,
    measure_memory: bool = True,
) -> RunResult:
    """Reconstruct an ISMRMRD file with the pipeline and write the images.

    Parameters
    ----------
    in_path : str or Path
        ISMRMRD raw data.
    out_dir : str or Path
        Output folder (created; existing files of the same names are replaced).
    config : str or Path, optional
        Scanner config name or TOML path; chosen from the header when None.
    overrides : sequence of str
        ``section.key=value`` (``--set``).
    device : str, optional
        ``auto``, ``cpu``, ``cuda`` (default: the config's ``compute.device``).
    formats : sequence of str, optional
        Subset of :data:`FORMATS` (default: the config's ``output.formats``).
    progress : callable, optional
        ``progress(description, done, total)`` after every unit.
    measure_memory : bool
        Trace peak memory per stage.

    Returns
    -------
    RunResult
        Also written as ``run.json`` into ``out_dir``.

    Raises
    ------
    ConfigError, InputError, DeviceError
        Before anything is written when the config or the file is unusable.
    """
    in_path, out_dir = Path(in_path), Path(out_dir)
    raw = read_dataset(in_path)
    plan = plan_run(raw, config=config, overrides=overrides, device=device, formats=formats)
    recon = reconstruct(plan, progress=progress, measure_memory=measure_memory)
    extra = provenance(plan, recon)
    stem = in_path.name[: -len(".h5")] if in_path.name.endswith(".h5") else in_path.stem
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        written = write_outputs(plan, recon, staging, stem, extra)
        result = RunResult(
            input=str(in_path),
            output_dir=str(out_dir),
            config=plan.config.name,
            selection={
                "automatic": plan.selection.automatic,
                "matched": list(plan.selection.matched),
            },
            acquisition=plan.acquisition,
            chain=plan.chain,
            device=str(plan.device),
            outputs=[str(out_dir / p.name) for p in written] + [str(out_dir / "run.json")],
            image_shape=list(recon.images.shape),
            units=plan.nunits,
            seconds=recon.seconds,
            timings={k: asdict(v) for k, v in recon.timings.items()},
            calibrations=recon.calibrations,
            peak_memory_bytes=recon.peak_memory_bytes,
            notes=recon.notes,
        )
        (staging / "run.json").write_text(json.dumps(result.as_dict(), indent=2) + "\n")
        _move_into(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return result
