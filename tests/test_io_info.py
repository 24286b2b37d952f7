"""``recon info`` on every real file: counts, matrices, channels, acceleration, oversampling,
partial Fourier, calibration lines (values from ../shared/data/README.md); ``recon convert``."""

from __future__ import annotations

import json

import nibabel as nib
import pytest
from typer.testing import CliRunner

from recon.cli.app import app

runner = CliRunner()


def _info(path) -> dict:
    result = runner.invoke(app, ["info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_info_skyra(shared_file):
    s = _info(shared_file("siemens_skyra_grappa_r3.h5"))
    enc = s["encodings"][0]
    assert s["readouts"] == 69 and s["channels"] == 14 and s["noise_readouts"] == 1
    assert s["kinds"]["calibration"] == 32 and s["kinds"]["calibration_and_imaging"] == 16
    assert s["field_strength_t"] == pytest.approx(2.89362)
    assert s["noise_dwell_time_us"] == pytest.approx(20.0)
    assert enc["encoded_matrix"] == [384, 144, 1] and enc["recon_matrix"] == [192, 144, 1]
    assert enc["readout_oversampling"] == 2.0
    assert enc["acceleration"] == [3, 1] and enc["measured_acceleration"] == 3
    assert enc["calibration_lines"] == 48
    assert enc["ky_range"] == [0, 105] and enc["ky_center"] == 54
    assert enc["partial_fourier"]["ky"] == pytest.approx(0.75)
    assert enc["dwell_time_us"] == pytest.approx(2.4)
    assert enc["trajectory"] == "cartesian"
    assert enc["axis_codes"] == "RPS"  # read_dir -x (LPS) = right, phase posterior, slice up
    assert s["warnings"] == []


def test_info_sirf(shared_file):
    s = _info(shared_file("sirf_simulated_grappa2.h5"))
    enc = s["encodings"][0]
    assert s["readouts"] == 143 and s["channels"] == 4 and s["noise_readouts"] == 1
    assert enc["encoded_matrix"] == [256, 256, 1] and enc["readout_oversampling"] == 1.0
    assert enc["acceleration"] == [2, 1] and enc["measured_acceleration"] == 2
    assert enc["calibration_lines"] == 28
    assert enc["partial_fourier"] == {"ky": 1.0, "kz": 1.0, "kx": 1.0}


def test_info_jemris(shared_file):
    s = _info(shared_file("jemris_spiral_slc30.h5"))
    enc = s["encodings"][0]
    assert s["readouts"] == 16 and s["channels"] == 1 and s["noise_readouts"] == 0
    assert s["kinds"]["imaging"] == 15 and s["kinds"]["other"] == 1
    assert enc["encoded_matrix"] == [220, 220, 1] and enc["trajectory"] == "other"
    assert enc["samples_per_readout"] == 4940 and enc["trajectory_dimensions"] == 3
    assert enc["calibration_lines"] == 0 and "partial_fourier" not in enc


def test_info_rich_output(shared_file):
    result = runner.invoke(app, ["info", str(shared_file("siemens_skyra_grappa_r3.h5"))])
    assert result.exit_code == 0
    for text in ("384 x 144 x 1", "192 x 144 x 1", "48 lines", "0.75", "14"):
        assert text in result.stdout


def test_info_image_file(shared_file):
    s = _info(shared_file("jemris_spiral_slc30_reference_images.h5"))
    assert s["kind"] == "images" and len(s["series"]) == 4
    assert all(item["shape"] == [1, 1, 220, 220] for item in s["series"])
    assert [item["series_index"] for item in s["series"]] == [[1], [2], [3], [4]]
    assert all(item["dtype"] == "float32" for item in s["series"])
    result = runner.invoke(
        app, ["info", str(shared_file("jemris_spiral_slc30_reference_images.h5"))]
    )
    assert result.exit_code == 0 and "images/image_4" in result.stdout


def test_convert_reference_images_to_nifti(shared_file, tmp_path):
    source = shared_file("jemris_spiral_slc30_reference_images.h5")
    result = runner.invoke(app, ["convert", str(source), str(tmp_path / "ref"), "-f", "nifti"])
    assert result.exit_code == 0, result.output
    img = nib.load(tmp_path / "ref.nii.gz")
    assert img.shape == (220, 220, 1, 4)  # 4 series as frames of one slice
