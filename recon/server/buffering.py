"""Buffer streamed acquisitions into reconstruction units as soon as they are complete.

A *unit* is every readout of one (slice, contrast, phase, repetition, set): the data one
image (2D slice or 3D slab) is reconstructed from. A unit is complete when

- a readout of it carries ``ACQ_LAST_IN_SLICE`` (flag 8): that unit;
- a readout carries ``ACQ_LAST_IN_REPETITION`` (flag 14): every pending unit of that repetition;
- a readout carries ``ACQ_LAST_IN_MEASUREMENT`` (flag 25), or the stream ends: every pending unit.

Noise readouts (``ACQ_IS_NOISE_MEASUREMENT``, flag 19) are kept aside for the whole session
and handed to every unit (for prewhitening, as in offline mode). A group of readouts that
completes with reference lines only (``ACQ_IS_PARALLEL_CALIBRATION``, flag 20: a separate
reference scan flagged last-in-slice) yields no image; its lines are kept and handed to the
imaging readouts of the same unit when they complete, so the unit holds what offline
sorting would put in it. Calibrations are reused across units by the reconstruction's
session context (as offline), not by copying reference lines into later units.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache

import ismrmrd
import numpy as np

from recon.io.flags import ReadoutKind, classify

UnitKey = tuple[int, int, int, int, int]
"""(slice, contrast, phase, repetition, set) of a unit."""

UNIT_AXES = ("slice", "contrast", "phase", "repetition", "set")
"""The counters that make up a :data:`UnitKey`, in order."""


def unit_key(acquisition: ismrmrd.Acquisition) -> UnitKey:
    """The unit an acquisition belongs to: (slice, contrast, phase, repetition, set)."""
    idx = acquisition.idx
    return (idx.slice, idx.contrast, idx.phase, idx.repetition, idx.set)


@dataclass
class ReconUnit:
    """The readouts of one complete unit, in arrival order.

    Attributes
    ----------
    key : UnitKey
        (slice, contrast, phase, repetition, set).
    acquisitions : list of ismrmrd.Acquisition
        Imaging, embedded calibration and other readouts of the unit (noise excluded).
    calibration : list of ismrmrd.Acquisition
        Reference lines of this unit that arrived as a group of their own before it.
    noise : list of ismrmrd.Acquisition
        Every noise readout of the session received so far.
    references : list of ismrmrd.Acquisition
        Reference lines (flag 20) the buffer holds for *other* units when this one completes
        (groups without imaging readouts yet, and completed reference scans): a multiband
        EPI's single-band reference of every slice, before the first group.
    completed_at : float
        ``time.perf_counter()`` when the completing readout arrived (latency origin).
    """

    key: UnitKey
    acquisitions: list[ismrmrd.Acquisition]
    calibration: list[ismrmrd.Acquisition] = field(default_factory=list)
    noise: list[ismrmrd.Acquisition] = field(default_factory=list)
    references: list[ismrmrd.Acquisition] = field(default_factory=list)
    completed_at: float = 0.0

    @property
    def imaging(self) -> list[ismrmrd.Acquisition]:
        """Readouts that go into the image (calibration-only readouts excluded)."""
        return [a for a in self.acquisitions if is_imaging(a)]


_IMAGING = (ReadoutKind.IMAGING, ReadoutKind.CALIBRATION_AND_IMAGING)


@lru_cache(maxsize=1024)
def _kind_of_flags(flags: int) -> ReadoutKind:
    return ReadoutKind(int(classify(np.array([flags], np.uint64))[0]))


def kind(acquisition: ismrmrd.Acquisition) -> ReadoutKind:
    """What a readout is for, by the rules of offline reading (:func:`recon.io.flags.classify`)."""
    return _kind_of_flags(int(acquisition.flags))


def is_imaging(acquisition: ismrmrd.Acquisition) -> bool:
    """True for readouts that belong in the image (embedded calibration lines included)."""
    return kind(acquisition) in _IMAGING


def is_reference(acquisition: ismrmrd.Acquisition) -> bool:
    """Flagged ``ACQ_IS_PARALLEL_CALIBRATION`` (20): reference lines, and the navigators of a
    reference scan (flags 20 and 24, as in a multiband EPI's single-band reference)."""
    return acquisition.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)


def _nbytes(readouts: list[ismrmrd.Acquisition]) -> int:
    return sum(a.data.nbytes + a.traj.nbytes for a in readouts)


class AcquisitionBuffer:
    """Collect acquisitions and release :class:`ReconUnit` objects as they complete.

    Parameters
    ----------
    max_pending_bytes : int
        Bound on buffered k-space (bytes of data + trajectory, noise included); exceeding it
        raises :class:`MemoryError` so a stream that never completes a unit cannot exhaust
        the server.
    """

    def __init__(self, max_pending_bytes: int = 4 * 2**30) -> None:
        self.max_pending_bytes = max_pending_bytes
        self.noise: list[ismrmrd.Acquisition] = []
        self._pending: dict[UnitKey, list[ismrmrd.Acquisition]] = {}
        self._reference: dict[UnitKey, list[ismrmrd.Acquisition]] = {}
        self._with_imaging: set[UnitKey] = set()  # pending units holding imaging readouts
        self._pending_bytes = 0

    @property
    def pending_bytes(self) -> int:
        """Bytes of readouts held (pending units, stored calibration and noise)."""
        return self._pending_bytes

    def add(self, acquisition: ismrmrd.Acquisition) -> list[ReconUnit]:
        """Buffer one readout; return the units it completes (often none).

        Raises
        ------
        MemoryError
            When the buffered data would exceed ``max_pending_bytes``.
        """
        size = acquisition.data.nbytes + acquisition.traj.nbytes
        if self._pending_bytes + size > self.max_pending_bytes:
            raise MemoryError(
                f"buffered k-space would exceed {self.max_pending_bytes} bytes without a "
                "complete slice (missing last-in-slice flags?)"
            )
        self._pending_bytes += size
        if kind(acquisition) == ReadoutKind.NOISE:
            self.noise.append(acquisition)
            return []
        key = unit_key(acquisition)
        self._pending.setdefault(key, []).append(acquisition)
        if is_imaging(acquisition):
            self._with_imaging.add(key)
        if acquisition.is_flag_set(ismrmrd.ACQ_LAST_IN_MEASUREMENT):
            return self.flush()
        if acquisition.is_flag_set(ismrmrd.ACQ_LAST_IN_REPETITION):
            repetition = key[3]
            return self._complete([k for k in self._pending if k[3] == repetition])
        if acquisition.is_flag_set(ismrmrd.ACQ_LAST_IN_SLICE):
            return self._complete([key])
        return []

    def flush(self) -> list[ReconUnit]:
        """Complete every pending unit (end of measurement or of the stream)."""
        return self._complete(list(self._pending))

    def _held_references(self) -> list[ismrmrd.Acquisition]:
        """Reference lines of pending units without imaging readouts and of stored scans."""
        pending = (
            a
            for key, group in self._pending.items()
            if key not in self._with_imaging
            for a in group
            if is_reference(a)
        )
        stored = (a for group in self._reference.values() for a in group)
        return [*pending, *stored]

    def _complete(self, keys: list[UnitKey]) -> list[ReconUnit]:
        now = time.perf_counter()
        units = []
        for key in keys:
            acquisitions = self._pending.pop(key)
            self._with_imaging.discard(key)
            if not any(is_imaging(a) for a in acquisitions):
                # A reference scan completed on its own: kept (its bytes stay counted) for
                # the imaging readouts of the same unit.
                reference = [a for a in acquisitions if is_reference(a)]
                self._pending_bytes -= _nbytes(acquisitions) - _nbytes(reference)
                self._reference.setdefault(key, []).extend(reference)
                continue
            calibration = self._reference.pop(key, [])
            self._pending_bytes -= _nbytes(acquisitions) + _nbytes(calibration)
            units.append(
                ReconUnit(
                    key=key,
                    acquisitions=acquisitions,
                    calibration=calibration,
                    noise=list(self.noise),
                    references=self._held_references(),
                    completed_at=now,
                )
            )
        return units
