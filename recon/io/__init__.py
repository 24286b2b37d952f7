"""Reading ISMRMRD raw data and writing images.

- :mod:`recon.io.ismrmrd`: :func:`read_dataset` (bulk header read, lazy samples)
- :mod:`recon.io.sort`: :func:`sort_cartesian`, :func:`iter_cartesian`,
  :func:`sort_noncartesian`, :func:`noise_samples`
- :mod:`recon.io.export`: NIfTI + JSON sidecar, PNG, and the ``--format`` dispatcher
- :mod:`recon.io.images`: ISMRMRD image files (write and read back)
- :mod:`recon.io.dicom`: DICOM
- :mod:`recon.io.cfl`: BART ``.cfl``/``.hdr``
- :mod:`recon.io.header`: the XML header (``ismrmrd.xsd``, lenient fallback)
- :mod:`recon.io.flags`: acquisition flags and readout kinds
- :mod:`recon.io.summary`: what ``recon info`` reports
- :mod:`recon.io.rawwrite`: bulk writer of ISMRMRD raw files (simulator, benchmarks)
- :mod:`recon.io.atomic`: temporary name + rename for every output

Geometry conventions (voxel index vs read/phase/slice, LPS vs RAS) are in
:mod:`recon.geometry`.
"""

from recon.io.ismrmrd import RawData, read_dataset
from recon.io.sort import (
    CartesianData,
    NoiseData,
    NonCartesianData,
    iter_cartesian,
    noise_samples,
    sort_cartesian,
    sort_noncartesian,
)

__all__ = [
    "CartesianData",
    "NoiseData",
    "NonCartesianData",
    "RawData",
    "iter_cartesian",
    "noise_samples",
    "read_dataset",
    "sort_cartesian",
    "sort_noncartesian",
]
