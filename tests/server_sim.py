"""A simulated multi-slice 7 T Cartesian ISMRMRD file for the server tests (test helper).

Each slice is :func:`recon.sim.brain_phantom` seen by :func:`recon.sim.coil_sensitivities`
(normalised so ``sum |S|^2 = 1``), so the root-sum-of-squares of the coil images is exactly
the phantom's magnitude: the ground truth of a fully sampled slice. Readouts are 2x
oversampled; noise readouts come first; slices are oblique and carry the first/last-in-slice
flags, the last readout also last-in-repetition and last-in-measurement; optional waveforms
are interleaved by time stamp in the file.
"""

from __future__ import annotations

from pathlib import Path

import ismrmrd
import ismrmrd.xsd as xsd
import numpy as np

from recon.backend import fftc
from recon.sim import brain_phantom, coil_sensitivities

SLICE_GAP_MM = 4.0


def header_xml(
    nx: int, ny: int, nslices: int, ncoils: int, oversampling: int, acceleration: int = 1
) -> str:
    """A valid (``ismrmrd.xsd``) 7 T header: recon matrix ``nx x ny``, 2 mm pixels."""
    fov = (2.0 * nx, 2.0 * ny, 3.0)
    encoding = xsd.encodingType(
        encodedSpace=xsd.encodingSpaceType(
            matrixSize=xsd.matrixSizeType(x=oversampling * nx, y=ny, z=1),
            fieldOfView_mm=xsd.fieldOfViewMm(x=oversampling * fov[0], y=fov[1], z=fov[2]),
        ),
        reconSpace=xsd.encodingSpaceType(
            matrixSize=xsd.matrixSizeType(x=nx, y=ny, z=1),
            fieldOfView_mm=xsd.fieldOfViewMm(x=fov[0], y=fov[1], z=fov[2]),
        ),
        encodingLimits=xsd.encodingLimitsType(
            kspace_encoding_step_1=xsd.limitType(minimum=0, maximum=ny - 1, center=ny // 2),
            kspace_encoding_step_2=xsd.limitType(minimum=0, maximum=0, center=0),
            slice=xsd.limitType(minimum=0, maximum=nslices - 1, center=0),
        ),
        trajectory=xsd.trajectoryType.CARTESIAN,
    )
    if acceleration > 1:
        encoding.parallelImaging = xsd.parallelImagingType(
            accelerationFactor=xsd.accelerationFactorType(
                kspace_encoding_step_1=acceleration, kspace_encoding_step_2=1
            ),
            calibrationMode=xsd.calibrationModeType.EMBEDDED,
        )
    header = xsd.ismrmrdHeader(
        acquisitionSystemInformation=xsd.acquisitionSystemInformationType(
            systemVendor="SIMULATED",
            systemModel="7T",
            systemFieldStrength_T=6.98,
            receiverChannels=ncoils,
        ),
        experimentalConditions=xsd.experimentalConditionsType(H1resonanceFrequency_Hz=297_200_000),
        encoding=[encoding],
    )
    return header.toXML()


def oblique_axes() -> np.ndarray:
    """Rows: read, phase, slice unit vectors (LPS) of an oblique slice stack."""
    a, b = np.deg2rad(15.0), np.deg2rad(-10.0)
    rot_x = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rot_y = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    return (rot_y @ rot_x).T.astype(np.float32)


def slice_position(s: int, nslices: int) -> np.ndarray:
    """Centre (LPS mm) of slice ``s``."""
    return np.array([3.0, -12.0, 20.0]) + (s - (nslices - 1) / 2) * SLICE_GAP_MM * oblique_axes()[2]


def write_multislice(
    path: Path,
    *,
    nslices: int = 3,
    ncoils: int = 8,
    nx: int = 48,
    ny: int = 40,
    oversampling: int = 2,
    noise_readouts: int = 2,
    waveforms: int = 0,
    acceleration: int = 1,
    calibration_lines: int = 0,
    seed: int = 0,
) -> np.ndarray:
    """Write the file; return the ground truth magnitudes ``(nslices, ny, nx)`` float32.

    With ``acceleration`` R > 1 only every R-th line is acquired, plus the central
    ``calibration_lines`` (embedded GRAPPA calibration: flag PARALLEL_CALIBRATION, and
    PARALLEL_CALIBRATION_AND_IMAGING on the lines of the imaging lattice).
    """
    rng = np.random.default_rng(seed)
    enc_shape = (ny, oversampling * nx)
    enc_fov_mm = (2.0 * ny, oversampling * 2.0 * nx)
    maps = coil_sensitivities(ncoils, enc_shape, fov_mm=enc_fov_mm)
    axes = oblique_axes()
    truth = []
    stamp = 1000
    path.unlink(missing_ok=True)
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=True) as dataset:
        xml = header_xml(nx, ny, nslices, ncoils, oversampling, acceleration)
        dataset.write_xml_header(xml.encode())
        for _ in range(noise_readouts):
            noise = (rng.standard_normal((ncoils, 2 * enc_shape[1])) * (1 + 1j)).astype(
                np.complex64
            )
            acq = ismrmrd.Acquisition.from_array(noise)
            acq.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
            acq.sample_time_us = 5.0
            acq.acquisition_time_stamp = stamp
            dataset.append_acquisition(acq)
        for s in range(nslices):
            image = brain_phantom(enc_shape, seed=seed + 10 * s, fov_mm=enc_fov_mm)
            image = image * np.float32(1e-3 * (1 + s))
            truth.append(np.abs(image[:, enc_shape[1] // 2 - nx // 2 :][:, :nx]))
            k = fftc(maps * image, axes=(-2, -1)).astype(np.complex64)
            calibration = range(ny // 2 - calibration_lines // 2, ny // 2 + calibration_lines // 2)
            lines = [ky for ky in range(ny) if ky % acceleration == 0 or ky in calibration]
            for ky in lines:
                stamp += 2
                acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(k[:, ky, :]))
                acq.idx.kspace_encode_step_1 = ky
                acq.idx.slice = s
                acq.center_sample = enc_shape[1] // 2
                acq.sample_time_us = 2.5
                acq.acquisition_time_stamp = stamp
                acq.position[:] = slice_position(s, nslices).astype(np.float32)
                acq.read_dir[:], acq.phase_dir[:], acq.slice_dir[:] = axes
                acq.patient_table_position[:] = (0.0, 0.0, -1200.0)
                if ky in calibration:
                    acq.set_flag(
                        ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING
                        if ky % acceleration == 0
                        else ismrmrd.ACQ_IS_PARALLEL_CALIBRATION
                    )
                if ky == lines[0]:
                    acq.set_flag(ismrmrd.ACQ_FIRST_IN_SLICE)
                if ky == lines[-1]:
                    acq.set_flag(ismrmrd.ACQ_LAST_IN_SLICE)
                    if s == nslices - 1:
                        acq.set_flag(ismrmrd.ACQ_LAST_IN_REPETITION)
                        acq.set_flag(ismrmrd.ACQ_LAST_IN_MEASUREMENT)
                dataset.append_acquisition(acq)
        step = max(1, (stamp - 1000) // max(waveforms, 1))
        for w in range(waveforms):
            signal = (1000 + 100 * np.sin(np.arange(40) / 3 + w)).astype(np.uint32)
            waveform = ismrmrd.Waveform.from_array(signal[None, :])
            waveform.time_stamp = 1000 + w * step
            waveform.waveform_id = 0
            dataset.append_waveform(waveform)
    return np.array(truth, dtype=np.float32)
