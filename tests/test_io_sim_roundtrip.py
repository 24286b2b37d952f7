"""Round trip simulator -> ISMRMRD file -> reader: the sorted k-space (or samples and
trajectory) equals what the simulator computed, exactly (noise-free simulations)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from recon.backend import ifftc
from recon.io import read_dataset, sort_cartesian, sort_noncartesian
from recon.io.export import export, export_nifti
from recon.sim import SimSpec, simulate


def _spec(**options) -> SimSpec:
    base = {"matrix": 32, "ncoils": 4, "noise_std": 0.0, "noise_readouts": 4, "calib": 8}
    return SimSpec(**{**base, **options})


def _check_cartesian(data, truth, *, three_d: bool) -> None:
    """Imaging lines equal the simulated k-space; unsampled lines are zero; calibration
    lines (imaging or not) are in ``calib``; imaging + calibration-only lines = truth mask."""
    nc = truth.kspace.shape[0]
    nz, ny, _ = truth.kspace.shape[1:]
    nslices = 1 if three_d else nz
    k = data.kspace.reshape(nslices, -1, nc, *data.kspace.shape[-3:])[:, 0]  # repetition 0
    mask = data.mask.reshape(nslices, -1, *data.mask.shape[-2:])[:, 0]
    if three_d:
        expected = truth.kspace[None] * mask[:, None, :, :, None]
    else:
        expected = truth.kspace.transpose(1, 0, 2, 3)[:, :, None] * mask[:, None, :, :, None]
    assert k.shape == expected.shape
    assert np.abs(k - expected).max() == 0.0
    sampled = mask.reshape(nslices, -1, ny) if not three_d else mask
    truth_mask = truth.mask[0] if three_d else truth.mask[0][:, None, :]
    assert not (sampled & ~truth_mask.reshape(sampled.shape)).any()
    full = mask.copy()
    if data.calib is not None:
        zr, yr = data.calib_region
        c = data.calib.reshape(nslices, -1, nc, *data.calib.shape[-3:])[:, 0]
        cmask = data.calib_mask.reshape(nslices, -1, *data.calib_mask.shape[-2:])[:, 0]
        if three_d:
            ref = truth.kspace[None, :, zr, yr] * cmask[:, None, :, :, None]
            full[:, zr, yr] |= cmask
        else:
            ref = truth.kspace.transpose(1, 0, 2, 3)[:, :, None, yr] * cmask[:, None, :, :, None]
            full[:, :, yr] |= cmask
        assert np.abs(c - ref).max() == 0.0
    # Imaging plus calibration-only lines are exactly the lines the simulator wrote.
    assert mask.sum() > 0
    assert np.array_equal(full.reshape(truth_mask.shape), truth_mask)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="2d-oversampled"),
        pytest.param({"slices": 3, "accel": 2, "oversampling": False}, id="multislice-R2"),
        pytest.param({"partial_fourier": 0.75, "accel": 2}, id="partial-fourier"),
        pytest.param({"calib_mode": "separate", "accel": 3}, id="separate-calibration"),
        pytest.param(
            {
                "three_d": True,
                "slices": 8,
                "accel": 2,
                "accel_z": 2,
                "caipi_shift": 1,
                "calib": 8,
                "calib_z": 4,
                "oversampling": False,
            },
            id="3d-caipi",
        ),
    ],
)
def test_cartesian_round_trip_is_exact(tmp_path, options):
    spec = _spec(**options)
    truth = simulate(tmp_path / "sim.h5", spec)
    raw = read_dataset(tmp_path / "sim.h5")
    assert len(raw) == truth.counts["total"]
    data = sort_cartesian(raw)
    _check_cartesian(data, truth, three_d=spec.three_d)
    assert data.noise.samples.shape == (4, 4 * truth.kspace.shape[-1])


def test_oversampling_removal_gives_the_simulated_image(tmp_path):
    truth = simulate(tmp_path / "sim.h5", _spec(calib=0))
    data = sort_cartesian(read_dataset(tmp_path / "sim.h5"), remove_oversampling=True)
    assert data.kspace.shape[-1] == 32
    coil_images = ifftc(data.kspace.reshape(4, 1, 32, 32), axes=(-2, -1))
    expected = truth.coil_maps * truth.image
    error = np.linalg.norm(coil_images - expected) / np.linalg.norm(expected)
    assert error < 1e-5


@pytest.mark.parametrize("trajectory", ["radial", "spiral", "stack-of-stars"])
def test_noncartesian_round_trip_is_exact(tmp_path, trajectory):
    slices = 4 if trajectory == "stack-of-stars" else 2
    truth = simulate(tmp_path / "sim.h5", _spec(trajectory=trajectory, slices=slices, spokes=12))
    data = sort_noncartesian(read_dataset(tmp_path / "sim.h5"))
    assert data.convention == "grid"
    ndim = truth.coord.shape[-1]
    if trajectory == "stack-of-stars":
        coord = data.coord.reshape(-1, ndim)
    else:
        coord = data.coord.reshape(slices, -1, ndim)[0]
    expected = truth.coord.reshape(-1, ndim)
    assert coord.shape == expected.shape
    nx = 32
    wrapped = np.where(expected >= nx / 2, expected - nx, expected)  # [-N/2, N/2)
    assert np.abs(coord - wrapped).max() == 0.0
    assert np.isfinite(data.samples).all() and np.abs(data.samples).max() > 0


def test_oblique_simulated_slab_nifti_and_dicom_agree(tmp_path):
    """Oblique 3D slab off-centre: axis codes follow the rotation, the slab centre voxel sits
    at the simulated centre, and DICOM places voxels where NIfTI does (<= 0.1 mm)."""
    spec = _spec(
        three_d=True, slices=8, oversampling=False, oblique_deg=(20.0, -10.0, 30.0),
        centre_mm=(12.0, -8.0, 20.0),
    )  # fmt: skip
    simulate(tmp_path / "slab.h5", spec)
    raw = read_dataset(tmp_path / "slab.h5")
    data = sort_cartesian(raw)
    image = np.sqrt((np.abs(ifftc(data.kspace[0, 0, 0, 0, 0], axes=(-3, -2, -1))) ** 2).sum(0))
    geometry = data.geometry[0]
    out = nib.load(export_nifti(tmp_path / "slab", image, geometry))
    rot = np.column_stack([geometry.read_dir, geometry.phase_dir, geometry.slice_dir])
    expected_codes = []
    for axis in rot.T:
        ras = axis * np.array([-1, -1, 1])
        d = int(np.argmax(np.abs(ras)))
        expected_codes.append(("LR", "PA", "IS")[d][int(ras[d] > 0)])
    assert nib.aff2axcodes(out.affine) == tuple(expected_codes)
    centre = out.affine @ np.array([32 // 2, 32 // 2, 8 // 2, 1.0])
    assert np.abs(centre[:3] - np.array(spec.centre_mm) * np.array([-1, -1, 1])).max() < 0.1
    import pydicom

    folder = export(tmp_path / "dcm", image, geometry, format="dicom", header=raw.header)
    ds = pydicom.dcmread(sorted(folder.glob("*.dcm"))[5])
    ipp = np.array(ds.ImagePositionPatient, float)
    iop = np.array(ds.ImageOrientationPatient, float)
    spacing = np.array(ds.PixelSpacing, float)
    r, c = 7, 11
    lps_dicom = ipp + c * spacing[1] * iop[:3] + r * spacing[0] * iop[3:]
    ras_nifti = out.affine @ np.array([c, r, 5, 1.0])
    assert np.abs(lps_dicom * np.array([-1, -1, 1]) - ras_nifti[:3]).max() < 0.1


def test_info_counts_match_the_simulation(tmp_path):
    from recon.io.summary import summarize

    spec = _spec(slices=2, accel=3, partial_fourier=0.75, calib=12)
    truth = simulate(tmp_path / "sim.h5", spec)
    summary = summarize(read_dataset(tmp_path / "sim.h5"))
    for kind in ("noise", "calibration", "calibration_and_imaging", "imaging"):
        assert summary["kinds"][kind] == truth.counts[kind], kind
    enc = summary["encodings"][0]
    assert enc["acceleration"] == [3, 1] and enc["measured_acceleration"] == 3
    assert enc["readout_oversampling"] == 2.0 and enc["counts"]["slice"] == 2
    assert enc["calibration_lines"] == 12
    assert enc["partial_fourier"]["ky"] == pytest.approx(0.75, abs=1.5 / 32)
