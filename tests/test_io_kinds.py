"""Readout classification by flag, multiple encodings, and non-Cartesian variants (density
weights in the third trajectory dimension, stack of stars)."""

from __future__ import annotations

import ismrmrd
import numpy as np
import pytest
import test_io_helpers as synth

from recon.io import read_dataset, sort_cartesian, sort_noncartesian
from recon.io.flags import ReadoutKind, classify, flag_counts


def _line(rng, nc=2, ns=16):
    return (rng.standard_normal((nc, ns)) + 1j * rng.standard_normal((nc, ns))).astype(np.complex64)


def test_classification_priorities():
    bit = lambda n: np.uint64(1 << (n - 1))  # noqa: E731
    flags = np.array(
        [
            0,
            bit(19) | bit(20),  # noise wins over calibration
            bit(27),  # dummy
            bit(23) | bit(21),  # navigator wins over calibration-and-imaging
            bit(24),  # phase correction
            bit(26),  # feedback: other
            bit(20),
            bit(21) | bit(22),  # reverse is not a kind
            bit(22),
        ],
        dtype=np.uint64,
    )
    expected = [
        ReadoutKind.IMAGING,
        ReadoutKind.NOISE,
        ReadoutKind.DUMMY,
        ReadoutKind.NAVIGATOR,
        ReadoutKind.PHASE_CORRECTION,
        ReadoutKind.OTHER,
        ReadoutKind.CALIBRATION,
        ReadoutKind.CALIBRATION_AND_IMAGING,
        ReadoutKind.IMAGING,
    ]
    assert classify(flags).tolist() == [int(k) for k in expected]
    assert flag_counts(flags)["reverse"] == 2


def test_navigators_and_dummies_stay_out_of_kspace(tmp_path, rng):
    acqs = [synth.acquisition(_line(rng), e1=e1) for e1 in range(6)]
    nav = _line(rng)
    acqs.insert(2, synth.acquisition(nav, e1=3, flags=[ismrmrd.ACQ_IS_NAVIGATION_DATA]))
    acqs.insert(0, synth.acquisition(_line(rng), e1=1, flags=[ismrmrd.ACQ_IS_DUMMYSCAN_DATA]))
    acqs.append(synth.acquisition(_line(rng), e1=4, flags=[ismrmrd.ACQ_IS_PHASECORR_DATA]))
    xml = synth.header_xml(enc_matrix=(16, 8, 1), rec_matrix=(16, 8, 1), e1=(0, 5, 4))
    raw = read_dataset(synth.write(tmp_path / "nav.h5", xml, acqs))
    navigators = raw.select(ReadoutKind.NAVIGATOR)
    assert navigators.tolist() == [3]
    samples, _ = raw.read(navigators)
    assert np.abs(samples[0] - nav).max() == 0.0
    data = sort_cartesian(raw)
    expected = np.zeros((2, 8, 16), np.complex64)
    for acq in acqs:
        if acq.flags == 0:
            expected[:, acq.idx.kspace_encode_step_1] = acq.data
    assert np.abs(data.kspace.reshape(2, 8, 16) - expected).max() == 0.0


def test_second_encoding_is_sorted_on_its_own_matrix(tmp_path, rng):
    """encoding_space_ref selects the readouts; each encoding has its own matrix and limits."""
    first = synth.header_xml(enc_matrix=(16, 8, 1), rec_matrix=(16, 8, 1), e1=(0, 7, 4))
    second = synth.header_xml(enc_matrix=(32, 4, 1), rec_matrix=(32, 4, 1), e1=(0, 3, 2))
    enc2 = second[second.index("<encoding>") : second.index("</encoding>") + len("</encoding>")]
    xml = first.replace("</encoding>", "</encoding>" + enc2, 1)
    acqs, truth = [], np.zeros((2, 4, 32), np.complex64)
    for e1 in range(8):
        acqs.append(synth.acquisition(_line(rng), e1=e1))
    for e1 in range(4):
        line = _line(rng, ns=32)
        truth[:, e1] = line
        acq = synth.acquisition(line, e1=e1)
        acq.encoding_space_ref = 1
        acqs.append(acq)
    raw = read_dataset(synth.write(tmp_path / "two.h5", xml, acqs))
    assert len(raw.header.encodings) == 2
    data = sort_cartesian(raw, encoding=1)
    assert data.kspace.shape[-3:] == (1, 4, 32)
    assert np.abs(data.kspace.reshape(2, 4, 32) - truth).max() == 0.0
    assert int(sort_cartesian(raw, encoding=0).mask.sum()) == 8


def test_spiral_density_weights_in_third_dimension(tmp_path, rng):
    n, ns = 32, 50
    acqs, truth = [], []
    for arm in range(4):
        t = np.linspace(0, 1, ns)
        angle = 2 * np.pi * arm / 4 + 6 * t
        traj = np.stack([0.5 * t * np.cos(angle), 0.5 * t * np.sin(angle), t + 0.1], 1)
        truth.append(traj)
        acqs.append(synth.acquisition(_line(rng, ns=ns), e1=arm, traj=traj.astype(np.float32)))
    xml = synth.header_xml(
        enc_matrix=(n, n, 1),
        rec_matrix=(n, n, 1),
        enc_fov=(220, 220, 5),
        rec_fov=(220, 220, 5),
        e1=(0, 3, 0),
        trajectory="spiral",
    )
    data = sort_noncartesian(read_dataset(synth.write(tmp_path / "sp.h5", xml, acqs)))
    truth = np.array(truth)
    assert data.convention == "normalized"
    coord = data.coord.reshape(4, ns, 2)
    assert np.abs(coord[..., 1] - truth[..., 0] * n).max() < 1e-4
    assert np.abs(data.weights.reshape(4, ns) - truth[..., 2]).max() < 1e-6


def test_stack_of_stars_kz_from_partition_counter(tmp_path, rng):
    nx, nz, ns = 24, 6, 24
    acqs = []
    for e2 in range(nz):
        for spoke in range(3):
            angle = np.pi * spoke / 3
            r = np.linspace(-nx / 2, nx / 2 - 1, ns)
            traj = np.stack([r * np.cos(angle), r * np.sin(angle)], 1).astype(np.float32)
            acqs.append(synth.acquisition(_line(rng, ns=ns), e1=spoke, e2=e2, traj=traj))
    xml = synth.header_xml(
        enc_matrix=(nx, nx, nz),
        rec_matrix=(nx, nx, nz),
        enc_fov=(240, 240, 60),
        rec_fov=(240, 240, 60),
        e1=(0, 2, 0),
        e2=(0, nz - 1, nz // 2),
        trajectory="radial",
    )
    data = sort_noncartesian(read_dataset(synth.write(tmp_path / "sos.h5", xml, acqs)))
    assert data.image_shape == (nz, nx, nx) and data.convention == "grid"
    coord = data.coord.reshape(nz * 3, ns, 3)
    kz = np.repeat(np.arange(nz) - nz // 2, 3)
    assert np.abs(coord[:, :, 0] - kz[:, None]).max() == 0.0
    assert coord[..., 2].min() == pytest.approx(-nx / 2)


def test_discarded_samples_are_dropped_per_readout(tmp_path, rng):
    """Readouts of one length with and without discard_pre/post (read in one block) are
    placed by their centre sample after discarding."""
    acqs, truth = [], np.zeros((2, 8, 24), np.complex64)
    for e1 in range(8):
        line = _line(rng, ns=21)
        if e1 % 2:
            acq = synth.acquisition(line, e1=e1, center=14)  # centre 12 after discarding 2
            acq.discard_pre, acq.discard_post = 2, 3
            truth[:, e1, 0:16] = line[:, 2:18]
        else:
            acq = synth.acquisition(line, e1=e1, center=12)
            truth[:, e1, 0:21] = line
        acqs.append(acq)
    xml = synth.header_xml(enc_matrix=(24, 8, 1), rec_matrix=(24, 8, 1), e1=(0, 7, 4))
    data = sort_cartesian(read_dataset(synth.write(tmp_path / "discard.h5", xml, acqs)))
    assert np.abs(data.kspace.reshape(2, 8, 24) - truth).max() == 0.0


def test_caipirinha_pattern_lands_exactly(tmp_path, rng):
    """3D, R = 2 x 2 with a CAIPI shift of 1 in ky per kz step: mask and samples exact."""
    nx, ny, nz = 12, 8, 6
    acqs, truth = [], np.zeros((2, nz, ny, nx), np.complex64)
    expected_mask = np.zeros((nz, ny), bool)
    for e2 in range(0, nz, 2):
        shift = (e2 // 2) % 2
        for e1 in range(shift, ny, 2):
            line = _line(rng, ns=nx)
            truth[:, e2, e1] = line
            expected_mask[e2, e1] = True
            acqs.append(synth.acquisition(line, e1=e1, e2=e2))
    xml = synth.header_xml(
        enc_matrix=(nx, ny, nz),
        rec_matrix=(nx, ny, nz),
        enc_fov=(120, 80, 60),
        rec_fov=(120, 80, 60),
        e1=(0, ny - 1, ny // 2),
        e2=(0, nz - 1, nz // 2),
        accel=(2, 2),
    )
    data = sort_cartesian(read_dataset(synth.write(tmp_path / "caipi.h5", xml, acqs)))
    assert data.acceleration == (2, 2)
    assert np.array_equal(data.mask.reshape(nz, ny), expected_mask)
    assert np.abs(data.kspace.reshape(2, nz, ny, nx) - truth).max() == 0.0
