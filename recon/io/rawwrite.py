"""Bulk writer of ISMRMRD raw data files (readable by ``ismrmrd.Dataset``).

``ismrmrd.Dataset.append_acquisition`` resizes the HDF5 table once per readout; this writer
appends whole blocks of readouts from arrays, so large synthetic files (benchmarks, the
simulator) are written at disk speed. The file appears under its name only when complete.

Example::

    with RawWriter(path, header_xml) as writer:
        head = new_headers(n)                 # structured array, fields as in ISMRMRD
        head["idx"]["kspace_encode_step_1"] = np.arange(n)
        writer.append(head, data)             # data (n, ncoils, nsamples) complex64
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import h5py
import numpy as np

from recon.io.atomic import atomic_path


def _dtypes() -> tuple[np.dtype, np.dtype]:
    from ismrmrd.hdf5 import acquisition_dtype, acquisition_header_dtype

    return np.dtype(acquisition_dtype), np.dtype(acquisition_header_dtype)


def cartesian_header(
    matrix: tuple[int, int, int],
    fov_mm: tuple[float, float, float],
    *,
    ncoils: int,
    slices: int = 1,
    repetitions: int = 1,
    field_strength_t: float = 7.0,
    recon_matrix: tuple[int, int, int] | None = None,
    recon_fov_mm: tuple[float, float, float] | None = None,
) -> str:
    """XML header (built with ``ismrmrd.xsd``) of a fully sampled Cartesian scan.

    ``matrix`` and ``fov_mm`` are ``(x, y, z)``; the k-space centres are at ``N // 2``.
    """
    import ismrmrd.xsd as X

    def space(m, f):
        return X.encodingSpaceType(
            matrixSize=X.matrixSizeType(x=m[0], y=m[1], z=m[2]),
            fieldOfView_mm=X.fieldOfViewMm(x=f[0], y=f[1], z=f[2]),
        )

    def limit(n, centre):
        return X.limitType(minimum=0, maximum=max(n - 1, 0), center=centre)

    encoding = X.encodingType(
        encodedSpace=space(matrix, fov_mm),
        reconSpace=space(recon_matrix or matrix, recon_fov_mm or fov_mm),
        encodingLimits=X.encodingLimitsType(
            kspace_encoding_step_1=limit(matrix[1], matrix[1] // 2),
            kspace_encoding_step_2=limit(matrix[2], matrix[2] // 2),
            slice=limit(slices, 0),
            repetition=limit(repetitions, 0),
        ),
        trajectory=X.trajectoryType.CARTESIAN,
    )
    header = X.ismrmrdHeader(
        experimentalConditions=X.experimentalConditionsType(
            H1resonanceFrequency_Hz=round(42.577478e6 * field_strength_t)
        ),
        acquisitionSystemInformation=X.acquisitionSystemInformationType(
            receiverChannels=ncoils, systemFieldStrength_T=field_strength_t
        ),
        encoding=[encoding],
    )
    return X.ToXML(header)


def new_headers(n: int, *, ncoils: int = 1, nsamples: int = 0) -> np.ndarray:
    """``n`` zeroed ISMRMRD acquisition headers (version 1, directions identity)."""
    _, head_dtype = _dtypes()
    head = np.zeros(n, dtype=head_dtype)
    head["version"] = 1
    head["active_channels"] = ncoils
    head["available_channels"] = ncoils
    head["number_of_samples"] = nsamples
    head["center_sample"] = nsamples // 2
    head["read_dir"] = (1.0, 0.0, 0.0)
    head["phase_dir"] = (0.0, 1.0, 0.0)
    head["slice_dir"] = (0.0, 0.0, 1.0)
    head["scan_counter"] = np.arange(n)
    return head


class RawWriter:
    """Write an ISMRMRD raw file block by block; use as a context manager."""

    def __init__(self, path: str | Path, header_xml: str, *, group: str = "dataset") -> None:
        self.path = Path(path)
        self.header_xml = header_xml
        self.group = group
        self._atomic = atomic_path(self.path)
        self._file: h5py.File | None = None
        self._count = 0

    def __enter__(self) -> RawWriter:
        tmp = self._atomic.__enter__()
        self._file = h5py.File(tmp, "w")
        node = self._file.create_group(self.group)
        xml = node.create_dataset("xml", (1,), dtype=h5py.string_dtype())
        xml[0] = self.header_xml
        acq_dtype, _ = _dtypes()
        node.create_dataset("data", (0,), maxshape=(None,), dtype=acq_dtype, chunks=(64,))
        return self

    def append(self, head: np.ndarray, data: np.ndarray, traj: np.ndarray | None = None) -> None:
        """Append readouts.

        Parameters
        ----------
        head : (n,) structured array
            Acquisition headers (see :func:`new_headers`); ``number_of_samples``,
            ``active_channels`` and ``trajectory_dimensions`` must match ``data``/``traj``.
        data : (n, ncoils, nsamples) complex or a sequence of (ncoils_i, nsamples_i)
        traj : (n, nsamples, ndim) float or a sequence of (nsamples_i, ndim), optional
        """
        acq_dtype, _ = _dtypes()
        n = len(head)
        block = np.empty(n, dtype=acq_dtype)
        block["head"] = head
        empty = np.zeros(0, dtype=np.float32)
        for i in range(n):
            samples = np.ascontiguousarray(data[i], dtype=np.complex64)
            block["data"][i] = samples.view(np.float32).ravel()
            block["traj"][i] = (
                empty if traj is None else np.ascontiguousarray(traj[i], np.float32).ravel()
            )
        dset = self._file[self.group]["data"]
        dset.resize(self._count + n, axis=0)
        dset[self._count : self._count + n] = block
        self._count += n

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._file.close()
        self._atomic.__exit__(kind, error, trace)
