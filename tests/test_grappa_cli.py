"""``recon grappa`` / ``recon sense`` / ``recon pics`` on the real Skyra file, config and errors."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from recon.cli import app
from recon.cli.cartesian import parse_kernel
from recon.errors import ConfigError, InputError

runner = CliRunner()


@pytest.mark.data
def test_grappa_cli_writes_nifti(shared_file, tmp_path):
    src = shared_file("siemens_skyra_grappa_r3.h5")
    out = tmp_path / "img"
    result = runner.invoke(
        app, ["grappa", str(src), "-o", str(out), "--pf", "pocs", "--combine", "adaptive"]
    )
    assert result.exit_code == 0, result.output
    image = nib.load(tmp_path / "img.nii.gz")
    assert image.shape[:2] == (192, 144)
    assert float(np.asarray(image.dataobj).max()) > 0


@pytest.mark.data
def test_pics_cli_takes_the_config(shared_file, tmp_path):
    src = shared_file("siemens_skyra_grappa_r3.h5")
    config = tmp_path / "scanner.toml"
    config.write_text('[pics]\nregularizer = "tv:0.002"\niterations = 10\n')
    result = runner.invoke(
        app,
        [
            "pics",
            str(src),
            "-o",
            str(tmp_path / "p.png"),
            "--format",
            "png",
            "--config",
            str(config),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p.png").stat().st_size > 1000
    config.write_text('[pics]\niterations = "many"\n')
    result = runner.invoke(
        app, ["pics", str(src), "-o", str(tmp_path / "q"), "--config", str(config)]
    )
    assert isinstance(result.exception, ConfigError)
    assert not (tmp_path / "q.nii.gz").exists()


def test_kernel_parsing():
    assert parse_kernel("5x4") == (4, 5)
    assert parse_kernel("5x4x2") == (2, 4, 5)
    for bad in ("5", "5xa", "0x4"):
        with pytest.raises(ConfigError):
            parse_kernel(bad)


@pytest.mark.data
def test_sense_cli_with_espirit_maps(shared_file, tmp_path):
    src = shared_file("siemens_skyra_grappa_r3.h5")
    out = tmp_path / "s"
    result = runner.invoke(app, ["sense", str(src), "-o", str(out), "--maps", "espirit"])
    assert result.exit_code == 0, result.output
    image = np.asarray(nib.load(tmp_path / "s.nii.gz").dataobj)
    assert image.shape[:2] == (192, 144)
    assert float(image.max()) > 0
    result = runner.invoke(app, ["sense", str(src), "-o", str(out), "--nmaps", "2"])
    assert isinstance(result.exception, InputError)  # two maps need ESPIRiT
