"""ISMRMRD acquisition flags and the classification of readouts.

Flags are 1-based bit numbers (flag N is bit N-1 of the 64-bit ``flags`` field),
as in the ISMRMRD specification. Classification is vectorised over all readouts of
a file: :func:`classify` returns one :class:`ReadoutKind` code per readout.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

FLAG_NAMES: dict[int, str] = {
    1: "first_in_encode_step1",
    2: "last_in_encode_step1",
    3: "first_in_encode_step2",
    4: "last_in_encode_step2",
    5: "first_in_average",
    6: "last_in_average",
    7: "first_in_slice",
    8: "last_in_slice",
    9: "first_in_contrast",
    10: "last_in_contrast",
    11: "first_in_phase",
    12: "last_in_phase",
    13: "first_in_repetition",
    14: "last_in_repetition",
    15: "first_in_set",
    16: "last_in_set",
    17: "first_in_segment",
    18: "last_in_segment",
    19: "noise_measurement",
    20: "parallel_calibration",
    21: "parallel_calibration_and_imaging",
    22: "reverse",
    23: "navigation",
    24: "phase_correction",
    25: "last_in_measurement",
    26: "hp_feedback",
    27: "dummy_scan",
    28: "rt_feedback",
    29: "surface_coil_correction",
    30: "phase_stabilization_reference",
    31: "phase_stabilization",
    53: "compression1",
    54: "compression2",
    55: "compression3",
    56: "compression4",
    **{56 + n: f"user{n}" for n in range(1, 9)},
}

NOISE = 19
CALIBRATION = 20
CALIBRATION_AND_IMAGING = 21
REVERSE = 22
NAVIGATION = 23
PHASE_CORRECTION = 24
DUMMY = 27
#: Flags that mark a readout as not part of the image (besides noise, navigator, phasecorr,
#: dummy): feedback, surface-coil correction and phase stabilisation data.
OTHER_NON_IMAGING = (26, 28, 29, 30, 31)


class ReadoutKind(IntEnum):
    """What a readout is for; the first matching rule (in this order) wins."""

    NOISE = 0
    DUMMY = 1
    NAVIGATOR = 2
    PHASE_CORRECTION = 3
    OTHER = 4
    CALIBRATION = 5
    CALIBRATION_AND_IMAGING = 6
    IMAGING = 7


def has_flag(flags: np.ndarray, flag: int) -> np.ndarray:
    """Boolean array: which of ``flags`` (uint64, any shape) have 1-based ``flag`` set."""
    return (np.asarray(flags, dtype=np.uint64) & np.uint64(1 << (flag - 1))) != 0


def classify(flags: np.ndarray) -> np.ndarray:
    """Classify readouts by their flags.

    Parameters
    ----------
    flags : (nreadouts,) uint64
        The ``flags`` field of the acquisition headers.

    Returns
    -------
    (nreadouts,) int8
        :class:`ReadoutKind` codes. Noise beats everything, then dummy scans, navigators,
        phase-correction lines and the other non-imaging kinds; calibration-only lines
        (flag 20) are not imaging, calibration-and-imaging lines (flag 21) are both.
    """
    flags = np.asarray(flags, dtype=np.uint64)
    kind = np.full(flags.shape, ReadoutKind.IMAGING, dtype=np.int8)
    other = np.zeros(flags.shape, dtype=bool)
    for flag in OTHER_NON_IMAGING:
        other |= has_flag(flags, flag)
    # Apply the rules from the lowest priority to the highest so the highest wins.
    rules = [
        (has_flag(flags, CALIBRATION_AND_IMAGING), ReadoutKind.CALIBRATION_AND_IMAGING),
        (has_flag(flags, CALIBRATION), ReadoutKind.CALIBRATION),
        (other, ReadoutKind.OTHER),
        (has_flag(flags, PHASE_CORRECTION), ReadoutKind.PHASE_CORRECTION),
        (has_flag(flags, NAVIGATION), ReadoutKind.NAVIGATOR),
        (has_flag(flags, DUMMY), ReadoutKind.DUMMY),
        (has_flag(flags, NOISE), ReadoutKind.NOISE),
    ]
    for selected, code in rules:
        kind[selected] = code
    return kind


def flag_counts(flags: np.ndarray) -> dict[str, int]:
    """Number of readouts with each flag set, by flag name (flags never set are left out)."""
    flags = np.asarray(flags, dtype=np.uint64)
    counts = {}
    for bit, name in FLAG_NAMES.items():
        n = int(np.count_nonzero(has_flag(flags, bit)))
        if n:
            counts[name] = n
    return counts


def kind_counts(kinds: np.ndarray) -> dict[str, int]:
    """Number of readouts of each :class:`ReadoutKind`, by lower-case name, zeros included."""
    return {kind.name.lower(): int(np.count_nonzero(kinds == kind)) for kind in ReadoutKind}
