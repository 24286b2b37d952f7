"""`recon demo` simulates, reconstructs and writes a NIfTI and a PNG preview."""

from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np


def test_demo_small_writes_nifti_and_png(tmp_path):
    out = tmp_path / "demo"
    args = ["demo", "-o", str(out), "--matrix", "64", "--slices", "2", "--coils", "8"]
    done = subprocess.run(
        [sys.executable, "-m", "recon", "--quiet", *args], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    (nifti,) = (out / "images").glob("*.nii.gz")
    (png,) = (out / "images").glob("*.png")
    image = np.asarray(nib.load(nifti).dataobj)
    assert sorted(image.shape)[-2:] == [64, 64] and 2 in image.shape
    assert np.isfinite(image).all() and image.max() > 0
    # the head fills the middle of the FOV and the corners are background
    centre = image[24:40, 24:40].mean()
    corner = image[:6, :6].mean()
    assert centre > 10 * corner
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
