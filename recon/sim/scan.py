"""Simulate a 7 T head acquisition and write it as a real ISMRMRD file plus its ground truth.

:func:`simulate` draws the object, coils, noise and B0 map in physical space
(:mod:`recon.sim.phantom`, :mod:`recon.sim.coils`, :mod:`recon.sim.noise`), computes k-space
(:mod:`recon.sim.kspace`), and writes, in acquisition order:

1. ``noise_readouts`` noise-only readouts (flag 19 ``ACQ_IS_NOISE_MEASUREMENT``), sampled at
   ``noise_dwell_us`` (``sample_time_us``) with covariance ``noise_covariance * dwell_us /
   noise_dwell_us``;
2. with separate calibration, one calibration pass per slice (flag 20);
3. the imaging readouts: repetition, then slice (2D) or partition (3D), then line; embedded
   ACS lines carry flag 21 (calibration and imaging) or 20 (calibration only).

Acquisition headers: ``kspace_encode_step_1`` (ky index, or spoke/interleaf index),
``kspace_encode_step_2`` (kz index), ``slice``, ``repetition``; first/last in slice (7/8) and
repetition (13/14) and last in measurement (25) flags; ``center_sample``; ``position`` the
LPS centre (mm) of the slice (2D) or slab (3D); ``read_dir``/``phase_dir``/``slice_dir`` the
columns of the oblique rotation. Non-Cartesian readouts store their trajectory as
``(kx, ky[, kz])`` in grid units of the encoded matrix (``|k| <= N/2``, see the header's
``trajectoryDescription``).

The ground truth goes to ``<file>.truth.npz`` (see :class:`GroundTruth`); both files are
written under temporary names and renamed when complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recon.io.atomic import atomic_path
from recon.io.rawwrite import RawWriter, new_headers
from recon.noncart import trajectory as traj
from recon.sim.coils import coil_sensitivities
from recon.sim.header import build_header, encoded_geometry
from recon.sim.kspace import cartesian_kspace, noncartesian_kspace
from recon.sim.noise import correlated_noise, noise_covariance
from recon.sim.phantom import brain_phantom, field_map, head_radius
from recon.sim.sampling import LinePlan, calibration_plan, first_line, imaging_plan
from recon.sim.space import grid_points, rotation_matrix
from recon.sim.spec import SimSpec

# 1-based ISMRMRD flag numbers.
FIRST_IN_SLICE, LAST_IN_SLICE = 7, 8
FIRST_IN_REPETITION, LAST_IN_REPETITION = 13, 14
NOISE, CALIBRATION, CALIBRATION_AND_IMAGING, LAST_IN_MEASUREMENT = 19, 20, 21, 25

#: fMRI-like activation: centre (LPS mm, occipital cortex), radius (mm), signal change.
ACTIVATION_CENTRE_MM = np.array([0.0, 62.0, 8.0])
ACTIVATION_RADIUS_MM = 22.0
ACTIVATION_AMPLITUDE = 0.03
_BLOCK = 5  # frames per on/off block


def _bit(flag: int) -> np.uint64:
    return np.uint64(1 << (flag - 1))


def _channel_mask(ncoils: int) -> np.ndarray:
    """ISMRMRD ``channel_mask`` (16 x uint64, bit c set for each active channel c)."""
    mask = np.zeros(16, dtype=np.uint64)
    for c in range(ncoils):
        mask[c // 64] |= np.uint64(1 << (c % 64))
    return mask


@dataclass
class GroundTruth:
    """What was simulated (saved to ``<file>.truth.npz`` under these names).

    Attributes
    ----------
    image : (nz, ny, nx) complex64
        The object on the reconstruction grid (``nz`` slices or partitions), repetition 0.
    coil_maps : (ncoils, nz, ny, nx) complex64
        Sensitivities on the same grid, ``sum_c |S_c|^2 = 1``.
    noise_covariance : (ncoils, ncoils) complex128
        Covariance of the noise of one imaging sample.
    noise_readout_covariance : (ncoils, ncoils) complex128
        Covariance of the noise of one noise-readout sample (scaled by the dwell ratio).
    field_map : (nz, ny, nx) float32 or None
        B0 off-resonance (Hz) when simulated.
    kspace : (ncoils, nz, ny, nx_encoded) complex64 or None
        Cartesian: noise-free fully sampled k-space of repetition 0 (slices of a 2D stack
        along ``nz``; centred orthonormal FFT over y, x or z, y, x).
    mask : (repetitions, nz, ny) bool or None
        Cartesian: lines read (imaging and calibration passes) per repetition.
    coord : (nz or 1, nreadouts, nsamples, ndim) float32 or None
        Non-Cartesian: sample coordinates, grid units, DESIGN.md order (``[..., -1]`` = x).
    activation : (nz, ny, nx) float32
        Fractional signal change of the active region (zero without repetitions).
    timecourse : (repetitions,) float32
        The object of repetition ``t`` is ``image * (1 + activation * timecourse[t])``.
    counts : dict
        Readouts written per kind: ``noise``, ``calibration``, ``calibration_and_imaging``,
        ``imaging``, ``total``.
    path, truth_path : Path
        The ISMRMRD file and the ground-truth file.
    """

    image: np.ndarray
    coil_maps: np.ndarray
    noise_covariance: np.ndarray
    noise_readout_covariance: np.ndarray
    field_map: np.ndarray | None
    kspace: np.ndarray | None
    mask: np.ndarray | None
    coord: np.ndarray | None
    activation: np.ndarray
    timecourse: np.ndarray
    counts: dict[str, int] = field(default_factory=dict)
    path: Path | None = None
    truth_path: Path | None = None


def truth_path_for(path: str | Path) -> Path:
    """``<file>.truth.npz`` beside an ISMRMRD file."""
    path = Path(path)
    return path.with_name(path.name + ".truth.npz")


class _Writer:
    """Collects readout blocks into the ISMRMRD file with running counters."""

    def __init__(self, raw: RawWriter, spec: SimSpec, rotation: np.ndarray) -> None:
        self.raw = raw
        self.spec = spec
        self.rotation = rotation
        self.count = 0
        self.kinds = {"noise": 0, "calibration": 0, "calibration_and_imaging": 0, "imaging": 0}
        self.last_block: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None

    def heads(self, n: int, nsamples: int, position: np.ndarray) -> np.ndarray:
        head = new_headers(n, ncoils=self.spec.ncoils, nsamples=nsamples)
        head["scan_counter"] = self.count + np.arange(n)
        head["sample_time_us"] = self.spec.dwell_us
        head["position"] = position
        head["read_dir"] = self.rotation[:, 0]
        head["phase_dir"] = self.rotation[:, 1]
        head["slice_dir"] = self.rotation[:, 2]
        head["measurement_uid"] = self.spec.seed
        head["channel_mask"] = _channel_mask(self.spec.ncoils)
        return head

    def write(self, head: np.ndarray, data: np.ndarray, coords: np.ndarray | None = None):
        """Queue a block; the previous one is flushed (the last gets flag 25 at close)."""
        head["acquisition_time_stamp"] = np.round(
            (self.count + np.arange(len(head))) * self.spec.tr_ms / 2.5
        ).astype(np.uint32)
        self.count += len(head)
        self._flush()
        self.last_block = (head, data, coords)
        flags = head["flags"]
        noise = (flags & _bit(NOISE)) != 0
        both = (flags & _bit(CALIBRATION_AND_IMAGING)) != 0
        calib = ((flags & _bit(CALIBRATION)) != 0) & ~both
        self.kinds["noise"] += int(noise.sum())
        self.kinds["calibration"] += int(calib.sum())
        self.kinds["calibration_and_imaging"] += int(both.sum())
        self.kinds["imaging"] += int((~noise & ~calib & ~both).sum())

    def _flush(self) -> None:
        if self.last_block is not None:
            self.raw.append(*self.last_block)
            self.last_block = None

    def close(self) -> dict[str, int]:
        if self.last_block is not None:
            self.last_block[0]["flags"][-1] |= _bit(LAST_IN_MEASUREMENT)
        self._flush()
        return {**self.kinds, "total": self.count}


def _activation(spec: SimSpec, points: np.ndarray, image: np.ndarray):
    """Activation map (fraction) and block-design timecourse; zeros for a single frame."""
    t = np.arange(spec.repetitions)
    timecourse = ((t // _BLOCK) % 2 == 1).astype(np.float32)
    if spec.repetitions == 1:
        return np.zeros(image.shape, np.float32), timecourse
    near = np.linalg.norm(points - ACTIVATION_CENTRE_MM, axis=-1) < ACTIVATION_RADIUS_MM
    brain = (head_radius(points) < 0.84) & (np.abs(image) > 0.3)
    return (ACTIVATION_AMPLITUDE * (near & brain)).astype(np.float32), timecourse


def _noise_block(writer: _Writer, scene: _Scene, nsamples: int) -> None:
    """The noise-only readouts (flag 19) at the noise dwell time, first in the file."""
    spec = scene.spec
    n = spec.noise_readouts
    if n == 0:
        return
    head = writer.heads(n, nsamples, np.asarray(spec.centre_mm))
    head["flags"] = _bit(NOISE)
    head["sample_time_us"] = spec.noise_dwell
    data = np.zeros((n, spec.ncoils, nsamples), np.complex64)
    if spec.noise_std > 0:
        data += correlated_noise(scene.noise_cov, (n, nsamples), scene.rng).transpose(1, 0, 2)
    writer.write(head, data)


def _slice_positions(spec: SimSpec, rotation: np.ndarray) -> np.ndarray:
    """LPS centre (mm) of each 2D slice (one row: the slab centre in 3D)."""
    centre = np.asarray(spec.centre_mm, dtype=np.float64)
    if spec.volumetric:
        return centre[None, :]
    offsets = (np.arange(spec.slices) - spec.slices // 2) * spec.slice_thickness_mm
    return centre + offsets[:, None] * rotation[:, 2]


def _mark_slice_and_repetition(head: np.ndarray, first_rep: bool, last_rep: bool) -> None:
    head["flags"][0] |= _bit(FIRST_IN_SLICE)
    head["flags"][-1] |= _bit(LAST_IN_SLICE)
    if first_rep:
        head["flags"][0] |= _bit(FIRST_IN_REPETITION)
    if last_rep:
        head["flags"][-1] |= _bit(LAST_IN_REPETITION)


@dataclass
class _Scene:
    """Everything the readout writers need: the object seen by the coils, noise, geometry."""

    spec: SimSpec
    coil_images: np.ndarray  # (ncoils, nz, ny, nx) on the encoded grid
    activation: np.ndarray  # (nz, ny, nx)
    timecourse: np.ndarray  # (repetitions,)
    fmap: np.ndarray | None  # (nz, ny, nx) Hz
    positions: np.ndarray  # (nslices, 3) LPS mm
    cov: np.ndarray  # imaging-sample noise covariance
    noise_cov: np.ndarray  # noise-readout covariance
    rng: np.random.Generator

    def noise(self, nreadouts: int, nsamples: int) -> np.ndarray:
        """Imaging noise, (nreadouts, ncoils, nsamples)."""
        return correlated_noise(self.cov, (nreadouts, nsamples), self.rng).transpose(1, 0, 2)


def _cartesian_pass(
    writer: _Writer, scene: _Scene, plan: LinePlan, echoes: list[np.ndarray], repetition: int,
    *, calibration_pass: bool,
) -> None:  # fmt: skip
    """Write one pass over k-space for every slice (2D) or the slab (3D).

    ``echoes`` holds the k-space of every echo; each line is read once per echo after its
    excitation (line-major, echo-minor order), echo ``e`` with ``idx.contrast = e``.
    """
    spec = scene.spec
    nslices = 1 if spec.volumetric else spec.slices
    necho, nc, nx = len(echoes), echoes[0].shape[0], echoes[0].shape[-1]
    nread = len(plan.ky) * necho
    for s in range(nslices):
        z = plan.kz if spec.volumetric else np.full_like(plan.ky, s)
        lines = np.stack([k[:, z, plan.ky, :].transpose(1, 0, 2) for k in echoes], axis=1)
        data = np.ascontiguousarray(lines.reshape(nread, nc, nx))
        if spec.noise_std > 0:
            data += scene.noise(nread, nx)
        head = writer.heads(nread, nx, scene.positions[s])
        head["idx"]["kspace_encode_step_1"] = np.repeat(plan.ky, necho)
        head["idx"]["kspace_encode_step_2"] = np.repeat(plan.kz, necho) if spec.volumetric else 0
        head["idx"]["slice"] = s
        head["idx"]["repetition"] = repetition
        head["idx"]["contrast"] = np.tile(np.arange(necho), len(plan.ky))
        flags = np.zeros(len(plan.ky), dtype=np.uint64)
        if calibration_pass:
            flags |= _bit(CALIBRATION)
        else:
            flags[plan.calibration & plan.imaging] |= _bit(CALIBRATION_AND_IMAGING)
            flags[plan.calibration & ~plan.imaging] |= _bit(CALIBRATION)
        head["flags"] = np.repeat(flags, necho)
        if not calibration_pass:
            _mark_slice_and_repetition(head, s == 0, s == nslices - 1)
        writer.write(head, data)


def _cartesian_scan(writer: _Writer, scene: _Scene) -> tuple[np.ndarray, np.ndarray]:
    """Noise, calibration and imaging readouts; returns (noise-free k-space of the first
    echo, line mask)."""
    spec = scene.spec
    nx = scene.coil_images.shape[-1]
    ndim = 3 if spec.three_d else 2
    echoes, actives = [], []
    for te_ms in spec.echo_times_ms:
        times = te_ms * 1e-3 + (np.arange(nx) - nx // 2) * spec.dwell_us * 1e-6
        model = {"field_hz": scene.fmap, "readout_times_s": times if spec.field_map else None}
        echoes.append(cartesian_kspace(scene.coil_images, ndim, **model))
        if spec.repetitions > 1:
            actives.append(cartesian_kspace(scene.coil_images * scene.activation, ndim, **model))
    _noise_block(writer, scene, nx)
    mask = np.zeros((spec.repetitions, *echoes[0].shape[1:3]), dtype=bool)
    calib = calibration_plan(spec)
    if calib is not None:
        _cartesian_pass(writer, scene, calib, echoes, 0, calibration_pass=True)
    for rep in range(spec.repetitions):
        plan = imaging_plan(spec, rep)
        frames = echoes
        if actives:
            frames = [k + scene.timecourse[rep] * a for k, a in zip(echoes, actives, strict=True)]
        _cartesian_pass(writer, scene, plan, frames, rep, calibration_pass=False)
        for lines in (plan,) if calib is None else (plan, calib):
            if spec.three_d:
                mask[rep, lines.kz, lines.ky] = True
            else:
                mask[rep, :, lines.ky] = True
    return echoes[0], mask


def _noncartesian_coords(spec: SimSpec) -> np.ndarray:
    """(nz or 1, nreadouts, nsamples, ndim) coordinates in grid units (DESIGN.md order)."""
    n, ns = spec.matrix, spec.nx_encoded
    if spec.trajectory in ("radial", "golden-radial"):
        coord = traj.radial(spec.nspokes, ns, golden=spec.trajectory == "golden-radial", n=n)
        return coord[None]
    if spec.trajectory == "stack-of-stars":
        return traj.stack_of_stars(spec.nspokes, ns, spec.slices, golden=True, n=n)
    # Spiral: samples spaced about 1 / oversampling grid units along the arm (arc length of an
    # Archimedean spiral of `turns` revolutions out to N/2 is about pi turns N/2).
    turns = n / (2 * spec.nspokes)
    step = 0.5 if spec.oversampling else 1.0
    nsamples = int(np.ceil(np.pi * turns * (n / 2) / step)) + 1
    return traj.spiral(spec.nspokes, nsamples, n=n)[None]


def _noncartesian_scan(writer: _Writer, scene: _Scene) -> np.ndarray:
    """Noise block and imaging readouts of a radial, spiral or stack-of-stars scan."""
    spec = scene.spec
    coord = _noncartesian_coords(spec)
    nreadouts, nsamples, ndim = coord.shape[1:]
    _noise_block(writer, scene, nsamples)
    centre = 0 if spec.trajectory == "spiral" else nsamples // 2
    times = spec.te_ms * 1e-3 + (np.arange(nsamples) - centre) * spec.dwell_us * 1e-6
    stack = spec.trajectory == "stack-of-stars"
    plane = coord[0, ..., -2:].reshape(-1, 2)  # stack of stars: the same spokes everywhere
    flat = plane if stack else coord.reshape(-1, ndim)
    nblock = coord.shape[0] * nreadouts  # readouts per slice (2D) or per slab (3D)
    stored = np.ascontiguousarray(coord[..., ::-1].reshape(nblock, nsamples, ndim))
    parts = [slice(None)] if spec.volumetric else list(range(spec.slices))
    for s, part in enumerate(parts):
        model = {
            "field_hz": None if scene.fmap is None else scene.fmap[part],
            "sample_times_s": np.tile(times, nreadouts) if spec.field_map else None,
            "stack": stack,
        }
        images = scene.coil_images[:, part]
        base = noncartesian_kspace(images, flat, **model)
        active = None
        if spec.repetitions > 1:
            active = noncartesian_kspace(images * scene.activation[part], flat, **model)
        for rep in range(spec.repetitions):
            samples = base if active is None else base + scene.timecourse[rep] * active
            data = np.ascontiguousarray(
                samples.reshape(spec.ncoils, nblock, nsamples).transpose(1, 0, 2)
            )
            if spec.noise_std > 0:
                data += scene.noise(nblock, nsamples)
            head = writer.heads(nblock, nsamples, scene.positions[s])
            head["center_sample"] = centre
            head["trajectory_dimensions"] = ndim
            head["idx"]["kspace_encode_step_1"] = np.tile(np.arange(nreadouts), len(coord))
            head["idx"]["kspace_encode_step_2"] = np.repeat(np.arange(len(coord)), nreadouts)
            head["idx"]["slice"] = s
            head["idx"]["repetition"] = rep
            _mark_slice_and_repetition(head, s == 0, s == len(parts) - 1)
            writer.write(head, data, stored)
    return coord


def simulate(path: str | Path, spec: SimSpec | None = None) -> GroundTruth:
    """Simulate an acquisition and write ``path`` (ISMRMRD) and ``<path>.truth.npz``.

    Parameters
    ----------
    path : str or Path
        Output ISMRMRD/HDF5 file (group ``dataset``).
    spec : SimSpec, optional
        What to simulate (default ``SimSpec()``: 2D Cartesian, 128^2, 32 coils).

    Returns
    -------
    GroundTruth
        The object, coil maps, noise covariances, field map, k-space/mask or trajectory,
        and readout counts.

    Raises
    ------
    ConfigError
        Invalid options (one line naming the option).
    """
    spec = (spec or SimSpec()).validate()
    path = Path(path)
    rotation = rotation_matrix(spec.oblique_deg)
    matrix, fov = encoded_geometry(spec)
    grid_shape = (spec.slices, matrix[1], matrix[0])  # a 2D stack is a 3D grid of slices
    grid_fov = (spec.slice_thickness_mm * spec.slices, fov[1], fov[0])
    where = {"fov_mm": grid_fov, "rotation": rotation, "centre_mm": spec.centre_mm}
    image = brain_phantom(grid_shape, seed=spec.seed, **where)
    maps = coil_sensitivities(spec.ncoils, grid_shape, **where)
    fmap = None
    if spec.field_map:
        fmap = field_map(grid_shape, spread_hz=spec.field_spread_hz, seed=spec.seed, **where)
    activation, timecourse = _activation(spec, grid_points(grid_shape, **where), image)
    cov = noise_covariance(spec.ncoils, seed=spec.seed) * spec.noise_std**2
    scene = _Scene(
        spec=spec,
        coil_images=maps * image,
        activation=activation,
        timecourse=timecourse,
        fmap=fmap,
        positions=_slice_positions(spec, rotation),
        cov=cov,
        noise_cov=cov * (spec.dwell_us / spec.noise_dwell),
        rng=np.random.default_rng(spec.seed + 1),
    )
    if spec.cartesian:
        step1 = (first_line(spec), spec.matrix - 1, spec.matrix // 2)
    else:
        step1 = (0, spec.nspokes - 1, 0)
    kspace = mask = coord = None
    with RawWriter(path, build_header(spec, step1_limits=step1)) as raw:
        writer = _Writer(raw, spec, rotation)
        if spec.cartesian:
            kspace, mask = _cartesian_scan(writer, scene)
        else:
            coord = _noncartesian_scan(writer, scene)
        counts = writer.close()

    crop = slice((matrix[0] - spec.matrix) // 2, (matrix[0] - spec.matrix) // 2 + spec.matrix)
    truth = GroundTruth(
        image=image[..., crop],
        coil_maps=maps[..., crop],
        noise_covariance=scene.cov,
        noise_readout_covariance=scene.noise_cov,
        field_map=None if fmap is None else fmap[..., crop],
        kspace=kspace,
        mask=mask,
        coord=coord,
        activation=activation[..., crop],
        timecourse=timecourse,
        counts=counts,
        path=path,
        truth_path=truth_path_for(path),
    )
    save_truth(truth, spec)
    return truth


def save_truth(truth: GroundTruth, spec: SimSpec) -> None:
    """Write the ground truth to ``truth.truth_path`` (atomically)."""
    arrays = {
        "image": truth.image,
        "coil_maps": truth.coil_maps,
        "noise_covariance": truth.noise_covariance,
        "noise_readout_covariance": truth.noise_readout_covariance,
        "activation": truth.activation,
        "timecourse": truth.timecourse,
    }
    for name in ("field_map", "kspace", "mask", "coord"):
        value = getattr(truth, name)
        if value is not None:
            arrays[name] = value
    arrays["spec"] = np.array(repr(spec))
    with atomic_path(truth.truth_path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
