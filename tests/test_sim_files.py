"""Simulated ISMRMRD files: readable, valid headers, flags and counts, noise, exact k-space."""

from __future__ import annotations

import math

import h5py
import ismrmrd
import numpy as np
import pytest

from recon.backend import fftc, ifftc
from recon.errors import ConfigError
from recon.metrics import nrmse
from recon.sim.scan import simulate, truth_path_for
from recon.sim.space import rotation_matrix
from recon.sim.spec import SimSpec


def _bits(flags: np.ndarray, flag: int) -> np.ndarray:
    return (flags & np.uint64(1 << (flag - 1))) != 0


def _read(path):
    """Headers (structured array), data list (ncoils, nsamples) and trajectories via h5py."""
    with h5py.File(path, "r") as f:
        records = f["dataset/data"][:]
        xml = f["dataset/xml"][0]
    head = records["head"]
    data = [
        r.view(np.complex64).reshape(h["active_channels"], h["number_of_samples"])
        for r, h in zip(records["data"], head, strict=True)
    ]
    traj = [
        t.reshape(h["number_of_samples"], h["trajectory_dimensions"])
        for t, h in zip(records["traj"], head, strict=True)
    ]
    return head, data, traj, xml.decode() if isinstance(xml, bytes) else xml


def test_cartesian_2d_file_opens_validates_and_inverts_to_coil_images(tmp_path):
    path = tmp_path / "cart.h5"
    spec = SimSpec(matrix=64, ncoils=8, slices=2, calib=0, noise_std=0.0, noise_readouts=4)
    truth = simulate(path, spec)
    # ismrmrd.Dataset opens it; its header parses (and validates) with ismrmrd.xsd.
    dset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    assert dset.number_of_acquisitions() == 4 + 2 * 64
    acq = dset.read_acquisition(10)
    assert acq.data.shape == (8, 128) and acq.center_sample == 64
    assert dset.read_acquisition(0).is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    assert bin(int(acq.channel_mask[0])).count("1") == 8
    xml = dset.read_xml_header()
    dset.close()
    header = ismrmrd.xsd.CreateFromDocument(xml)
    assert ismrmrd.xsd.ToXML(ismrmrd.xsd.CreateFromDocument(ismrmrd.xsd.ToXML(header))) == (
        ismrmrd.xsd.ToXML(header)
    )
    enc = header.encoding[0]
    assert (enc.encodedSpace.matrixSize.x, enc.encodedSpace.matrixSize.y) == (128, 64)
    assert (enc.reconSpace.matrixSize.x, enc.reconSpace.fieldOfView_mm.x) == (64, 220.0)
    assert enc.encodedSpace.fieldOfView_mm.x == 440.0
    assert enc.encodingLimits.kspace_encoding_step_1.center == 32
    assert enc.trajectory.value == "cartesian"
    assert header.acquisitionSystemInformation.systemFieldStrength_T == 6.98
    assert header.acquisitionSystemInformation.receiverChannels == 8
    assert abs(header.experimentalConditions.H1resonanceFrequency_Hz - 297.19e6) < 0.01e6
    assert header.sequenceParameters.TE == [15.0] and header.sequenceParameters.flipAngle_deg
    # Plain h5py: sort by counters and inverse FFT -> the coil images S * m.
    head, data, _, _ = _read(path)
    imaging = ~_bits(head["flags"], 19)
    kspace = np.zeros((8, 2, 64, 128), np.complex64)
    for h, d in zip(head[imaging], np.array(data, dtype=object)[imaging], strict=True):
        kspace[:, h["idx"]["slice"], h["idx"]["kspace_encode_step_1"]] = d
    coil_images = ifftc(kspace, axes=(-2, -1))[..., 32:96]
    assert nrmse(coil_images, truth.coil_maps * truth.image) < 1e-5
    saved = np.load(truth_path_for(path))
    assert np.array_equal(saved["image"], truth.image)
    assert saved["coil_maps"].shape == (8, 2, 64, 64)
    assert np.array_equal(saved["kspace"], kspace)


def test_cartesian_flags_counts_partial_fourier_and_calibration(tmp_path):
    ny, accel, calib, pf = 64, 3, 16, 0.75
    spec = SimSpec(
        matrix=ny, ncoils=4, slices=3, accel=accel, calib=calib, partial_fourier=pf,
        noise_readouts=20, repetitions=2,
    )  # fmt: skip
    simulate(tmp_path / "pf.h5", spec)
    head, _, _, xml = _read(tmp_path / "pf.h5")
    flags = head["flags"]
    first = ny - math.ceil(pf * ny)
    lines = np.arange(first, ny)
    pattern = lines[(lines - ny // 2) % accel == 0]
    acs = np.arange(ny // 2 - calib // 2, ny // 2 + calib // 2)
    both = np.intersect1d(pattern, acs)
    frames = 3 * 2
    assert _bits(flags, 19).sum() == 20 and not _bits(flags[20:], 19).any()
    assert _bits(flags, 21).sum() == frames * len(both)
    assert _bits(flags, 20).sum() == frames * (len(acs) - len(both))
    assert len(flags) == 20 + frames * len(np.union1d(pattern, acs))
    assert _bits(flags, 7).sum() == frames and _bits(flags, 8).sum() == frames
    assert _bits(flags, 13).sum() == 2 and _bits(flags, 14).sum() == 2
    assert _bits(flags, 25).sum() == 1 and _bits(flags[-1:], 25).all()
    assert head["idx"]["kspace_encode_step_1"][20:].min() == pattern.min() > first
    assert set(np.unique(head["idx"]["repetition"])) == {0, 1}
    enc = ismrmrd.xsd.CreateFromDocument(xml).encoding[0]
    limit = enc.encodingLimits.kspace_encoding_step_1
    assert (limit.minimum, limit.maximum, limit.center) == (first, ny - 1, ny // 2)
    assert enc.parallelImaging.accelerationFactor.kspace_encoding_step_1 == accel
    assert enc.parallelImaging.calibrationMode.value == "embedded"


def test_separate_calibration_and_3d_caipi_pattern(tmp_path):
    spec = SimSpec(
        matrix=32, ncoils=4, slices=8, three_d=True, accel=2, accel_z=2, caipi_shift=1,
        calib=8, calib_z=4, calib_mode="separate", noise_readouts=0, noise_std=0.0,
    )  # fmt: skip
    truth = simulate(tmp_path / "caipi.h5", spec)
    head, data, _, xml = _read(tmp_path / "caipi.h5")
    flags = head["flags"]
    calib = _bits(flags, 20)
    assert calib.sum() == 8 * 4 and not _bits(flags, 21).any()
    assert calib[: 8 * 4].all()  # the calibration pass comes first
    ky = head["idx"]["kspace_encode_step_1"][~calib].astype(int)
    kz = head["idx"]["kspace_encode_step_2"][~calib].astype(int)
    # Sampled partitions every 2nd kz; ky shifted by 1 on every other sampled partition.
    assert np.all((kz - 4) % 2 == 0)
    assert np.all((ky - 16 - (kz - 4) // 2) % 2 == 0)
    assert len(ky) == 4 * 16
    enc = ismrmrd.xsd.CreateFromDocument(xml).encoding[0]
    assert enc.parallelImaging.accelerationFactor.kspace_encoding_step_2 == 2
    assert enc.parallelImaging.calibrationMode.value == "separate"
    assert enc.encodedSpace.matrixSize.z == 8
    # Every sampled line equals the noise-free 3D k-space of the truth.
    kspace = fftc(np.pad(truth.coil_maps * truth.image, [(0, 0)] * 3 + [(16, 16)]), axes=(1, 2, 3))
    got = np.array([d for d, c in zip(data, calib, strict=True) if not c])
    assert nrmse(got, kspace[:, kz, ky].transpose(1, 0, 2)) < 1e-5


def test_noise_readouts_have_the_requested_covariance_and_dwell(tmp_path):
    spec = SimSpec(
        matrix=64, ncoils=32, noise_readouts=512, noise_std=0.02, dwell_us=5.0,
        noise_dwell_us=10.0, calib=0,
    )  # fmt: skip
    truth = simulate(tmp_path / "noise.h5", spec)
    head, data, _, _ = _read(tmp_path / "noise.h5")
    noise = _bits(head["flags"], 19)
    assert noise.sum() == 512
    assert np.all(head["sample_time_us"][noise] == 10.0)
    assert np.all(head["sample_time_us"][~noise] == 5.0)
    samples = np.concatenate([d for d, n in zip(data, noise, strict=True) if n], axis=1)
    empirical = samples @ samples.conj().T / samples.shape[1]
    requested = truth.noise_readout_covariance
    assert np.allclose(requested, truth.noise_covariance * 0.5)
    assert np.linalg.norm(empirical - requested) / np.linalg.norm(requested) < 0.05
    sd = np.sqrt(np.diag(requested).real)
    corr = np.abs(requested / np.outer(sd, sd))[~np.eye(32, dtype=bool)]
    assert corr.min() >= 0.05 - 1e-9 and corr.max() <= 0.2


@pytest.mark.parametrize("kind", ["radial", "golden-radial", "spiral", "stack-of-stars"])
def test_noncartesian_trajectory_stored_and_samples_exact(tmp_path, kind):
    volumetric = kind == "stack-of-stars"
    spec = SimSpec(
        matrix=32, ncoils=4, slices=4 if volumetric else 1, trajectory=kind,
        spokes=8 if kind == "spiral" else 24, noise_std=0.0, noise_readouts=2,
    )  # fmt: skip
    truth = simulate(tmp_path / "nc.h5", spec)
    head, data, traj, xml = _read(tmp_path / "nc.h5")
    imaging = ~_bits(head["flags"], 19)
    ndim = 3 if volumetric else 2
    assert np.all(head["trajectory_dimensions"][imaging] == ndim)
    stored = np.array([t for t, i in zip(traj, imaging, strict=True) if i])[..., ::-1]
    assert np.abs(stored - truth.coord.reshape(stored.shape)).max() == 0.0
    assert np.abs(stored).max() <= 16.0
    enc = ismrmrd.xsd.CreateFromDocument(xml).encoding[0]
    expected = {
        "radial": "radial",
        "golden-radial": "goldenangle",
        "spiral": "spiral",
        "stack-of-stars": "goldenangle",
    }
    assert enc.trajectory.value == expected[kind]
    assert enc.trajectoryDescription.identifier == kind
    dset = ismrmrd.Dataset(str(tmp_path / "nc.h5"), "dataset", create_if_needed=False)
    last = dset.read_acquisition(dset.number_of_acquisitions() - 1)
    assert last.traj.shape == (last.number_of_samples, ndim) and last.data.shape[0] == 4
    assert last.is_flag_set(ismrmrd.ACQ_LAST_IN_MEASUREMENT)
    dset.close()
    # Samples equal the exact NUDFT (DESIGN.md sign and scaling) of the truth coil images.
    images = truth.coil_maps * truth.image
    if not volumetric:
        images = images[:, 0]
    samples = np.array([d for d, i in zip(data, imaging, strict=True) if i]).transpose(1, 0, 2)
    coord = stored.reshape(-1, ndim)
    flat = samples.reshape(4, -1)
    pick = np.random.default_rng(0).choice(len(coord), 300, replace=False)
    shape = images.shape[1:]
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    phase = sum(coord[pick, d, None] * grids[d].ravel()[None] / shape[d] for d in range(ndim))
    exact = images.reshape(4, -1) @ np.exp(-2j * np.pi * phase).T / math.sqrt(math.prod(shape))
    assert nrmse(flat[:, pick], exact) < 1e-5


def test_field_map_time_segmentation_matches_exact_signal(tmp_path):
    spec = SimSpec(
        matrix=32, ncoils=2, calib=0, noise_std=0.0, noise_readouts=0, field_map=True,
        field_spread_hz=60.0, dwell_us=20.0, te_ms=10.0,
    )  # fmt: skip
    truth = simulate(tmp_path / "b0.h5", spec)
    _, data, _, _ = _read(tmp_path / "b0.h5")
    got = np.array(data).transpose(1, 0, 2)  # (coils, ky, kx)
    # Exact: every readout sample j sees exp(-i 2 pi f t_j), t_j = TE + (j - 32) dwell.
    images = np.pad(truth.coil_maps[:, 0] * truth.image[0], [(0, 0), (0, 0), (16, 16)])
    fmap = np.load(truth_path_for(tmp_path / "b0.h5"))["field_map"][0]
    fmap = np.pad(fmap, [(0, 0), (16, 16)], mode="edge")
    times = 10e-3 + (np.arange(64) - 32) * 20e-6
    exact = np.empty_like(got)
    for j, t in enumerate(times):
        exact[..., j] = fftc(images * np.exp(-2j * np.pi * fmap * t), axes=(-2, -1))[..., j]
    without = fftc(images, axes=(-2, -1))
    assert nrmse(got, exact) < 1e-4
    assert nrmse(without, exact) > 0.05  # the field map matters


def test_spiral_with_field_map_matches_exact_signal(tmp_path):
    spec = SimSpec(
        matrix=32, ncoils=2, trajectory="spiral", spokes=4, noise_std=0.0, noise_readouts=0,
        field_map=True, field_spread_hz=60.0, dwell_us=10.0, te_ms=2.0,
    )  # fmt: skip
    truth = simulate(tmp_path / "sp.h5", spec)
    head, data, _, _ = _read(tmp_path / "sp.h5")
    assert np.all(head["center_sample"] == 0)
    samples = np.array(data).transpose(1, 0, 2)  # (coils, interleaves, samples)
    nsamples = samples.shape[-1]
    coord = truth.coord[0].reshape(-1, 2)
    times = np.tile(2e-3 + np.arange(nsamples) * 10e-6, 4)
    assert times.max() > 6e-3  # a long readout: off-resonance blurs
    pick = np.random.default_rng(1).choice(len(coord), 400, replace=False)
    ky, kx = np.meshgrid(np.arange(32) - 16, np.arange(32) - 16, indexing="ij")
    images = (truth.coil_maps[:, 0] * truth.image[0]).reshape(2, -1)
    fmap = truth.field_map[0].ravel()
    encoding = (coord[pick, :1] * ky.ravel() + coord[pick, 1:] * kx.ravel()) / 32
    off_resonance = fmap[None] * times[pick, None]
    exact = images @ np.exp(-2j * np.pi * (encoding + off_resonance)).T / 32
    without = images @ np.exp(-2j * np.pi * encoding).T / 32
    got = samples.reshape(2, -1)[:, pick]
    assert nrmse(got, exact) < 1e-4
    assert nrmse(got, without) > 0.05  # the field map matters


def test_interleaved_calibration_shifts_the_pattern_per_repetition(tmp_path):
    spec = SimSpec(matrix=32, ncoils=2, accel=2, calib_mode="interleaved", repetitions=4,
                   noise_readouts=0)  # fmt: skip
    truth = simulate(tmp_path / "tsense.h5", spec)
    head, _, _, xml = _read(tmp_path / "tsense.h5")
    assert not (_bits(head["flags"], 20) | _bits(head["flags"], 21)).any()
    ky = head["idx"]["kspace_encode_step_1"].astype(int)
    rep = head["idx"]["repetition"].astype(int)
    assert np.all((ky - 16 - rep) % 2 == 0) and len(ky) == 4 * 16
    assert truth.mask[:2].any(axis=0).all()  # two frames together cover k-space
    parallel = ismrmrd.xsd.CreateFromDocument(xml).encoding[0].parallelImaging
    assert parallel.calibrationMode.value == "interleaved"
    assert parallel.interleavingDimension.value == "repetition"


def test_oblique_geometry_in_acquisition_headers(tmp_path):
    spec = SimSpec(matrix=32, ncoils=2, slices=3, slice_thickness_mm=4.0, calib=0,
                   oblique_deg=(15.0, -10.0, 30.0), centre_mm=(5.0, -3.0, 12.0))  # fmt: skip
    simulate(tmp_path / "obl.h5", spec)
    head, _, _, _ = _read(tmp_path / "obl.h5")
    imaging = head[~_bits(head["flags"], 19)]
    rotation = rotation_matrix((15.0, -10.0, 30.0))
    for name, column in (("read_dir", 0), ("phase_dir", 1), ("slice_dir", 2)):
        assert np.abs(imaging[name] - rotation[:, column]).max() < 1e-6
    for s in range(3):
        position = imaging["position"][imaging["idx"]["slice"] == s]
        expected = np.array([5.0, -3.0, 12.0]) + (s - 1) * 4.0 * rotation[:, 2]
        assert np.abs(position - expected).max() < 1e-4


def test_repetitions_carry_block_design_activation(tmp_path):
    spec = SimSpec(matrix=32, ncoils=2, calib=0, noise_std=0.0, noise_readouts=0,
                   repetitions=10)  # fmt: skip
    truth = simulate(tmp_path / "fmri.h5", spec)
    head, data, _, _ = _read(tmp_path / "fmri.h5")
    data = np.array(data)
    rep = head["idx"]["repetition"]
    assert np.array_equal(np.bincount(rep), np.full(10, 32))
    assert np.array_equal(truth.timecourse, [0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    off, on = data[rep == 0].transpose(1, 0, 2), data[rep == 7].transpose(1, 0, 2)
    image_on = np.sum(truth.coil_maps[:, 0].conj() * ifftc(on, axes=(-2, -1))[..., 16:48], 0)
    image_off = np.sum(truth.coil_maps[:, 0].conj() * ifftc(off, axes=(-2, -1))[..., 16:48], 0)
    change = np.abs(image_on) / np.maximum(np.abs(image_off), 1e-6) - 1
    active = truth.activation[0] > 0
    assert active.sum() > 5
    assert np.abs(change[active] - 0.03).max() < 1e-4
    assert np.abs(change[~active & (np.abs(image_off) > 0.1)]).max() < 1e-4
    assert np.array_equal(data[rep == 0], data[rep == 4])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"trajectory": "rosette"}, "trajectory"),
        ({"accel": 2, "calib": 0}, "calibration"),
        ({"partial_fourier": 0.4}, "partial Fourier"),
        ({"accel_z": 2}, "3D"),
        ({"trajectory": "radial", "accel": 2}, "spokes"),
        ({"calib_mode": "interleaved", "accel": 3, "repetitions": 2}, "interleaved"),
        ({"matrix": 63}, "matrix"),
    ],
)
def test_bad_specs_raise_config_error(tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        simulate(tmp_path / "bad.h5", SimSpec(**options))
    assert not (tmp_path / "bad.h5").exists()
