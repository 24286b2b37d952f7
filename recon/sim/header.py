"""The ISMRMRD XML header of a simulated acquisition, built with ``ismrmrd.xsd``."""

from __future__ import annotations

from recon.sim.spec import SimSpec

#: Field strength of the simulated scanner (T) and proton gyromagnetic ratio (Hz/T).
FIELD_STRENGTH_T = 6.98
GAMMA_HZ_PER_T = 42.577478518e6

_TRAJECTORY_TYPES = {
    "cartesian": "CARTESIAN",
    "radial": "RADIAL",
    "golden-radial": "GOLDENANGLE",
    "spiral": "SPIRAL",
    "stack-of-stars": "GOLDENANGLE",
}


def larmor_frequency_hz() -> int:
    """H1 resonance frequency of the simulated scanner (Hz)."""
    return round(GAMMA_HZ_PER_T * FIELD_STRENGTH_T)


def encoded_geometry(spec: SimSpec) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """Encoded matrix and FOV ``(x, y, z)``: x doubled by Cartesian readout oversampling."""
    nz = spec.slices if spec.volumetric else 1
    thickness = spec.slice_thickness_mm * nz
    if spec.cartesian:
        return (spec.nx_encoded, spec.matrix, nz), (
            spec.fov_mm * spec.nx_encoded / spec.matrix,
            spec.fov_mm,
            thickness,
        )
    return (spec.matrix, spec.matrix, nz), (spec.fov_mm, spec.fov_mm, thickness)


def build_header(spec: SimSpec, *, step1_limits: tuple[int, int, int]) -> str:
    """XML header of the acquisition described by ``spec``.

    Parameters
    ----------
    spec : SimSpec
    step1_limits : (minimum, maximum, center)
        ``kspace_encoding_step_1`` limits (Cartesian: ky lines with partial Fourier;
        non-Cartesian: spoke/interleaf index).
    """
    import ismrmrd.xsd as X

    nz = spec.slices if spec.volumetric else 1
    matrix, fov = encoded_geometry(spec)
    recon_fov = (spec.fov_mm, spec.fov_mm, fov[2])

    def space(m, f):
        return X.encodingSpaceType(
            matrixSize=X.matrixSizeType(x=m[0], y=m[1], z=m[2]),
            fieldOfView_mm=X.fieldOfViewMm(x=f[0], y=f[1], z=f[2]),
        )

    def limit(minimum, maximum, center):
        return X.limitType(minimum=minimum, maximum=maximum, center=center)

    nslices = 1 if spec.volumetric else spec.slices
    limits = X.encodingLimitsType(
        kspace_encoding_step_1=limit(*step1_limits),
        kspace_encoding_step_2=limit(0, nz - 1, nz // 2),
        average=limit(0, 0, 0),
        slice=limit(0, nslices - 1, nslices // 2),
        contrast=limit(0, spec.echoes - 1, 0),
        phase=limit(0, 0, 0),
        repetition=limit(0, spec.repetitions - 1, 0),
        set=limit(0, 0, 0),
        segment=limit(0, 0, 0),
    )
    encoding = X.encodingType(
        encodedSpace=space(matrix, fov),
        reconSpace=space((spec.matrix, spec.matrix, nz), recon_fov),
        encodingLimits=limits,
        trajectory=getattr(X.trajectoryType, _TRAJECTORY_TYPES[spec.trajectory]),
    )
    if not spec.cartesian:
        samples_per_readout = spec.nx_encoded
        encoding.trajectoryDescription = X.trajectoryDescriptionType(
            identifier=spec.trajectory,
            userParameterLong=[
                X.userParameterLongType(name="matrix", value=spec.matrix),
                X.userParameterLongType(name="readouts_per_partition", value=spec.nspokes),
                X.userParameterLongType(name="samples_per_readout", value=samples_per_readout),
            ],
            userParameterString=[
                X.userParameterStringType(
                    name="units",
                    value="grid units of the encoded matrix, |k| <= N/2; order kx, ky[, kz]",
                )
            ],
            comment="trajectory stored in every acquisition, in grid units (recon.sim)",
        )
    if spec.cartesian and (spec.accel * spec.accel_z > 1 or spec.calib > 0):
        mode = getattr(X.calibrationModeType, spec.calib_mode.upper())
        parallel = X.parallelImagingType(
            accelerationFactor=X.accelerationFactorType(
                kspace_encoding_step_1=spec.accel, kspace_encoding_step_2=spec.accel_z
            ),
            calibrationMode=mode,
        )
        if spec.calib_mode == "interleaved":
            parallel.interleavingDimension = X.interleavingDimensionType.REPETITION
        encoding.parallelImaging = parallel
    header = X.ismrmrdHeader(
        version=1,
        subjectInformation=X.subjectInformationType(patientID="recon-sim", patientGender="O"),
        studyInformation=X.studyInformationType(studyDescription="recon simulated 7 T head"),
        measurementInformation=X.measurementInformationType(
            measurementID=f"recon-sim-{spec.seed}",
            patientPosition=X.patientPositionType.HFS,
            protocolName=f"sim_{spec.trajectory}_{'3d' if spec.volumetric else '2d'}",
            sequenceName="gre",
        ),
        acquisitionSystemInformation=X.acquisitionSystemInformationType(
            systemVendor="recon",
            systemModel="simulated 7 T",
            systemFieldStrength_T=FIELD_STRENGTH_T,
            relativeReceiverNoiseBandwidth=1.0,
            receiverChannels=spec.ncoils,
            coilLabel=[
                X.coilLabelType(coilNumber=c, coilName=f"H{c:02d}") for c in range(spec.ncoils)
            ],
        ),
        experimentalConditions=X.experimentalConditionsType(
            H1resonanceFrequency_Hz=larmor_frequency_hz()
        ),
        encoding=[encoding],
        sequenceParameters=X.sequenceParametersType(
            TR=[spec.tr_ms],
            TE=spec.echo_times_ms,
            flipAngle_deg=[spec.flip_deg],
            sequence_type="Flash",
        ),
        userParameters=X.userParametersType(
            userParameterDouble=[
                X.userParameterDoubleType(name="dwell_time_us", value=spec.dwell_us),
                X.userParameterDoubleType(name="noise_dwell_time_us", value=spec.noise_dwell),
                X.userParameterDoubleType(
                    name="slice_spacing_mm", value=float(spec.slice_thickness_mm)
                ),
            ],
            userParameterLong=[X.userParameterLongType(name="seed", value=spec.seed)],
        ),
    )
    return X.ToXML(header)
