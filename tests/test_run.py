"""``recon run`` and ``recon configs``: the real files of ../shared/data through the full
pipeline (config chosen from the header), outputs with geometry and provenance, and bad
configs refused before any work with exit code 2, one line, no output left behind."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import nibabel as nib
import numpy as np
import pytest
from pipeline_sim import write_cartesian

from recon.cli import main
from recon.io.images import read_ismrmrd_images
from recon.metrics import scaled_nrmse


def recon(argv, monkeypatch) -> int:
    """Run the console entry point in-process; returns its exit code."""
    monkeypatch.setattr(sys, "argv", ["recon", *map(str, argv)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(SystemExit) as exit_info:
            main()
    return int(exit_info.value.code or 0)


def run_json(argv, monkeypatch, capsys) -> dict:
    assert recon([*argv, "--json"], monkeypatch) == 0
    return json.loads(capsys.readouterr().out)


def assert_centre_at_position(nifti, path) -> None:
    """Voxel (nx//2, ny//2, 0) sits at the acquisitions' slice position (LPS -> RAS)."""
    from recon.io.ismrmrd import read_dataset

    raw = read_dataset(path)
    position = raw.head.position[raw.select(7)[0]].astype(float)  # first imaging readout
    nx, ny = nifti.shape[:2]
    ras = (nifti.affine @ np.array([nx // 2, ny // 2, 0, 1.0]))[:3]
    assert np.allclose(ras, position * [-1, -1, 1], atol=1e-3)


@pytest.mark.data
def test_run_skyra_picks_the_3t_config(shared_file, tmp_path, monkeypatch, capsys):
    from test_grappa_data import ghost_excess

    path = shared_file("siemens_skyra_grappa_r3.h5")
    out = tmp_path / "skyra"
    summary = run_json(["run", path, "-o", out, "--format", "nifti,ismrmrd"], monkeypatch, capsys)
    assert summary["config"] == "siemens_skyra_3t"
    assert summary["selection"] == {"automatic": True, "matched": ["vendor", "field_strength_t"]}
    assert summary["acquisition"] == "cartesian_2d_accelerated"
    assert summary["calibrations"] == {"noise": 1, "grappa": 1}
    nifti = nib.load(out / "siemens_skyra_grappa_r3.nii.gz")
    image = np.asarray(nifti.dataobj)[:, :, 0].T  # (ny, nx)
    assert image.shape == (144, 192)
    # no aliasing (test_grappa_data's metric): measured 0.002; zero-filled R=3 is 0.79
    assert abs(ghost_excess(image, image, 3)) < 0.01
    assert_centre_at_position(nifti, path)
    assert np.isclose(np.linalg.norm(nifti.affine[:3, 0]), 280 / 192, rtol=1e-4)
    # provenance: sidecar, ISMRMRD Meta and config_used.toml name the exact configuration
    sidecar = json.loads((out / "siemens_skyra_grappa_r3.json").read_text())
    assert sidecar["ReconParameters"]["grappa"]["kernel_2d"] == [4, 5]
    assert sidecar["ReconProvenance"]["config"]["name"] == "siemens_skyra_3t"
    assert sidecar["ReconProvenance"]["timings"]["grappa"]["calls"] == 1
    series = read_ismrmrd_images(out / "siemens_skyra_grappa_r3_images.h5")
    meta = series[0].meta[0]
    assert meta["ReconConfig"] == "siemens_skyra_3t"
    values = json.loads(meta["ReconProvenance"])["config"]["values"]
    assert values["partial_fourier"]["method"] == "pocs"


@pytest.mark.data
def test_run_sirf_with_default_config(shared_file, tmp_path, monkeypatch, capsys):
    from test_grappa_data import ghost_excess

    path = shared_file("sirf_simulated_grappa2.h5")
    summary = run_json(["run", path, "-o", tmp_path / "sirf"], monkeypatch, capsys)
    assert summary["config"] == "default"
    assert summary["image_shape"] == [1, 1, 256, 256]
    nifti = nib.load(tmp_path / "sirf" / "sirf_simulated_grappa2.nii.gz")
    assert_centre_at_position(nifti, path)
    image = np.asarray(nifti.dataobj).T
    # measured -0.018 (ghost positions at the noise floor); zero-filled R=2 is 0.36
    assert ghost_excess(image[0], image[0], 2) < 0.02
    assert (tmp_path / "sirf" / "sirf_simulated_grappa2.png").stat().st_size > 1000


@pytest.mark.data
def test_run_jemris_spiral(shared_file, tmp_path, monkeypatch, capsys):
    path = shared_file("jemris_spiral_slc30.h5")
    summary = run_json(["run", path, "-o", tmp_path / "j"], monkeypatch, capsys)
    assert summary["config"] == "default"
    assert summary["acquisition"] == "noncartesian"
    assert summary["chain"] == ["prewhiten", "dcf", "sensmaps", "cg-sense"]
    assert summary["warnings"] == [
        "jemris_spiral_slc30.h5: no noise readouts; prewhitening skipped"
    ]
    nifti = nib.load(tmp_path / "j" / "jemris_spiral_slc30.nii.gz")
    assert_centre_at_position(nifti, path)
    image = np.asarray(nifti.dataobj).T[0]
    series = read_ismrmrd_images(shared_file("jemris_spiral_slc30_reference_images.h5"))
    references = [s.data[0, 0, 0] for s in series if s.data[0, 0, 0].min() >= 0]
    for reference in references:
        # measured 0.016 (that project's own reconstructions); transposed 0.4
        assert scaled_nrmse(image, reference) < 0.025
        assert scaled_nrmse(image.T, reference) > 0.3


@pytest.fixture
def nocal(tmp_path):
    return write_cartesian(
        tmp_path / "nocal.h5", shape=(1, 32, 32), ncoils=4, accel=(2, 1), acs=(1, 0)
    ).path


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--set", "grappa.lamda=0.1"], "unknown key 'grappa.lamda' (did you mean 'lambda'?)"),
        (["--set", "sense.iterations=many"], "expected an integer"),
        (["--config", "terra_nova"], "unknown scanner config 'terra_nova'"),
        (["--format", "nifti,jpeg"], "--format 'jpeg'"),
        ([], "GRAPPA chosen (chain.cartesian_2d_accelerated) but the file has no calibration"),
    ],
)
def test_bad_choices_fail_before_any_output(nocal, tmp_path, monkeypatch, capsys, options, message):
    out = tmp_path / "out"
    before = set(tmp_path.iterdir())
    assert recon(["run", nocal, "-o", out, *options], monkeypatch) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert set(tmp_path.iterdir()) == before  # no output folder, no staging folder


def test_bad_config_file_from_the_console_script(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[partial_fourier]\nmethod = "homodine"\n')
    raw = write_cartesian(tmp_path / "full.h5", shape=(1, 16, 16), ncoils=2).path
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "recon",
            "run",
            str(raw),
            "-o",
            str(tmp_path / "o"),
            "--config",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "bad.toml" in done.stderr and "did you mean 'homodyne'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "o").exists()


def test_run_writes_every_format(tmp_path, monkeypatch, capsys):
    raw = write_cartesian(tmp_path / "ms.h5", shape=(1, 32, 32), ncoils=4, slices=2).path
    out = tmp_path / "all"
    summary = run_json(
        ["run", raw, "-o", out, "--format", "nifti,png,ismrmrd,dicom", "--device", "cpu"],
        monkeypatch,
        capsys,
    )
    assert summary["device"] == "cpu"
    assert summary["acquisition"] == "cartesian_2d"
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [
            "ms.nii.gz",
            "ms.json",
            "ms.png",
            "ms_images.h5",
            "ms_dicom",
            "config_used.toml",
            "provenance.json",
            "run.json",
        ]
    )
    assert len(list((out / "ms_dicom").iterdir())) == 2  # one file per slice
    assert summary["peak_memory_bytes"] > 0
    assert all(t["calls"] == 2 for t in summary["timings"].values())
    # reproduce from the recorded config (and its overrides): identical images
    first = np.asarray(nib.load(out / "ms.nii.gz").dataobj)
    again = tmp_path / "again"
    config = out / "config_used.toml"
    assert recon(["run", raw, "-o", again, "--config", config, "-q"], monkeypatch) == 0
    assert np.array_equal(first, np.asarray(nib.load(again / "ms.nii.gz").dataobj))
    assert json.loads((again / "run.json").read_text())["config"] == "config_used"


def test_configs_command(monkeypatch, capsys):
    assert recon(["configs", "--json"], monkeypatch) == 0
    listing = json.loads(capsys.readouterr().out)
    assert len(listing) >= 7
    assert listing["siemens_terra_ptx8_32"]["select"]["coil"] == ["8Tx", "pTx"]
    assert recon(["configs", "research_64ch_7t", "--json"], monkeypatch) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["values"]["compress"]["coils"] == 24
    assert recon(["configs", "research_64ch"], monkeypatch) == 2
    assert "did you mean 'research_64ch_7t'" in capsys.readouterr().err
