"""Acquisition buffering: when units complete, noise and calibration handling, memory bound."""

from __future__ import annotations

import ismrmrd
import numpy as np
import pytest

from recon.server.buffering import AcquisitionBuffer


def _acq(slice_=0, ky=0, repetition=0, flags=(), nc=2, ns=8):
    acq = ismrmrd.Acquisition.from_array(np.ones((nc, ns), np.complex64))
    acq.idx.slice, acq.idx.kspace_encode_step_1, acq.idx.repetition = slice_, ky, repetition
    for flag in flags:
        acq.set_flag(flag)
    return acq


def test_last_in_slice_completes_only_that_slice():
    buffer = AcquisitionBuffer()
    released = []
    for s in range(3):
        for ky in range(4):
            flags = (ismrmrd.ACQ_LAST_IN_SLICE,) if ky == 3 else ()
            released.append([u.key[0] for u in buffer.add(_acq(s, ky, flags=flags))])
    assert [r for r in released if r] == [[0], [1], [2]]
    assert [i for i, r in enumerate(released) if r] == [3, 7, 11]
    assert buffer.pending_bytes == 0


def test_interleaved_slices_complete_on_last_in_repetition():
    buffer = AcquisitionBuffer()
    units = []
    for ky in range(4):
        for s in range(2):
            last = ky == 3 and s == 1
            flags = (ismrmrd.ACQ_LAST_IN_REPETITION,) if last else ()
            units += buffer.add(_acq(s, ky, flags=flags))
    assert sorted(u.key[0] for u in units) == [0, 1]
    assert [len(u.acquisitions) for u in units] == [4, 4]


def test_last_in_measurement_and_flush_release_everything():
    buffer = AcquisitionBuffer()
    assert buffer.add(_acq(0, 0)) == [] and buffer.add(_acq(1, 0, repetition=1)) == []
    units = buffer.add(_acq(2, 0, flags=(ismrmrd.ACQ_LAST_IN_MEASUREMENT,)))
    assert sorted(u.key[0] for u in units) == [0, 1, 2]
    buffer.add(_acq(5, 0))
    assert [u.key[0] for u in buffer.flush()] == [5] and buffer.flush() == []


def test_noise_is_kept_aside_and_given_to_every_unit():
    buffer = AcquisitionBuffer()
    for _ in range(3):
        assert buffer.add(_acq(flags=(ismrmrd.ACQ_IS_NOISE_MEASUREMENT,))) == []
    (unit,) = buffer.add(_acq(0, 0, flags=(ismrmrd.ACQ_LAST_IN_SLICE,)))
    assert len(unit.noise) == 3 and len(unit.acquisitions) == 1


def test_reference_scan_completed_alone_goes_with_its_unit():
    """Reference lines flagged last-in-slice on their own yield no image; they join the
    imaging readouts of the same unit (not other repetitions: calibrations are reused by
    the reconstruction's context, as offline)."""
    buffer = AcquisitionBuffer()
    calib, last = ismrmrd.ACQ_IS_PARALLEL_CALIBRATION, ismrmrd.ACQ_LAST_IN_SLICE
    for s in range(2):
        for ky in range(3):
            flags = (calib, last) if ky == 2 else (calib,)
            assert buffer.add(_acq(s, ky, flags=flags)) == []
    one = 2 * 8 * 8
    assert buffer.pending_bytes == 6 * one
    units = []
    for repetition in range(2):
        for s in range(2):
            units += buffer.add(_acq(s, 0, repetition, flags=(last,)))
    assert [(u.key[0], u.key[3], len(u.calibration)) for u in units] == [
        (0, 0, 3),
        (1, 0, 3),
        (0, 1, 0),
        (1, 1, 0),
    ]
    assert all(c.idx.slice == u.key[0] for u in units for c in u.calibration)
    assert all(len(u.imaging) == 1 for u in units)
    assert buffer.pending_bytes == 0


def test_buffered_bytes_are_bounded():
    one = 2 * 8 * 8  # channels x samples x complex64
    buffer = AcquisitionBuffer(max_pending_bytes=10 * one)
    for ky in range(10):
        buffer.add(_acq(0, ky))
    assert buffer.pending_bytes == 10 * one
    with pytest.raises(MemoryError, match="without a complete slice"):
        buffer.add(_acq(0, 10))
    units = buffer.flush()
    assert len(units[0].acquisitions) == 10 and buffer.pending_bytes == 0


def test_units_see_the_reference_lines_held_for_other_units():
    """A multiband EPI's single-band reference: reference lines (and their navigators,
    flags 20 + 24) of slices whose units have no imaging readouts yet reach the first unit
    that completes; pending imaging units and the unit's own readouts do not."""
    buffer = AcquisitionBuffer()
    calib, nav = ismrmrd.ACQ_IS_PARALLEL_CALIBRATION, ismrmrd.ACQ_IS_PHASECORR_DATA
    last = ismrmrd.ACQ_LAST_IN_SLICE
    for s in range(4):  # reference of 4 slices, no last-in-slice: they stay pending
        buffer.add(_acq(s, 0, flags=(calib, nav)))
        buffer.add(_acq(s, 1, flags=(calib,)))
    buffer.add(_acq(1, 5))  # imaging of slice 1 pending: its unit is not reference-only
    (unit,) = buffer.add(_acq(0, 5, flags=(last,)))
    assert sorted((a.idx.slice, a.idx.kspace_encode_step_1) for a in unit.references) == [
        (2, 0), (2, 1), (3, 0), (3, 1),
    ]  # fmt: skip
    assert len(unit.acquisitions) == 3  # its own reference lines and the imaging line
    units = buffer.flush()
    # slice 1 completes first and still sees 2 and 3; those complete as reference scans
    assert [(u.key[0], len(u.references)) for u in units] == [(1, 4)]
    assert buffer.pending_bytes == 4 * 2 * 8 * 8  # kept for units 2 and 3
