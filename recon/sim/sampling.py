"""Cartesian phase-encoding plans: which (kz, ky) lines are read, in which pass, with which flag.

A plan is a small struct of arrays over readouts (one row per phase-encoding line of one
slice/partition set and repetition), so the file writer fills ISMRMRD headers in bulk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from recon.sim.spec import SimSpec


@dataclass
class LinePlan:
    """Phase-encoding lines of one pass over k-space.

    Attributes
    ----------
    ky, kz : (nlines,) int
        ``kspace_encode_step_1`` / ``_2`` indices (array indices of the centred k-space).
    calibration : (nlines,) bool
        Line belongs to the calibration (ACS) region.
    imaging : (nlines,) bool
        Line belongs to the (undersampled) imaging pattern.
    """

    ky: np.ndarray
    kz: np.ndarray
    calibration: np.ndarray
    imaging: np.ndarray


def first_line(spec: SimSpec) -> int:
    """Index of the first acquired ky line (``> 0`` with partial Fourier)."""
    return spec.matrix - math.ceil(spec.partial_fourier * spec.matrix)


def imaging_mask(spec: SimSpec, repetition: int = 0) -> np.ndarray:
    """Boolean (nz, ny) undersampling pattern of one repetition (no calibration lines).

    Lines with ``(ky - cy - offset(kz)) % accel == 0`` on partitions with
    ``(kz - cz) % accel_z == 0``, where the CAIPIRINHA offset grows by ``caipi_shift`` per
    sampled partition (Breuer et al., MRM 2006;55:549) and, with interleaved calibration, by
    one line per repetition (all ``accel x accel_z`` offsets are visited in turn).
    """
    ny = spec.matrix
    nz = spec.slices if spec.three_d else 1
    cy, cz = ny // 2, nz // 2
    ky = np.arange(ny)[None, :]
    kz = np.arange(nz)[:, None]
    shift_y, shift_z = 0, 0
    if spec.calib_mode == "interleaved":
        shift_y = repetition % spec.accel
        shift_z = (repetition // spec.accel) % spec.accel_z
    partition = kz - cz - shift_z
    on_partition = partition % spec.accel_z == 0
    offset = spec.caipi_shift * (partition // spec.accel_z) + shift_y
    mask = on_partition & ((ky - cy - offset) % spec.accel == 0)
    mask[:, : first_line(spec)] = False
    return mask


def calibration_mask(spec: SimSpec) -> np.ndarray:
    """Boolean (nz, ny) calibration region: ``calib`` x ``calib_z`` lines around the centre."""
    ny = spec.matrix
    nz = spec.slices if spec.three_d else 1
    mask = np.zeros((nz, ny), dtype=bool)
    if spec.calib_mode == "interleaved" or spec.calib == 0:
        return mask
    y0 = ny // 2 - spec.calib // 2
    z0 = nz // 2 - spec.calib_lines_z // 2
    mask[z0 : z0 + spec.calib_lines_z, y0 : y0 + spec.calib] = True
    return mask


def _plan(selected: np.ndarray, calibration: np.ndarray, imaging: np.ndarray) -> LinePlan:
    kz, ky = np.nonzero(selected)  # ordered by partition, then line
    return LinePlan(ky=ky, kz=kz, calibration=calibration[kz, ky], imaging=imaging[kz, ky])


def imaging_plan(spec: SimSpec, repetition: int = 0) -> LinePlan:
    """Lines of one imaging pass; in embedded mode the ACS lines are read in the same pass."""
    imaging = imaging_mask(spec, repetition)
    calibration = calibration_mask(spec)
    if spec.calib_mode == "embedded":
        return _plan(imaging | calibration, calibration, imaging)
    return _plan(imaging, np.zeros_like(calibration), imaging)


def calibration_plan(spec: SimSpec) -> LinePlan | None:
    """Lines of the separate calibration pass (``calib_mode == 'separate'``), else None."""
    if spec.calib_mode != "separate" or spec.calib == 0:
        return None
    calibration = calibration_mask(spec)
    return _plan(calibration, calibration, np.zeros_like(calibration))
