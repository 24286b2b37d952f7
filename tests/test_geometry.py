"""The ISMRMRD -> NIfTI (RAS) / DICOM geometry on oblique slabs and slice stacks."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from recon.geometry import Geometry, GeometryWarning, stack_slices


def _rotation(ax_deg, ay_deg, az_deg):
    ax, ay, az = np.deg2rad([ax_deg, ay_deg, az_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def test_centre_voxel_sits_at_position_and_axes_follow_directions():
    rot = _rotation(25, -10, 40)
    geom = Geometry((6, 10, 12), (2.0, 1.5, 1.0), [12.0, -30.0, 45.0], rot[:, 0], rot[:, 1])
    assert np.abs(geom.voxel_to_lps([3, 5, 6]) - geom.position).max() < 1e-9
    step_x = geom.voxel_to_lps([3, 5, 7]) - geom.position
    step_z = geom.voxel_to_lps([4, 5, 6]) - geom.position
    assert np.abs(step_x - 1.0 * rot[:, 0]).max() < 1e-9
    assert np.abs(step_z - 2.0 * np.cross(rot[:, 0], rot[:, 1])).max() < 1e-9


@pytest.mark.parametrize(
    ("read", "phase", "codes"),
    [
        # LPS: +x is left, +y posterior, +z superior; slice_dir = read x phase.
        ((1, 0, 0), (0, 1, 0), ("L", "P", "S")),
        ((0, 1, 0), (0, 0, -1), ("P", "I", "R")),
        ((0, 0, 1), (1, 0, 0), ("S", "L", "P")),
    ],
)
def test_axis_codes_of_cardinal_orientations(read, phase, codes):
    geom = Geometry((4, 8, 8), (1.0, 1.0, 1.0), [0.0, 0.0, 0.0], read, phase)
    assert nib.aff2axcodes(geom.nifti_affine()) == codes


def test_oblique_affine_matches_lps_to_ras():
    rot = _rotation(20, 15, -30)
    geom = Geometry((5, 9, 11), (3.0, 1.2, 0.9), [5.0, 7.0, -9.0], rot[:, 0], rot[:, 1])
    affine = geom.nifti_affine()
    for index in ([0, 0, 0], [4, 8, 10], [2, 3, 7]):
        lps = geom.voxel_to_lps(index)
        ras = affine @ np.array([index[2], index[1], index[0], 1.0])
        assert np.abs(ras[:3] - lps * np.array([-1, -1, 1])).max() < 1e-9


def test_stack_of_slices_spacing_and_position():
    rot = _rotation(0, 30, 0)
    normal = np.cross(rot[:, 0], rot[:, 1])
    centre = np.array([1.0, 2.0, 3.0])
    slices = [
        Geometry((1, 8, 8), (2.0, 1.0, 1.0), centre + 2.5 * k * normal, rot[:, 0], rot[:, 1])
        for k in range(5)
    ]
    stack = stack_slices(slices)
    assert stack.shape == (5, 8, 8) and stack.voxel_size_mm[0] == pytest.approx(2.5)
    for k in range(5):
        assert np.abs(stack.slice_position(k) - slices[k].position).max() < 1e-9
    uneven = [*slices[:4], slices[4].slice(0)]
    uneven[4] = Geometry((1, 8, 8), (2.0, 1.0, 1.0), centre + 13 * normal, rot[:, 0], rot[:, 1])
    with pytest.warns(GeometryWarning, match="unevenly spaced"):
        stack_slices(uneven)
