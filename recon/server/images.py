"""Turn a reconstructed unit into an ISMRMRD image with complete header and Meta attributes.

The header copies geometry and counters from the readout nearest the k-space centre of the
unit (``position`` the volume centre in LPS mm, ``read_dir``/``phase_dir``/``slice_dir``,
``patient_table_position``, time stamps, slice/contrast/phase/repetition/set/average), takes
``field_of_view`` from the XML header's recon space, and sets image type, index and series.
"""

from __future__ import annotations

from typing import Literal

import ismrmrd
import numpy as np

from recon.errors import InputError
from recon.io.header import Encoding
from recon.server.buffering import ReconUnit

ImageDtype = Literal["float32", "int16"]
INT16_MAX = 32767


def reference_readout(unit: ReconUnit, encoding: Encoding) -> ismrmrd.Acquisition:
    """The imaging readout nearest the k-space centre line (the first one on ties)."""
    readouts = unit.imaging or unit.acquisitions
    limit = encoding.limit("kspace_encoding_step_1")
    if limit is None:
        return readouts[len(readouts) // 2]
    return min(readouts, key=lambda a: abs(a.idx.kspace_encode_step_1 - limit.center))


def make_image(
    volume: np.ndarray,
    unit: ReconUnit,
    encoding: Encoding,
    *,
    image_index: int,
    series_index: int,
    comment: str,
    dtype: ImageDtype = "float32",
    geometry: ismrmrd.Acquisition | None = None,
) -> ismrmrd.Image:
    """An MRD magnitude image of one unit.

    Parameters
    ----------
    volume : ndarray, shape (nz, ny, nx)
        The reconstruction of ``unit`` (magnitude, or complex: its magnitude is taken).
    unit : ReconUnit
        The readouts it came from (geometry and counters).
    encoding : recon.io.header.Encoding
        The session's encoding (recon field of view, k-space centre).
    image_index, series_index : int
        ``image_index`` and ``image_series_index`` of the header.
    comment : str
        ImageComments (names the reconstruction).
    dtype : {"float32", "int16"}
        Pixel type. int16 scales the maximum to 32767 and records ``RescaleSlope`` in the
        Meta attributes so that ``value = stored * RescaleSlope``.
    geometry : ismrmrd.Acquisition, optional
        A readout whose position, directions, table position and ``idx.slice`` replace
        those of the unit's (one slice of a multiband unit).

    Returns
    -------
    ismrmrd.Image
    """
    magnitude = np.abs(np.asarray(volume)).astype(np.float32, copy=False)
    if magnitude.ndim != 3:
        raise InputError(f"reconstruction returned shape {magnitude.shape}, not (nz, ny, nx)")
    if not np.all(np.isfinite(magnitude)):
        raise InputError(f"reconstruction of unit {unit.key} produced non-finite values")
    peak = float(magnitude.max()) if magnitude.size else 0.0
    meta = ismrmrd.Meta()
    if dtype == "int16":
        slope = peak / INT16_MAX if peak > 0 else 1.0
        pixels = np.round(magnitude / slope).astype(np.int16)
        meta["RescaleSlope"] = repr(slope)
        shown = peak / slope
    elif dtype == "float32":
        pixels = magnitude
        shown = peak
    else:
        raise InputError(f"image dtype {dtype!r} is not float32 or int16")
    acquisition = reference_readout(unit, encoding)
    image = ismrmrd.Image.from_array(
        pixels,
        acquisition=acquisition,
        transpose=False,
        image_type=ismrmrd.IMTYPE_MAGNITUDE,
        image_index=image_index,
        image_series_index=series_index,
        field_of_view=tuple(np.float32(v) for v in encoding.recon_fov_mm),
        average=acquisition.idx.average,
    )
    if geometry is not None:
        image.position = tuple(geometry.position)
        image.read_dir = tuple(geometry.read_dir)
        image.phase_dir = tuple(geometry.phase_dir)
        image.slice_dir = tuple(geometry.slice_dir)
        image.patient_table_position = tuple(geometry.patient_table_position)
        image.slice = geometry.idx.slice
    meta["DataRole"] = "Image"
    meta["ImageProcessingHistory"] = ["RECON"]
    meta["ImageComments"] = comment
    meta["WindowCenter"] = repr(round(shown / 2, 6))
    meta["WindowWidth"] = repr(round(shown, 6))
    image.meta = meta
    return image
