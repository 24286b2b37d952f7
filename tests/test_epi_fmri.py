"""fMRI-like EPI series -> 4D NIfTI with the TR in pixdim[4] and a BIDS sidecar.

Data: ``recon.sim.epi.simulate_epi`` with 10 repetitions (TR 2 s), one 64^2 slice, 8 coils,
R = 2 with a separate EPI calibration scan before the first repetition only, ramp sampling,
Nyquist ghosts, and the simulator's block design (5 frames off, 5 on, 3 % in occipital grey
matter). Every repetition is ghost-corrected from its own navigators and reconstructed by
GRAPPA with the ACS of the calibration scan, the weights calibrated once (EpiSeriesRecon) and
compared with recalibrating every frame (the ACS are ghost-corrected with each frame's
navigators, so the weights differ slightly).

Measured: mean signal change in the true active region 2.99 % (truth 3 %), correlation of its
timecourse with the block design 0.9998 (102 pixels); the NIfTI round trip is exact.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np

from recon.cartesian.epi import EpiSeriesRecon, reconstruct_epi, sort_epi
from recon.io.export import export_nifti, make_sidecar, sidecar_path
from recon.io.ismrmrd import read_dataset
from recon.sim.epi import EpiSpec, simulate_epi


def test_epi_series_to_4d_nifti(tmp_path):
    spec = EpiSpec(slices=1, accel=2, repetitions=10, tr_ms=2000.0)
    truth = simulate_epi(tmp_path / "bold.h5", spec)
    raw = read_dataset(truth.path)
    slices = [sort_epi(raw, repetition=t) for t in range(10)]
    recon = EpiSeriesRecon()  # GRAPPA weights from the first frame, reused
    series = np.stack([recon(epi) for epi in slices])
    per_frame = np.stack([reconstruct_epi(epi) for epi in slices])  # recalibrated every frame
    path = export_nifti(tmp_path / "bold", series, slices[0].geometry,
                        make_sidecar(raw.header, method="epi-grappa"))  # fmt: skip

    img = nib.load(path)
    data = np.asarray(img.dataobj)
    sidecar = json.loads(sidecar_path(path).read_text())
    roi = truth.activation > 0
    course = series[:, roi].mean(axis=1)
    rest, active = course[truth.timecourse == 0].mean(), course[truth.timecourse == 1].mean()
    change = active / rest - 1
    correlation = np.corrcoef(course, truth.timecourse)[0, 1]
    assert data.shape == (spec.matrix, spec.matrix, 1, 10)
    voxel = spec.fov_mm / spec.matrix
    assert np.allclose(img.header.get_zooms(), (voxel, voxel, spec.slice_thickness_mm, 2.0))
    assert img.header.get_xyzt_units() == ("mm", "sec")
    assert sidecar["RepetitionTime"] == 2.0
    assert np.abs(data - series.transpose(3, 2, 1, 0)).max() <= 1e-6 * series.max()
    assert np.abs(series - per_frame).max() <= 1e-3 * series.max()  # measured 1.3e-4
    assert roi.sum() >= 50  # measured 102
    assert abs(change - 0.03) <= 0.003  # measured 0.0299
    assert correlation >= 0.95  # measured 0.9998
