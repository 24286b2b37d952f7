"""Off-resonance-corrected spiral CG-SENSE (time segmentation, Sutton et al. IEEE TMI 2003).

Data: ``recon.sim.simulate`` writes a 128^2 spiral (16 interleaves of 1610 samples at 5 us,
an 8 ms readout, TE 2 ms), 8 coils, with the simulator's B0 map (``field_spread_hz`` 40: about
-160..+70 Hz in the head, strongest near the frontal sinus) applied during the readout by the
simulator's own time segmentation (about 8 segments, model error ~1e-5, FINUFFT at 1e-6); the
file is read back with the ISMRMRD reader, and the sample times come from the header (TE and
the readouts' dwell time). The reconstruction uses its own interpolators (7 segments by
default, fitted over the whole FOV's -178..+72 Hz), NUFFT tolerance 1e-4, Toeplitz normal
operator, and the true coil maps and field map.

Measured: plain CG-SENSE (20 iterations) magnitude NRMSE 0.130 (complex 0.545), corrected
0.055 (complex 0.058), the same as plain CG-SENSE of data simulated without a field map (0.055).
With coil maps estimated from the data: 0.156 -> 0.091; with a smoothed, noisy field map: 0.061.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from recon.errors import InputError
from recon.io.ismrmrd import read_dataset
from recon.io.sort import sort_noncartesian
from recon.metrics import nrmse, relative_difference, scaled_nrmse
from recon.noncart.dcf import pipe_menon
from recon.noncart.offresonance import (
    OffResonanceSense,
    cg_sense_offresonance,
    default_segments,
    interpolation_error,
    time_segment_interpolators,
)
from recon.noncart.reconstruct import calibration_maps, cg_sense
from recon.noncart.trajectory import spiral
from recon.sim import SimSpec, coil_sensitivities, field_map, simulate

N = 128


@pytest.fixture(scope="module")
def spiral_scan(tmp_path_factory):
    """Samples, coordinates, sample times (s), maps, field map, reference and head mask."""
    spec = SimSpec(trajectory="spiral", matrix=N, ncoils=8, field_map=True,
                   field_spread_hz=40.0, noise_std=0.002, noise_readouts=0, te_ms=2.0)  # fmt: skip
    path = tmp_path_factory.mktemp("offres") / "spiral.h5"
    truth = simulate(path, spec)
    raw = read_dataset(path)
    data = sort_noncartesian(raw)
    coord = data.coord.reshape(data.coord.shape[-3:])
    samples = data.samples.reshape(spec.ncoils, *coord.shape[:-1])
    readout = raw.header.te_ms[0] * 1e-3 + np.arange(coord.shape[1]) * data.dwell_time_us * 1e-6
    times = np.broadcast_to(readout, coord.shape[:-1]).astype(np.float32)
    reference = truth.image[0]
    mask = np.abs(reference) > 0.05 * np.abs(reference).max()
    return samples, coord, times, truth.coil_maps[:, 0], truth.field_map[0], reference, mask


def test_interpolators_converge_with_segments(spiral_scan):
    _, _, times, _, fmap, _, mask = spiral_scan
    readout = times[0, ::4]  # every 4th sample time of the 8 ms readout
    errors = {}
    for segments in range(3, 8):
        tau, b = time_segment_interpolators(readout, fmap, segments, mask=mask)
        errors[segments] = interpolation_error(tau, b, readout, fmap, mask=mask)
    default = default_segments(times, fmap[mask])
    # measured: 0.069, 0.012, 1.9e-3, 2.3e-4, 2.7e-5 for L = 3..7; default L = 6
    assert errors[3] <= 0.15 and errors[7] <= 1e-4
    assert all(errors[s + 1] < 0.3 * errors[s] for s in range(3, 7))
    assert default <= 8 and errors[default] <= 1e-3


def test_adjoint_and_toeplitz_normal(rng):
    n = 64
    coord = spiral(8, 800, n=n)
    times = np.broadcast_to(1e-3 + np.arange(800) * 1e-5, coord.shape[:-1]).astype(np.float32)
    maps = coil_sensitivities(4, (n, n))
    fmap = field_map((n, n), spread_hz=40.0)
    weights = rng.uniform(0.5, 1.5, coord.shape[:-1]).astype(np.float32)
    op = OffResonanceSense(coord, maps, fmap, times, weights=weights, segments=5)
    x = (rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))).astype(np.complex64)
    shape = (4, *coord.shape[:-1])
    y = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    adjoint = relative_difference(np.vdot(op.forward(x), y), np.vdot(x, op.adjoint(y)))
    toeplitz = op.normal(x)
    direct = op.rhs(op.forward(x))
    # without room for the 15 kernels the normal operator falls back to NUFFTs
    small = OffResonanceSense(coord, maps, fmap, times, weights=weights, segments=5,
                              kernel_bytes=1 << 20)  # fmt: skip
    assert len(op.pairs) == 15 and op.kernels.shape == (15, 2 * n, 2 * n)
    assert small.kernels is None and nrmse(small.normal(x), direct) <= 1e-6
    assert adjoint <= 1e-5  # measured 7.9e-7
    assert nrmse(toeplitz, direct) <= 1.5e-3  # measured 4.7e-5 (BART's Toeplitz test: 1.5e-3)


def test_bad_field_map_shape_is_an_input_error():
    coord = spiral(2, 100, n=32)
    times = np.zeros(coord.shape[:-1], np.float32)
    with pytest.raises(InputError, match="field map"):
        OffResonanceSense(coord, coil_sensitivities(2, (32, 32)), np.zeros((16, 16)), times)


def test_spiral_correction_beats_plain_cg_sense(spiral_scan):
    samples, coord, times, maps, fmap, reference, mask = spiral_scan
    weights = pipe_menon(coord, (N, N))
    plain = cg_sense(samples, coord, maps, weights=weights, iterations=20)
    corrected = cg_sense_offresonance(samples, coord, maps, fmap, times, weights=weights,
                                      iterations=20)  # fmt: skip
    err_plain = nrmse(np.abs(plain), np.abs(reference), mask)
    err_corrected = nrmse(np.abs(corrected), np.abs(reference), mask)
    err_complex = nrmse(corrected, reference, mask)
    assert err_plain >= 0.11  # measured 0.130: off-resonance blurring near the sinus
    assert err_corrected <= 0.062  # measured 0.055
    assert err_complex <= 0.065  # measured 0.058: the phase is right too
    assert err_corrected <= 0.5 * err_plain


def test_correction_with_estimated_maps_and_an_imperfect_field_map(spiral_scan):
    """Coil maps from the gridded k-space centre (read early in the spiral-out, little
    off-resonance), and a field map smoothed (Gaussian, 2 pixels) with 5 Hz noise added."""
    samples, coord, times, maps, fmap, reference, mask = spiral_scan
    weights = pipe_menon(coord, (N, N))
    estimated = calibration_maps(samples, coord, (N, N), weights=weights)
    plain = cg_sense(samples, coord, estimated, weights=weights, iterations=20)
    corrected = cg_sense_offresonance(samples, coord, estimated, fmap, times, weights=weights,
                                      iterations=20)  # fmt: skip
    noisy = ndimage.gaussian_filter(fmap, 2.0)
    noisy += 5.0 * np.random.default_rng(1).standard_normal(fmap.shape)
    rough = cg_sense_offresonance(samples, coord, maps, noisy.astype(np.float32), times,
                                  weights=weights, iterations=20)  # fmt: skip
    err_plain = scaled_nrmse(np.abs(plain), np.abs(reference), mask)
    err_corrected = scaled_nrmse(np.abs(corrected), np.abs(reference), mask)
    err_rough = nrmse(np.abs(rough), np.abs(reference), mask)
    assert err_plain >= 0.13  # measured 0.156
    assert err_corrected <= 0.10 and err_corrected <= 0.65 * err_plain  # measured 0.091
    assert err_rough <= 0.07  # measured 0.061 (0.055 with the exact field map)
