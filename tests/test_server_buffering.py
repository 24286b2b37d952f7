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


def test_separate_reference_scan_is_attached_to_later_units():
    """A calibration-only unit yields no image; its lines go with the slice's images."""
    buffer = AcquisitionBuffer()
    calib = ismrmrd.ACQ_IS_PARALLEL_CALIBRATION
    for s in range(2):
        for ky in range(3):
            flags = (calib, ismrmrd.ACQ_LAST_IN_SLICE) if ky == 2 else (calib,)
            assert buffer.add(_acq(s, ky, flags=flags)) == []
    units = []
    for repetition in range(2):
        for s in range(2):
            units += buffer.add(_acq(s, 0, repetition, flags=(ismrmrd.ACQ_LAST_IN_SLICE,)))
    assert len(units) == 4
    assert all(len(u.calibration) == 3 for u in units)
    assert all(len(u.imaging) == 1 for u in units)
    relabelled = {(c.idx.slice, c.idx.repetition) for u in units for c in u.calibration}
    assert relabelled == {u.key[0:4:3] for u in units} == {(0, 0), (1, 0), (0, 1), (1, 1)}


def test_reference_lines_reach_later_repetitions_only_when_needed():
    """Rep 0 carries reference lines; rep 1 has none and gets them; embedded ACS does not."""
    buffer = AcquisitionBuffer()
    calib, cal_img = (
        ismrmrd.ACQ_IS_PARALLEL_CALIBRATION,
        ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING,
    )
    last = ismrmrd.ACQ_LAST_IN_SLICE
    buffer.add(_acq(0, 5, flags=(calib,)))
    (rep0,) = buffer.add(_acq(0, 0, flags=(last,)))
    (rep1,) = buffer.add(_acq(0, 0, repetition=1, flags=(last,)))
    buffer.add(_acq(0, 5, repetition=2, flags=(cal_img,)))
    (rep2,) = buffer.add(_acq(0, 0, repetition=2, flags=(last,)))
    assert (len(rep0.calibration), len(rep1.calibration), len(rep2.calibration)) == (0, 1, 0)
    copy = rep1.calibration[0]
    assert copy.idx.repetition == 1 and copy.idx.kspace_encode_step_1 == 5
    assert np.shares_memory(copy.data, rep0.acquisitions[0].data)
    assert rep0.acquisitions[0].idx.repetition == 0


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
