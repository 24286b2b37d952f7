"""ISMRMRD reader and sorting: real files (counts, shapes, exact samples) and synthetic files
with known k-space (exact round trip)."""

from __future__ import annotations

import h5py
import ismrmrd
import numpy as np
import pytest
import test_io_helpers as synth

from recon.io import read_dataset, sort_cartesian, sort_noncartesian
from recon.io.flags import ReadoutKind
from recon.io.ismrmrd import _heads_from_storage, raw_from_acquisitions
from recon.io.sort import iter_cartesian, trajectory_to_grid

SKYRA = "siemens_skyra_grappa_r3.h5"
SIRF = "sirf_simulated_grappa2.h5"
JEMRIS = "jemris_spiral_slc30.h5"


def _kind_counts(raw):
    return {k.name: int(np.count_nonzero(raw.kinds == k)) for k in ReadoutKind}


def test_skyra_counts_and_sorting_match_reference_reader(shared_file):
    path = shared_file(SKYRA)
    raw = read_dataset(path)
    counts = _kind_counts(raw)
    assert len(raw) == 69
    assert counts["NOISE"] == 1
    assert counts["CALIBRATION"] == 32 and counts["CALIBRATION_AND_IMAGING"] == 16
    assert counts["IMAGING"] == 20
    assert raw.header.encoding.encoded_matrix == (384, 144, 1)
    assert raw.header.encoding.recon_matrix == (192, 144, 1)
    assert raw.header.encoding.acceleration == (3, 1)
    data = sort_cartesian(raw)
    assert data.kspace.shape[-4:] == (14, 1, 144, 384)
    assert int(data.mask.sum()) == 36  # 20 imaging + 16 calibration-and-imaging lines
    assert data.calib.shape[-3:] == (1, 48, 384) and int(data.calib_mask.sum()) == 48
    assert data.noise.samples.shape == (14, 384)
    assert data.noise.dwell_time_us == pytest.approx(20.0)
    assert data.dwell_time_us == pytest.approx(2.4)
    assert data.noise.relative_bandwidth == pytest.approx(0.793)
    # Every imaging line equals what ismrmrd's own reader returns, at row e1 - 54 + 72.
    reference = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    worst = 0.0
    for i in raw.select(ReadoutKind.IMAGING, ReadoutKind.CALIBRATION_AND_IMAGING):
        acq = reference.read_acquisition(int(i))
        row = acq.idx.kspace_encode_step_1 - 54 + 72
        worst = max(worst, float(np.abs(data.kspace[0, 0, 0, 0, 0, :, 0, row] - acq.data).max()))
    reference.close()
    assert worst == 0.0


def test_skyra_oversampling_removal_keeps_the_central_image(shared_file):
    raw = read_dataset(shared_file(SKYRA))
    full = sort_cartesian(raw, with_noise=False)
    cropped = sort_cartesian(raw, remove_oversampling=True, with_noise=False)
    assert cropped.kspace.shape[-1] == 192 and cropped.oversampling_removed
    img_full = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(full.kspace, -1), norm="ortho"), -1)
    img_crop = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(cropped.kspace, -1), norm="ortho"), -1)
    centre = img_full[..., 96:288]
    error = np.linalg.norm(img_crop - centre) / np.linalg.norm(centre)
    assert error < 1e-5
    assert cropped.geometry[0].voxel_size_mm[2] == pytest.approx(280 / 192)


def test_sirf_counts(shared_file):
    raw = read_dataset(shared_file(SIRF))
    counts = _kind_counts(raw)
    assert len(raw) == 143 and counts["NOISE"] == 1
    assert counts["CALIBRATION"] + counts["CALIBRATION_AND_IMAGING"] == 28
    data = sort_cartesian(raw)
    assert data.kspace.shape[-4:] == (4, 1, 256, 256)
    assert data.acceleration == (2, 1)
    assert int(data.mask.sum()) == 128
    assert data.calib_region[1] == slice(114, 142)


def test_jemris_spiral_trajectory_in_grid_units(shared_file):
    path = shared_file(JEMRIS)
    raw = read_dataset(path)
    counts = _kind_counts(raw)
    assert len(raw) == 16 and counts["IMAGING"] == 15 and counts["OTHER"] == 1
    spiral = sort_noncartesian(raw)
    assert spiral.samples.shape[-3:] == (1, 15, 4940)
    assert spiral.coord.shape[-3:] == (15, 4940, 2)
    assert spiral.convention == "grid" and spiral.image_shape == (220, 220)
    assert spiral.weights is None  # the third dimension is kz = 0
    reference = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    acq = reference.read_acquisition(5)
    reference.close()
    flat_coord = spiral.coord.reshape(15, 4940, 2)
    # coord[..., -1] pairs with x: it is the file's kx.
    assert np.abs(flat_coord[4, :, 1] - acq.traj[:, 0]).max() == 0.0
    assert np.abs(flat_coord[4, :, 0] - acq.traj[:, 1]).max() == 0.0
    assert np.abs(spiral.samples.reshape(15, 4940)[4] - acq.data[0]).max() == 0.0
    assert np.abs(flat_coord).max() < 110.0


def test_synthetic_multi_slice_round_trip_is_exact(tmp_path, rng):
    truth = synth.multi_slice_file(tmp_path / "m.h5", rng)
    raw = read_dataset(tmp_path / "m.h5")
    data = sort_cartesian(raw)
    assert data.axes == ("slice", "contrast", "phase", "repetition", "set")
    k = data.kspace[:, 0, 0, :, 0]
    assert np.abs(k - truth.kspace).max() == 0.0
    assert np.array_equal(data.mask[0, 0, 0, 0, 0, 0], truth.mask)
    assert data.calib_region[1] == truth.calib_rows
    assert np.abs(data.calib[:, 0, 0, :, 0] - truth.calib).max() == 0.0
    assert np.abs(data.noise.samples - truth.noise).max() == 0.0
    assert data.noise.dwell_time_us == 10.0 and data.dwell_time_us == 5.0
    for s, geometry in enumerate(data.geometry):
        assert np.abs(geometry.position - truth.positions[s]).max() < 1e-6
    kept = sort_cartesian(raw, average="keep")
    assert kept.axes[-1] == "average"
    assert np.abs(kept.kspace[:, 0, 0, :, 0] - truth.per_average).max() == 0.0
    fz, fy = data.partial_fourier()
    assert fz == 1.0 and fy == pytest.approx(18 / 24, abs=1 / 24)


def test_slice_by_slice_equals_whole(tmp_path, rng):
    truth = synth.multi_slice_file(tmp_path / "m.h5", rng)
    raw = read_dataset(tmp_path / "m.h5")
    parts = list(iter_cartesian(raw, block_bytes=4096))
    assert len(parts) == 2
    for s, part in enumerate(parts):
        assert part.kspace.shape[0] == 1 and part.counters["slice"].tolist() == [s]
        assert np.abs(part.kspace[0, 0, 0, :, 0] - truth.kspace[s]).max() == 0.0
        assert part.noise is not None
    reps = list(iter_cartesian(raw, by="repetition"))
    assert np.abs(reps[1].kspace[:, 0, 0, 0, 0] - truth.kspace[:, 1]).max() == 0.0


def test_synthetic_oversampling_removal(tmp_path, rng):
    truth = synth.multi_slice_file(tmp_path / "m.h5", rng)
    data = sort_cartesian(read_dataset(tmp_path / "m.h5"), remove_oversampling=True)
    image = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(truth.kspace, -1), norm="ortho"), -1)
    expected = np.fft.fftshift(np.fft.fft(np.fft.ifftshift(image[..., 8:24], -1), norm="ortho"), -1)
    got = data.kspace[:, 0, 0, :, 0]
    assert np.linalg.norm(got - expected) / np.linalg.norm(expected) < 1e-6


def test_3d_placement_by_encoding_centres(tmp_path, rng):
    """3D: e1 and e2 centres off the matrix centre; lines land at e - centre + N//2."""
    nc, nx, ny, nz = 2, 16, 12, 8
    xml = synth.header_xml(
        enc_matrix=(nx, ny, nz),
        rec_matrix=(nx, ny, nz),
        enc_fov=(160, 120, 80),
        rec_fov=(160, 120, 80),
        e1=(0, 9, 5),
        e2=(0, 5, 3),
        channels=nc,
        accel=(1, 1),
    )
    truth = np.zeros((nc, nz, ny, nx), np.complex64)
    acqs = []
    for e2 in range(6):
        for e1 in range(10):
            line = (rng.standard_normal((nc, nx)) + 1j * rng.standard_normal((nc, nx))).astype(
                np.complex64
            )
            truth[:, e2 - 3 + nz // 2, e1 - 5 + ny // 2] = line
            acqs.append(synth.acquisition(line, e1=e1, e2=e2))
    synth.write(tmp_path / "3d.h5", xml, acqs)
    data = sort_cartesian(read_dataset(tmp_path / "3d.h5"))
    assert data.kspace.shape[-4:] == (nc, nz, ny, nx)
    assert np.abs(data.kspace.reshape(nc, nz, ny, nx) - truth).max() == 0.0
    assert int(data.mask.sum()) == 60
    assert data.geometry[0].voxel_size_mm == (10.0, 10.0, 10.0)


def test_in_memory_acquisitions_sort_like_the_file(tmp_path, rng):
    truth = synth.multi_slice_file(tmp_path / "m.h5", rng)
    reference = ismrmrd.Dataset(str(tmp_path / "m.h5"), "dataset", create_if_needed=False)
    acqs = [reference.read_acquisition(i) for i in range(reference.number_of_acquisitions())]
    xml = reference.read_xml_header()
    reference.close()
    raw = raw_from_acquisitions(xml, acqs)
    data = sort_cartesian(raw)
    assert np.abs(data.kspace[:, 0, 0, :, 0] - truth.kspace).max() == 0.0


@pytest.mark.parametrize(
    ("convention", "scale"),
    [("grid", 1.0), ("normalized", 1 / 64), ("radians", 2 * np.pi / 64), ("rad_per_m", None)],
)
def test_trajectory_conventions_are_recognised(rng, convention, scale):
    n, fov = 64, 200.0
    grid = rng.uniform(-n / 2, n / 2, size=(500, 2))
    grid[0] = (-n / 2, n / 2 - 0.5)  # reach the edge
    if scale is None:
        stored = grid * (2000 * np.pi / fov)
    else:
        stored = grid * scale
    coord, found = trajectory_to_grid(stored, (n, n), (fov, fov))
    assert found == convention
    assert np.abs(coord[..., ::-1] - grid).max() < 1e-3


@pytest.mark.parametrize("layout", ["contiguous", "chunked", "compressed"])
def test_headers_read_without_samples_in_every_layout(tmp_path, rng, layout):
    """Header bytes come straight from storage (contiguous/chunked) or through h5py in row
    blocks (filtered tables); all three give the same headers and samples."""
    source = tmp_path / "src.h5"
    synth.multi_slice_file(source, rng)
    with h5py.File(source, "r") as f:
        records = f["dataset/data"][:]
        xml = f["dataset/xml"][0]
    target = tmp_path / f"{layout}.h5"
    with h5py.File(target, "w") as f:
        group = f.create_group("dataset")
        group.create_dataset("xml", data=[xml], dtype=h5py.string_dtype())
        options = {
            "contiguous": {},
            "chunked": {"chunks": (7,), "maxshape": (None,)},
            "compressed": {"chunks": (16,), "compression": "gzip"},
        }[layout]
        group.create_dataset("data", data=records, **options)
    with h5py.File(target, "r") as f:
        direct = _heads_from_storage(target, f["dataset/data"])
    assert (direct is None) == (layout == "compressed")
    raw = read_dataset(target)
    reference = read_dataset(source)
    for name, values in reference.head.fields.items():
        assert np.array_equal(getattr(raw.head, name), values), name
    assert np.array_equal(sort_cartesian(raw).kspace, sort_cartesian(reference).kspace)


def test_read_any_rows_in_their_order(shared_file):
    path = shared_file(SIRF)
    raw = read_dataset(path)
    rows = [40, 3, 40, 17]
    data, _ = raw.read(rows)
    reference = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    worst = max(
        float(np.abs(data[j] - reference.read_acquisition(r).data).max())
        for j, r in enumerate(rows)
    )
    reference.close()
    assert data.shape == (4, 4, 256) and worst == 0.0
    with pytest.raises(ValueError, match="strictly ascending"):
        next(raw.iter_blocks(np.array([3, 3])))
