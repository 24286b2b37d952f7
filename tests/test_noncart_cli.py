"""``recon grid`` on the JEMRIS spiral and ``recon nufft`` on random points."""

from __future__ import annotations

import re
import sys

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from recon.cli import app, main
from recon.io.images import read_ismrmrd_images
from recon.metrics import scaled_nrmse


@pytest.mark.data
def test_noncart_cli_grid_jemris(shared_file, tmp_path):
    raw = shared_file("jemris_spiral_slc30.h5")
    reference = read_ismrmrd_images(shared_file("jemris_spiral_slc30_reference_images.h5"))
    out = tmp_path / "spiral.nii.gz"
    result = CliRunner().invoke(app, ["grid", str(raw), "-o", str(out), "-m", "cg-sense",
                                      "-i", "10"])  # fmt: skip
    assert result.exit_code == 0, result.output
    image = np.asarray(nib.load(out).dataobj)
    assert image.shape[:2] == (220, 220)
    # NIfTI stores (x, y, z): back to (y, x). Measured 0.070: the coil map (one channel: its
    # low-resolution phase) is zero outside the object, the reference is not; 0.016 unmasked
    assert scaled_nrmse(image[..., 0].T, reference[0].data[0, 0, 0]) <= 0.08
    assert (tmp_path / "spiral.json").is_file()


def test_noncart_cli_nufft_reports_accuracy():
    args = ["nufft", "--shape", "48x40", "--points", "3000", "--coils", "2", "--eps", "1e-4"]
    result = CliRunner().invoke(app, [*args, "--repeats", "1"])
    assert result.exit_code == 0, result.output
    errors = [float(v) for v in re.findall(r"NUDFT ([0-9.e+-]+)", result.output)]
    assert len(errors) == 2 and max(errors) <= 1e-3


def test_noncart_cli_bad_option_exits_2(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["recon", "nufft", "--shape", "abc"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--shape" in err and len(err.strip().splitlines()) == 1
