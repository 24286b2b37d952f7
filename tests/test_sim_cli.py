"""``recon simulate``: writes a readable file + truth, summarises it, rejects bad options."""

from __future__ import annotations

import subprocess
import sys

import h5py
import ismrmrd
import numpy as np
from typer.testing import CliRunner

from recon.cli import app
from recon.errors import ConfigError
from recon.io.flags import flag_counts

runner = CliRunner()


def test_simulate_cli_writes_file_and_truth(tmp_path):
    out = tmp_path / "demo.h5"
    args = ["simulate", str(out), "--matrix", "32", "--coils", "4", "--slices", "2"]
    args += ["--accel", "2", "--calib", "8", "--noise-readouts", "16", "--seed", "3"]
    args += ["--te", "22", "--tr", "900", "--flip", "60", "--oblique", "10,0,0"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "readouts: noise" in result.output and "16" in result.output
    with h5py.File(out, "r") as f:
        flags = f["dataset/data"]["head"]["flags"]
        xml = f["dataset/xml"][0]
    sequence = ismrmrd.xsd.CreateFromDocument(xml).sequenceParameters
    assert (sequence.TE, sequence.TR, sequence.flipAngle_deg) == ([22.0], [900.0], [60.0])
    counts = flag_counts(flags)
    assert counts["noise_measurement"] == 16
    assert counts["parallel_calibration_and_imaging"] == 2 * 4
    assert counts["parallel_calibration"] == 2 * 4
    truth = np.load(tmp_path / "demo.h5.truth.npz")
    assert truth["coil_maps"].shape == (4, 2, 32, 32)
    assert "seed=3" in str(truth["spec"])


def test_simulate_cli_bad_options_exit_2_with_one_line(tmp_path):
    result = runner.invoke(app, ["simulate", str(tmp_path / "x.h5"), "--trajectory", "rosette"])
    assert isinstance(result.exception, ConfigError)
    result = runner.invoke(app, ["simulate", str(tmp_path / "x.txt")])
    assert isinstance(result.exception, ConfigError)
    proc = subprocess.run(
        [sys.executable, "-m", "recon", "simulate", str(tmp_path / "x.h5"), "--accel", "4",
         "--calib", "0"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "calibration" in proc.stderr
    assert not list(tmp_path.iterdir())
