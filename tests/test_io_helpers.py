"""Small synthetic ISMRMRD raw files with known k-space, for the io tests (not a test module).

Files are written with ``ismrmrd.Dataset`` (the reference writer) so the reader is checked
against an independent implementation of the format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import ismrmrd
import numpy as np


def header_xml(
    *,
    enc_matrix=(32, 24, 1),
    rec_matrix=(16, 24, 1),
    enc_fov=(256.0, 192.0, 5.0),
    rec_fov=(128.0, 192.0, 5.0),
    e1=(0, 17, 8),
    e2=(0, 0, 0),
    slices=1,
    repetitions=1,
    averages=1,
    accel=(2, 1),
    trajectory="cartesian",
    channels=3,
    extra="",
) -> str:
    """An ISMRMRD XML header with the given encoding (strings valid against ismrmrd.xsd)."""

    def lim(name, lo, hi, c):
        inner = f"<minimum>{lo}</minimum><maximum>{hi}</maximum><center>{c}</center>"
        return f"<{name}>{inner}</{name}>"

    def xyz(tag, v):
        return f"<{tag}><x>{v[0]}</x><y>{v[1]}</y><z>{v[2]}</z></{tag}>"

    return (
        '<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
        "<measurementInformation><patientPosition>HFS</patientPosition>"
        "<protocolName>synthetic</protocolName></measurementInformation>"
        "<acquisitionSystemInformation><systemVendor>recon</systemVendor>"
        "<systemModel>synthetic</systemModel><systemFieldStrength_T>6.98</systemFieldStrength_T>"
        f"<relativeReceiverNoiseBandwidth>0.79</relativeReceiverNoiseBandwidth>"
        f"<receiverChannels>{channels}</receiverChannels>"
        "<coilLabel><coilNumber>1</coilNumber><coilName>C1</coilName></coilLabel>"
        "<coilLabel><coilNumber>2</coilNumber><coilName>C2</coilName></coilLabel>"
        "</acquisitionSystemInformation>"
        "<experimentalConditions><H1resonanceFrequency_Hz>297200000</H1resonanceFrequency_Hz>"
        "</experimentalConditions>"
        "<encoding><encodedSpace>"
        + xyz("matrixSize", enc_matrix)
        + xyz("fieldOfView_mm", enc_fov)
        + "</encodedSpace><reconSpace>"
        + xyz("matrixSize", rec_matrix)
        + xyz("fieldOfView_mm", rec_fov)
        + "</reconSpace><encodingLimits>"
        + lim("kspace_encoding_step_1", *e1)
        + lim("kspace_encoding_step_2", *e2)
        + lim("average", 0, averages - 1, 0)
        + lim("slice", 0, slices - 1, 0)
        + lim("repetition", 0, repetitions - 1, 0)
        + f"</encodingLimits><trajectory>{trajectory}</trajectory>"
        "<parallelImaging><accelerationFactor>"
        f"<kspace_encoding_step_1>{accel[0]}</kspace_encoding_step_1>"
        f"<kspace_encoding_step_2>{accel[1]}</kspace_encoding_step_2>"
        "</accelerationFactor><calibrationMode>embedded</calibrationMode></parallelImaging>"
        "</encoding>"
        "<sequenceParameters><TR>5.0</TR><TE>2.5</TE><flipAngle_deg>10</flipAngle_deg>"
        "</sequenceParameters>" + extra + "</ismrmrdHeader>"
    )


def acquisition(
    data,
    *,
    flags=(),
    e1=0,
    e2=0,
    slice=0,
    repetition=0,
    average=0,
    center=None,
    dwell=5.0,
    position=(0.0, 0.0, 0.0),
    traj=None,
    read=(1.0, 0.0, 0.0),
    phase=(0.0, 1.0, 0.0),
    normal=(0.0, 0.0, 1.0),
):
    """One ismrmrd.Acquisition holding ``data`` (ncoils, nsamples)."""
    nc, ns = data.shape
    acq = ismrmrd.Acquisition.from_array(np.asarray(data, np.complex64), traj)
    acq.center_sample = ns // 2 if center is None else center
    acq.sample_time_us = dwell
    acq.available_channels = nc
    acq.idx.kspace_encode_step_1 = e1
    acq.idx.kspace_encode_step_2 = e2
    acq.idx.slice = slice
    acq.idx.repetition = repetition
    acq.idx.average = average
    acq.position[:] = position
    acq.read_dir[:] = read
    acq.phase_dir[:] = phase
    acq.slice_dir[:] = normal
    for flag in flags:
        acq.set_flag(flag)
    return acq


def write(path: Path, xml: str, acquisitions) -> Path:
    """Write an ISMRMRD raw file with ismrmrd.Dataset."""
    dset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    dset.write_xml_header(xml)
    for acq in acquisitions:
        dset.append_acquisition(acq)
    dset.close()
    return path


@dataclass
class Truth:
    """Expected sorted arrays of :func:`multi_slice_file`."""

    kspace: np.ndarray  # (slice, repetition, nc, 1, ny, nx), averages averaged
    per_average: np.ndarray  # (slice, repetition, average, nc, 1, ny, nx)
    mask: np.ndarray  # (ny,) sampled imaging rows
    calib: np.ndarray  # (slice, repetition, nc, 1, cy, nx)
    calib_rows: slice
    noise: np.ndarray  # (nc, nsamples)
    positions: np.ndarray  # (slice, 3)


def multi_slice_file(path: Path, rng: np.random.Generator) -> Truth:
    """2 slices x 2 repetitions x 2 averages, 3 coils, 2x readout oversampling, R=2,
    partial Fourier (e1 0..17 centre 8 on 24 rows), asymmetric echo (24 samples centred at
    8 on 32 columns), reversed odd lines, embedded calibration e1 6..11, 2 noise readouts."""
    nc, ny, nx, ns, centre = 3, 24, 32, 24, 8
    slices, reps, avgs = 2, 2, 2
    x0 = nx // 2 - centre
    cal_lines = range(6, 12)
    positions = np.array([[1.0, -2.0, -3.0], [1.0, -2.0, 2.0]])
    per_avg = np.zeros((slices, reps, avgs, nc, 1, ny, nx), np.complex64)
    calib = np.zeros((slices, reps, avgs, nc, 1, len(cal_lines), nx), np.complex64)
    mask = np.zeros(ny, bool)
    acqs = []
    noise = (rng.standard_normal((2, nc, 64)) + 1j * rng.standard_normal((2, nc, 64))).astype(
        np.complex64
    )
    for n in noise:
        acqs.append(acquisition(n, flags=[ismrmrd.ACQ_IS_NOISE_MEASUREMENT], dwell=10.0))
    for s in range(slices):
        for r in range(reps):
            for a in range(avgs):
                for e1 in range(18):
                    row = e1 - 8 + ny // 2
                    is_cal = e1 in cal_lines
                    imaging = e1 % 2 == 0
                    if not (is_cal or imaging):
                        continue
                    line = rng.standard_normal((nc, ns)) + 1j * rng.standard_normal((nc, ns))
                    line = line.astype(np.complex64)
                    flags = []
                    if is_cal:
                        flags.append(
                            ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING
                            if imaging
                            else ismrmrd.ACQ_IS_PARALLEL_CALIBRATION
                        )
                        calib[s, r, a, :, 0, e1 - 6, x0 : x0 + ns] = line
                    if imaging:
                        per_avg[s, r, a, :, 0, row, x0 : x0 + ns] = line
                        mask[row] = True
                    stored = line
                    if e1 % 4 == 2:
                        flags.append(ismrmrd.ACQ_IS_REVERSE)
                        stored = line[:, ::-1]
                    acqs.append(
                        acquisition(
                            stored,
                            flags=flags,
                            e1=e1,
                            slice=s,
                            repetition=r,
                            average=a,
                            center=centre,
                            position=positions[s],
                        )
                    )
    xml = header_xml(slices=slices, repetitions=reps, averages=avgs, channels=nc)
    write(path, xml, acqs)
    kspace = ((per_avg[:, :, 0] + per_avg[:, :, 1]) * np.float32(0.5)).astype(np.complex64)
    cal = ((calib[:, :, 0] + calib[:, :, 1]) * np.float32(0.5)).astype(np.complex64)
    return Truth(
        kspace=kspace,
        per_average=per_avg,
        mask=mask,
        calib=cal,
        calib_rows=slice(6 - 8 + ny // 2, 12 - 8 + ny // 2),
        noise=np.concatenate(list(noise), axis=1),
        positions=positions,
    )
