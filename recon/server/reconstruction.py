"""Pluggable per-unit reconstruction for the MRD server.

The server calls a :class:`Reconstruction` once per complete unit (see
:mod:`recon.server.buffering`). A reconstruction is built once per connection by a
:data:`ReconstructionFactory` from the session's scanner config and XML header, so
per-session state can live in it. Two are provided (:data:`FACTORIES`):

- ``pipeline`` (default), :class:`PipelineReconstruction`: the scanner config's stage chain
  through :mod:`recon.pipeline`, unit by unit, giving the images ``recon run`` gives;
- ``fft``, :class:`CartesianFFT`: a unit sorted into k-space as offline
  (:mod:`recon.io.sort`), transformed with :func:`recon.backend.ifftc`, combined with
  :func:`recon.backend.rss` and cropped to the recon matrix: no prewhitening, no parallel
  imaging, for quick previews and as a transport reference.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import ismrmrd
import numpy as np

from recon.backend import Device, ifftc, rss, to_host
from recon.errors import InputError
from recon.io.header import Header
from recon.io.ismrmrd import raw_from_acquisitions
from recon.io.sort import sort_cartesian
from recon.pipeline import Plan, new_context, plan_run, reconstruct
from recon.pipeline.config import ScannerConfig
from recon.pipeline.runner import FRAME_AXES
from recon.pipeline.stages import Context
from recon.server.buffering import UNIT_AXES, ReconUnit, is_reference


@dataclass
class SliceImage:
    """One of several images of a unit (the slices of a multiband EPI group).

    ``volume`` ``(nz, ny, nx)``; ``geometry`` a readout of that slice, whose position,
    directions and ``idx.slice`` the image takes (its other counters are the unit's).
    """

    volume: np.ndarray
    geometry: ismrmrd.Acquisition


class Reconstruction(Protocol):
    """Reconstruct one complete unit.

    ``name`` goes into the images' ImageComments. Calling it returns the image of the unit,
    shape ``(nz, ny, nx)`` (``nz = 1`` for a 2D slice), real magnitude or complex, or a list
    of :class:`SliceImage` when the unit holds several slices.
    """

    name: str

    def __call__(self, unit: ReconUnit) -> np.ndarray | list[SliceImage]: ...


ReconstructionFactory = Callable[[ScannerConfig, Header, Device], Reconstruction]
"""``factory(config, header, device) -> Reconstruction``, once per connection."""


def _crop_center(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Central ``shape`` of the last ``len(shape)`` axes, centre index ``n // 2`` kept."""
    index = tuple(
        slice(n // 2 - m // 2, n // 2 - m // 2 + m) if m < n else slice(None)
        for n, m in zip(image.shape[-len(shape) :], shape, strict=True)
    )
    return image[(..., *index)]


class CartesianFFT:
    """Zero-filled Cartesian FFT + root-sum-of-squares reconstruction of one unit.

    The unit's readouts are sorted exactly as offline (:func:`recon.io.sort.sort_cartesian`:
    k-space centre from the header's encoding limits, ``center_sample`` and discarded
    samples, reversed readouts, averages, readout oversampling removed), transformed with
    :func:`recon.backend.ifftc` over ``(z, y, x)``, combined with :func:`recon.backend.rss`
    and cropped to the recon matrix. Unsampled lines stay zero (no parallel imaging).

    Parameters
    ----------
    header : Header
        The session's XML header.
    device : Device
        Where the FFT runs.
    """

    name = "cartesian zero-filled FFT, root-sum-of-squares coil combination"

    def __init__(self, header: Header, device: Device) -> None:
        if header.encoding.trajectory != "cartesian":
            raise InputError(
                f"trajectory {header.encoding.trajectory!r} needs the pipeline; "
                "the built-in reconstruction is Cartesian only"
            )
        self.header = header
        self.device = device

    def kspace(self, unit: ReconUnit) -> np.ndarray:
        """The unit's k-space, complex64 ``(ncoils, nz, ny, nx)``, readout oversampling removed."""
        raw = raw_from_acquisitions(self.header, unit.calibration + unit.acquisitions)
        data = sort_cartesian(raw, remove_oversampling=True, with_noise=False)
        index = tuple(
            int(np.searchsorted(data.counters[axis], value))
            for axis, value in zip(UNIT_AXES, unit.key, strict=True)
        )
        return data.kspace[index]

    def __call__(self, unit: ReconUnit) -> np.ndarray:
        """Magnitude image, float32 ``(nz, ny, nx)`` on the recon matrix."""
        kspace = self.device.to(self.kspace(unit))
        with self.device.use():
            image = rss(ifftc(kspace, axes=(-3, -2, -1)), axis=0)
            rx, ry, rz = self.header.encoding.recon_matrix
            image = _crop_center(image, (rz, ry, rx))
            return to_host(image).astype(np.float32, copy=False)


class PipelineReconstruction:
    """Reconstruct each unit with the scanner config's stage chain, as ``recon run`` does.

    Every unit becomes an in-memory dataset (:func:`recon.io.ismrmrd.raw_from_acquisitions`)
    of its calibration and imaging readouts. The first one (with the session's noise
    readouts) is planned by :func:`recon.pipeline.plan_run` (acquisition type, chain, checks)
    and opens the session's calibration context (:func:`recon.pipeline.new_context`: noise
    statistics, then whitening matrix, GRAPPA weights, coil maps cached per slice). Each
    unit then goes through :func:`recon.pipeline.reconstruct` with that plan, restricted to
    the unit's slice and frame, and that context: a slice's calibration is built once and
    reused by its later repetitions exactly as in the offline run, so the streamed images
    are the offline ones.

    Multiband EPI: the first unit (group 0) is planned with the single-band reference of
    every slice (:attr:`recon.server.buffering.ReconUnit.references`), which is kept for the
    session; each unit of group ``g`` then gives the ``MB`` images of slices ``g + b G``
    (:class:`SliceImage`, geometry from each slice's reference readouts).

    Parameters
    ----------
    config : ScannerConfig
        The session's config (a shipped one, or one sent as CONFIG_TEXT).
    header : Header
        The session's XML header.
    device : Device
        The device of the server's queue.
    """

    def __init__(self, config: ScannerConfig, header: Header, device: Device) -> None:
        self.config = config
        self.header = header
        self.device = device
        self.name = f"recon pipeline, scanner config {config.name}"
        self._plan: Plan | None = None
        self._context: Context | None = None
        self._sbr: list[ismrmrd.Acquisition] = []  # multiband: the single-band reference
        self._sbr_slices: dict[int, ismrmrd.Acquisition] = {}  # its first readout per slice
        self._folder: tempfile.TemporaryDirectory | None = None
        if config.path is None:
            # plan_run loads configs by name or path: keep the text config in a file that
            # lives as long as this object.
            self._folder = tempfile.TemporaryDirectory(prefix="recon-serve-config-")
            self.source: str | Path = Path(self._folder.name) / f"{config.name}.toml"
            self.source.write_text(config.to_toml())
        else:
            self.source = config.path

    def __call__(self, unit: ReconUnit) -> np.ndarray | list[SliceImage]:
        """Magnitude (or complex, per ``output.dtype``) image ``(nz, ny, nx)`` of the unit,
        or the images of its slices (multiband EPI)."""
        if self._plan is None:
            readouts = unit.references + unit.calibration + unit.acquisitions
            raw = raw_from_acquisitions(self.header, unit.noise + readouts)
            self._plan = plan_run(raw, config=self.source, device=str(self.device))
            self._context = new_context(self._plan)
            self.name = (
                f"recon pipeline, scanner config {self.config.name}: {' > '.join(self._plan.chain)}"
            )
            if self._plan.multiband is not None:
                self._sbr = [a for a in readouts if is_reference(a)]
                self._sbr_slices = {a.idx.slice: a for a in reversed(self._sbr)}
            plan = self._plan
        elif self._plan.multiband is None:
            raw = raw_from_acquisitions(self.header, unit.calibration + unit.acquisitions)
            plan = replace(self._plan, raw=raw)
        counters = dict(zip(UNIT_AXES, unit.key, strict=True))
        frame = tuple(counters[axis] for axis in FRAME_AXES)
        if self._plan.multiband is not None:
            return self._multiband(unit, counters["slice"], frame)
        plan = replace(plan, slices=[counters["slice"]], frames=[frame])
        result = reconstruct(plan, context=self._context, measure_memory=False)
        return result.images[0]

    def _multiband(self, unit: ReconUnit, group: int, frame: tuple) -> list[SliceImage]:
        members = self._plan.multiband.members(group)
        missing = [s for s in members if s not in self._sbr_slices]
        if missing:
            raise InputError(
                f"multiband EPI: no single-band reference of slices {missing} before group "
                f"{group} (the reference of every slice must precede the series)"
            )
        series = [a for a in unit.acquisitions if not is_reference(a)]
        reference = [a for a in self._sbr if a.idx.slice in members]  # this group's only
        raw = raw_from_acquisitions(self.header, reference + series)
        plan = replace(self._plan, raw=raw, slices=members, frames=[frame])
        images = reconstruct(plan, context=self._context, measure_memory=False).images[0]
        return [SliceImage(images[b : b + 1], self._sbr_slices[s]) for b, s in enumerate(members)]


def pipeline_factory(config: ScannerConfig, header: Header, device: Device) -> Reconstruction:
    """The scanner config's pipeline (:class:`PipelineReconstruction`): the default."""
    return PipelineReconstruction(config, header, device)


def cartesian_factory(config: ScannerConfig, header: Header, device: Device) -> Reconstruction:
    """The built-in :class:`CartesianFFT` for any config (the session's header decides)."""
    return CartesianFFT(header, device)


FACTORIES: dict[str, ReconstructionFactory] = {
    "pipeline": pipeline_factory,
    "fft": cartesian_factory,
}
"""Reconstructions ``recon serve --recon NAME`` can use."""
