"""Exporters: an oblique slab through reader -> NIfTI/DICOM lands a known point at its known
world position; ISMRMRD images, PNG, BART cfl round trips; atomic writes."""

from __future__ import annotations

import json

import ismrmrd
import matplotlib.image
import nibabel as nib
import numpy as np
import pydicom
import pytest
import test_io_helpers as synth

from recon.backend import ifftc
from recon.errors import ConfigError, InputError
from recon.geometry import Geometry
from recon.io import read_dataset, sort_cartesian
from recon.io.cfl import read_cfl, write_cfl
from recon.io.export import export, export_nifti, make_sidecar, write_png
from recon.io.images import read_ismrmrd_images, write_ismrmrd_images

NZ, NY, NX = 8, 16, 20
FOV = (200.0, 160.0, 40.0)  # x, y, z mm -> voxels 10 x 10 x 5 mm
OFFSET = (3, -2, 2)  # point offset from the centre voxel, voxels along (x, y, z)


def _oblique_dirs():
    a, b = np.deg2rad(30), np.deg2rad(20)
    read = np.array([np.cos(a), np.sin(a), 0.0])
    phase = np.array([-np.sin(a) * np.cos(b), np.cos(a) * np.cos(b), np.sin(b)])
    return read, phase, np.cross(read, phase)


def _oblique_slab_file(path):
    """3D slab, oblique, one point at a known LPS position; k-space by the analytic phase
    ramp exp(-2 pi i k . r / N) (not by an FFT)."""
    read, phase, normal = _oblique_dirs()
    position = np.array([10.0, -25.0, 40.0])
    voxel = np.array(FOV) / np.array([NX, NY, NZ])
    point = position + sum(
        o * v * d for o, v, d in zip(OFFSET, voxel, (read, phase, normal), strict=True)
    )
    kx = np.arange(NX) - NX // 2
    acqs = []
    for e2 in range(NZ):
        for e1 in range(NY):
            ky, kz = e1 - NY // 2, e2 - NZ // 2
            ramp = np.exp(
                -2j * np.pi * (kx * OFFSET[0] / NX + ky * OFFSET[1] / NY + kz * OFFSET[2] / NZ)
            )
            line = (ramp / np.sqrt(NX * NY * NZ))[None].astype(np.complex64)
            acqs.append(
                synth.acquisition(
                    line, e1=e1, e2=e2, position=position, read=read, phase=phase, normal=normal
                )
            )
    xml = synth.header_xml(
        enc_matrix=(NX, NY, NZ),
        rec_matrix=(NX, NY, NZ),
        enc_fov=FOV,
        rec_fov=FOV,
        e1=(0, NY - 1, NY // 2),
        e2=(0, NZ - 1, NZ // 2),
        channels=1,
        accel=(1, 1),
    )
    synth.write(path, xml, acqs)
    return point


@pytest.fixture
def slab(tmp_path):
    point = _oblique_slab_file(tmp_path / "slab.h5")
    raw = read_dataset(tmp_path / "slab.h5")
    data = sort_cartesian(raw)
    image = np.abs(ifftc(data.kspace.reshape(NZ, NY, NX), axes=(-3, -2, -1)))
    return raw, image, data.geometry[0], point


def test_oblique_slab_nifti_places_the_point(tmp_path, slab):
    raw, image, geometry, point = slab
    assert np.unravel_index(np.argmax(image), image.shape) == (
        NZ // 2 + OFFSET[2],
        NY // 2 + OFFSET[1],
        NX // 2 + OFFSET[0],
    )
    out = export_nifti(tmp_path / "slab", image, geometry, make_sidecar(raw.header))
    loaded = nib.load(out)
    assert nib.aff2axcodes(loaded.affine) == ("L", "P", "S")
    volume = loaded.get_fdata()
    ijk = np.unravel_index(np.argmax(volume), volume.shape)
    ras = loaded.affine @ np.array([*ijk, 1.0])
    expected_ras = point * np.array([-1, -1, 1])
    assert np.abs(ras[:3] - expected_ras).max() < 0.1
    side = json.loads((tmp_path / "slab.json").read_text())
    assert side["MagneticFieldStrength"] == pytest.approx(6.98)
    assert side["ImagingFrequency"] == pytest.approx(297.2)
    assert side["EchoTime"] == pytest.approx(0.0025) and side["FlipAngle"] == 10.0
    assert side["ParallelReductionFactorInPlane"] == 1 and side["MRAcquisitionType"] == "3D"


def test_oblique_slab_dicom_agrees_with_nifti(tmp_path, slab):
    raw, image, geometry, point = slab
    folder = export(tmp_path / "dcm", image, geometry, format="dicom", header=raw.header)
    files = sorted(folder.glob("*.dcm"))
    assert len(files) == NZ
    best, where = -1.0, None
    for f in files:
        ds = pydicom.dcmread(f)
        pixels = ds.pixel_array * float(ds.RescaleSlope)
        if pixels.max() > best:
            best = pixels.max()
            r, c = np.unravel_index(np.argmax(pixels), pixels.shape)
            ipp = np.array(ds.ImagePositionPatient, float)
            iop = np.array(ds.ImageOrientationPatient, float)
            spacing = np.array(ds.PixelSpacing, float)
            where = ipp + c * spacing[1] * iop[:3] + r * spacing[0] * iop[3:]
    assert np.abs(where - point).max() < 0.1
    ds0 = pydicom.dcmread(files[0])
    first = np.array(ds0.ImagePositionPatient, float)
    assert np.abs(first - geometry.voxel_to_lps([0, 0, 0])).max() < 1e-3
    assert float(ds0.MagneticFieldStrength) == pytest.approx(6.98)


def test_ismrmrd_images_round_trip_with_headers(tmp_path, slab):
    raw, image, geometry, _ = slab
    frames = np.stack([image, 2 * image]).astype(np.complex64)
    path = write_ismrmrd_images(
        tmp_path / "img.h5",
        frames,
        geometry,
        header=raw.header,
        complex_values=True,
        indices={"repetition": [0, 1]},
    )
    dset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    assert dset.number_of_images("image_0") == 2 * NZ
    img = dset.read_image("image_0", NZ + 3)
    head = img.getHead()
    assert head.slice == 3 and head.repetition == 1 and head.image_type == 1
    assert np.abs(np.array(head.position[:]) - geometry.slice_position(3)).max() < 1e-4
    assert np.abs(np.array(head.read_dir[:]) - geometry.read_dir).max() < 1e-6
    assert tuple(head.field_of_view[:]) == pytest.approx((200.0, 160.0, 5.0))
    assert np.abs(img.data[0, 0] - 2 * image[3]).max() < 1e-6
    assert img.meta["DataRole"] == "Image"
    dset.close()
    series = read_ismrmrd_images(path)
    assert [s.name for s in series] == ["dataset/image_0", "dataset/image_0_complex"]
    assert series[1].data.dtype == np.complex64
    assert np.abs(series[1].data[:NZ, 0, 0] - frames[0]).max() == 0.0
    back = series[0].geometry(5)
    assert np.abs(back.position - geometry.slice_position(5)).max() < 1e-4


def test_volume_images_keep_the_slab(tmp_path, slab):
    _, image, geometry, _ = slab
    path = write_ismrmrd_images(tmp_path / "vol.h5", image, geometry, as_volume=True)
    series = read_ismrmrd_images(path)[0]
    assert series.data.shape == (1, 1, NZ, NY, NX)
    back = series.geometry(0)
    assert np.abs(back.affine_lps() - geometry.affine_lps()).max() < 1e-4


def test_reads_reference_image_file(shared_file):
    series = read_ismrmrd_images(shared_file("jemris_spiral_slc30_reference_images.h5"))
    assert len(series) == 4
    assert all(s.data.shape == (1, 1, 1, 220, 220) for s in series)
    assert [int(s.headers["image_series_index"][0]) for s in series] == [1, 2, 3, 4]
    assert all(s.data.dtype == np.float32 for s in series)


def test_png_montage_and_robust_window(tmp_path, rng):
    image = rng.uniform(0.2, 1.0, size=(5, 12, 10)).astype(np.float32)
    image[0, 0, 0] = 1000.0  # an outlier must not set the window
    image[1] = 0.0
    out = write_png(tmp_path / "preview.png", image)
    pixels = matplotlib.image.imread(out)
    assert pixels.shape[:2] == (2 * 12, 3 * 10)  # 2 rows x 3 columns of tiles for 5 slices
    grey = pixels[..., 0]
    assert grey[0:12, 10:20].max() == 0.0  # slice 1 (empty) is black
    assert np.median(grey[0:12, 20:30]) > 0.2  # slice 2 is not crushed by the outlier
    assert grey[12:24, 20:30].max() == 0.0  # the unused sixth tile


def test_cfl_round_trip_and_bart_dimension_order(tmp_path, rng):
    array = (rng.standard_normal((3, 4, 5, 6)) + 1j * rng.standard_normal((3, 4, 5, 6))).astype(
        np.complex64
    )
    write_cfl(tmp_path / "k", array)
    assert (tmp_path / "k.hdr").read_text().split("\n")[1].split() == ["6", "5", "4", "3"]
    raw = np.fromfile(tmp_path / "k.cfl", dtype=np.complex64).reshape((6, 5, 4, 3), order="F")
    assert raw[2, 1, 3, 0] == array[0, 3, 1, 2]  # BART (x, y, z, coil) = ours reversed
    back = read_cfl(tmp_path / "k.cfl")
    assert back.shape == array.shape and np.abs(back - array).max() == 0.0
    (tmp_path / "bad.hdr").write_text("# Dimensions\n7 7\n")
    (tmp_path / "bad.cfl").write_bytes(b"\0" * 16)
    with pytest.raises(InputError, match=r"bad\.cfl: holds 16 bytes"):
        read_cfl(tmp_path / "bad")


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    geometry = Geometry((2, 4, 4), (1.0, 1.0, 1.0), np.zeros(3))

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        export_nifti(tmp_path / "out", np.ones((2, 4, 4)), geometry)
    with pytest.raises(InputError, match="NaN"):
        write_png(tmp_path / "nan.png", np.full((4, 4), np.nan))
    with pytest.raises(ConfigError, match="unknown export format"):
        export(tmp_path / "x", np.ones((2, 4, 4)), geometry, format="tiff")
    assert list(tmp_path.iterdir()) == []
