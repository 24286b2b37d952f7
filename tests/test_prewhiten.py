"""Noise prewhitening: covariance estimate, dwell/bandwidth scaling, whole-file whitening."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from recon.coils.prewhiten import (
    NoiseWarning,
    correlation_matrix,
    noise_covariance,
    prewhiten,
    scale_covariance,
    whitening_matrix,
)
from recon.coils.whiten_file import prewhiten_file
from recon.io.ismrmrd import read_dataset
from recon.io.rawwrite import RawWriter, new_headers


def _covariance(ncoils: int, rng: np.random.Generator) -> np.ndarray:
    """Hermitian positive definite, 5-30 % correlations, unequal coil noise levels."""
    mix = np.eye(ncoils) + 0.12 * (
        rng.standard_normal((ncoils, ncoils)) + 1j * rng.standard_normal((ncoils, ncoils))
    )
    levels = np.diag(rng.uniform(0.5, 2.0, ncoils))
    return levels @ mix @ mix.conj().T @ levels


def _noise(psi: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(ncoils, n) complex Gaussian samples with covariance ``psi``."""
    white = (
        rng.standard_normal((len(psi), n)) + 1j * rng.standard_normal((len(psi), n))
    ) / np.sqrt(2)
    return (np.linalg.cholesky(psi) @ white).astype(np.complex64)


def test_whitened_noise_is_identity_within_2_percent(rng):
    """32 coils (recon.sim covariance): noise scan at 5 us dwell, imaging at 2.5 us, b 0.793."""
    from recon.sim.noise import noise_covariance as simulated_covariance

    ncoils, t_noise, t_img, bw = 32, 5.0, 2.5, 0.793
    psi_img = simulated_covariance(ncoils, seed=4)  # pass-band covariance of imaging readouts
    psi_scan = psi_img * (t_img / t_noise) * bw  # what the noise scan measures
    scan = _noise(psi_scan, 100_000, rng)
    imaging = _noise(psi_img, 100_000, rng)
    psi_hat = noise_covariance(scan)
    w = whitening_matrix(
        scale_covariance(psi_hat, noise_dwell_us=t_noise, imaging_dwell_us=t_img, bandwidth=bw)
    )
    white = prewhiten(imaging[None], w, coil_axis=1)[0]
    cov = noise_covariance(white)
    assert np.abs(cov - np.eye(ncoils)).max() < 0.02
    # without the dwell/bandwidth scaling the noise level would be off by 1.58x
    w_unscaled = whitening_matrix(psi_hat)
    cov_bad = noise_covariance(prewhiten(imaging, w_unscaled))
    assert abs(np.real(np.trace(cov_bad)) / ncoils - t_noise / t_img / bw) < 0.05


def test_noise_covariance_has_no_mean_subtraction():
    offset = np.ones((2, 1000), dtype=np.complex64) * np.array([[3.0], [4.0j]])
    psi = noise_covariance(offset)
    assert abs(psi[0, 0] - 9.0) < 1e-9 and abs(psi[0, 1] - 3.0 * np.conj(4.0j)) < 1e-9


def test_not_positive_definite_is_an_input_error():
    from recon.errors import InputError

    with pytest.raises(InputError):
        whitening_matrix(np.array([[1.0, 2.0], [2.0, 1.0]]))


def _write_file(path, psi, rng, *, with_noise: bool, t_noise=5.0, t_img=2.5, bw=0.793) -> None:
    ncoils, ns, nlines = len(psi), 128, 16
    xml = (
        '<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
        f"<acquisitionSystemInformation><receiverChannels>{ncoils}</receiverChannels>"
        f"<relativeReceiverNoiseBandwidth>{bw}</relativeReceiverNoiseBandwidth>"
        "</acquisitionSystemInformation><experimentalConditions><H1resonanceFrequency_Hz>"
        "123000000</H1resonanceFrequency_Hz></experimentalConditions><encoding><encodedSpace><matrixSize><x>128</x><y>16</y>"
        "<z>1</z></matrixSize><fieldOfView_mm><x>256</x><y>32</y><z>5</z></fieldOfView_mm>"
        "</encodedSpace><reconSpace><matrixSize><x>128</x><y>16</y><z>1</z></matrixSize>"
        "<fieldOfView_mm><x>256</x><y>32</y><z>5</z></fieldOfView_mm></reconSpace>"
        "<encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>15</maximum>"
        "<center>8</center></kspace_encoding_step_1></encodingLimits><trajectory>cartesian</trajectory></encoding></ismrmrdHeader>"
    )
    nnoise = 64 if with_noise else 0
    head = new_headers(nnoise + nlines, ncoils=ncoils, nsamples=ns)
    head["flags"][:nnoise] = 1 << 18
    head["sample_time_us"][:nnoise] = t_noise
    head["sample_time_us"][nnoise:] = t_img
    head["idx"]["kspace_encode_step_1"][nnoise:] = np.arange(nlines)
    scan = _noise(psi * (t_img / t_noise) * bw, nnoise * ns, rng)
    img = _noise(psi, nlines * ns, rng)
    data = np.concatenate(
        [
            scan.reshape(ncoils, nnoise, ns).transpose(1, 0, 2),
            img.reshape(ncoils, nlines, ns).transpose(1, 0, 2),
        ]
    )
    with RawWriter(path, xml) as writer:
        writer.append(head, data)


def test_prewhiten_file_whitens_every_readout_and_is_idempotent(tmp_path, rng):
    psi = _covariance(8, rng)
    src, out, again = tmp_path / "in.h5", tmp_path / "white.h5", tmp_path / "again.h5"
    _write_file(src, psi, rng, with_noise=True)
    report, _w = prewhiten_file(src, out)
    assert report.nsamples == 64 * 128 and report.bandwidth == pytest.approx(0.793)
    raw = read_dataset(out)
    data, _ = raw.read(np.arange(len(raw)))
    noise = data[:64].transpose(1, 0, 2).reshape(8, -1)
    # the noise readouts, whitened like the imaging ones, hold b * t_img / t_noise * I
    cov = noise_covariance(noise) / (0.793 * 2.5 / 5.0)
    assert np.abs(cov - np.eye(8)).max() < 1e-5
    _report2, w2 = prewhiten_file(out, again)
    assert np.abs(w2 - np.eye(8)).max() < 1e-5


def test_prewhiten_file_with_separate_noise_and_without_noise(tmp_path, rng):
    psi = _covariance(6, rng)
    noise_scan, src = tmp_path / "noise.h5", tmp_path / "img.h5"
    _write_file(noise_scan, psi, rng, with_noise=True)
    _write_file(src, psi, rng, with_noise=False)
    with pytest.warns(NoiseWarning):
        report, w = prewhiten_file(src, tmp_path / "copy.h5")
    assert report is None and w is None
    original, _ = read_dataset(src).read(np.arange(16))
    copied, _ = read_dataset(tmp_path / "copy.h5").read(np.arange(16))
    assert np.array_equal(original, copied)
    report, w = prewhiten_file(src, tmp_path / "white.h5", noise=noise_scan)
    psi_npz = tmp_path / "psi.npz"
    np.savez(psi_npz, covariance=report.covariance, noise_dwell_us=5.0)
    _, w_npz = prewhiten_file(src, tmp_path / "white2.h5", noise=psi_npz)
    assert np.abs(w - w_npz).max() < 1e-5
    white, _ = read_dataset(tmp_path / "white.h5").read(np.arange(16))
    cov = noise_covariance(white.transpose(1, 0, 2).reshape(6, -1))
    # 16 x 128 imaging noise samples: estimation error ~ 1/sqrt(2048)
    assert np.abs(cov - np.eye(6)).max() < 0.12


def test_skyra_whitening_reports_14x14_correlation(shared_file, tmp_path):
    path = shared_file("siemens_skyra_grappa_r3.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report, _w = prewhiten_file(path, tmp_path / "skyra_white.h5")
    corr = report.correlation
    assert corr.shape == (14, 14)
    assert np.abs(np.diag(corr) - 1).max() < 1e-9
    assert report.nsamples == 384 and report.noise_dwell_us == pytest.approx(20.0)
    assert 0.05 < report.summary()["mean_offdiag_correlation"] < 0.5
    raw = read_dataset(tmp_path / "skyra_white.h5")
    assert len(raw) == 69
    noise, _ = raw.read(raw.select(0))
    cov = correlation_matrix(noise_covariance(noise[0]))
    assert np.abs(cov - np.eye(14)).max() < 1e-5
    report.plot(tmp_path / "corr.png")
    assert (tmp_path / "corr.png").stat().st_size > 5000


def test_cli_prewhiten_writes_file_and_report(shared_file, tmp_path):
    import json

    from typer.testing import CliRunner

    from recon.cli import app

    path = shared_file("siemens_skyra_grappa_r3.h5")
    out = tmp_path / "white.h5"
    result = CliRunner().invoke(app, ["prewhiten", str(path), str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "white.noise.json").read_text())
    assert np.array(report["correlation_abs"]).shape == (14, 14)
    assert (tmp_path / "white.noise.png").stat().st_size > 5000
    assert len(read_dataset(out)) == 69
    bad = CliRunner().invoke(app, ["prewhiten", str(tmp_path / "missing.h5"), str(out)])
    assert bad.exit_code != 0
