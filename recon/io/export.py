"""Export reconstructed images: NIfTI + BIDS-style JSON sidecar, PNG preview, and the
``--format`` dispatcher over all writers (ISMRMRD images, DICOM, BART cfl).

Images are ``(..., nz, ny, nx)`` arrays (real or complex) with a
:class:`~recon.geometry.Geometry` for the last three axes (see :mod:`recon.geometry` for the
voxel/world conventions). Every writer goes through :mod:`recon.io.atomic`: an output is
either complete or absent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recon import __version__
from recon.errors import ConfigError, InputError
from recon.geometry import Geometry
from recon.io.atomic import atomic_path
from recon.io.header import Header

FORMATS = ("nifti", "png", "ismrmrd", "dicom", "cfl")


def _as_volume(image: Any, geometry: Geometry | None, where: str) -> np.ndarray:
    """Check and return ``image`` as a NumPy array ``(..., nz, ny, nx)``."""
    from recon.backend import to_host

    array = np.asarray(to_host(image))
    if array.ndim == 2:
        array = array[None]
    if array.ndim < 3:
        raise InputError(f"{where}: image must be (..., nz, ny, nx), got shape {array.shape}")
    if geometry is not None and tuple(array.shape[-3:]) != tuple(geometry.shape):
        raise InputError(
            f"{where}: image shape {array.shape[-3:]} does not match its geometry {geometry.shape}"
        )
    if not np.isfinite(array).all():
        raise InputError(f"{where}: image contains NaN or Inf values")
    return array


def make_sidecar(
    header: Header | None,
    *,
    method: str | None = None,
    parameters: dict[str, Any] | None = None,
    acceleration: Sequence[int] | None = None,
    encoding: int = 0,
) -> dict[str, Any]:
    """BIDS-style JSON sidecar from the ISMRMRD header and the reconstruction used.

    Fields are left out when the header does not know them. Times are in seconds (BIDS),
    the flip angle in degrees, the field in tesla, the imaging frequency in MHz.
    """
    side: dict[str, Any] = {}
    if header is not None:
        if header.field_strength_t:
            side["MagneticFieldStrength"] = round(header.field_strength_t, 4)
        if header.h1_frequency_hz and 1e6 < header.h1_frequency_hz < 2e9:
            side["ImagingFrequency"] = header.h1_frequency_hz / 1e6
        if header.vendor:
            side["Manufacturer"] = header.vendor
        if header.model:
            side["ManufacturersModelName"] = header.model
        if header.institution:
            side["InstitutionName"] = header.institution
        if header.protocol_name:
            side["ProtocolName"] = header.protocol_name
        if header.te_ms:
            te = [t / 1000.0 for t in header.te_ms]
            side["EchoTime"] = te[0] if len(te) == 1 else te
        if header.tr_ms:
            side["RepetitionTime"] = header.tr_ms[0] / 1000.0
        if header.ti_ms:
            side["InversionTime"] = header.ti_ms[0] / 1000.0
        if header.flip_angle_deg:
            side["FlipAngle"] = header.flip_angle_deg[0]
        if header.sequence_type:
            side["ScanningSequence"] = header.sequence_type
        if header.coil_names:
            side["ReceiveCoilActiveElements"] = ";".join(header.coil_names)
        if header.receiver_channels:
            side["ReceiveCoilChannels"] = header.receiver_channels
        enc = header.encodings[min(encoding, len(header.encodings) - 1)]
        side["MRAcquisitionType"] = "3D" if enc.encoded_matrix[2] > 1 else "2D"
        if acceleration is None:
            acceleration = enc.acceleration
    if acceleration is not None:
        side["ParallelReductionFactorInPlane"] = int(acceleration[0])
        if len(acceleration) > 1 and int(acceleration[1]) > 1:
            side["ParallelReductionFactorOutOfPlane"] = int(acceleration[1])
    if method is not None:
        side["ReconMethod"] = method
    if parameters:
        side["ReconParameters"] = _jsonable(parameters)
    side["SoftwareVersions"] = f"recon {__version__}"
    return side


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def nifti_path(path: str | Path) -> Path:
    """``path`` with the ``.nii.gz`` suffix (``.nii`` is kept when given)."""
    path = Path(path)
    if path.name.endswith((".nii.gz", ".nii")):
        return path
    return path.with_name(path.name + ".nii.gz")


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar beside a NIfTI file (``x.nii.gz`` -> ``x.json``)."""
    path = nifti_path(path)
    stem = path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.stem
    return path.with_name(stem + ".json")


def write_json(path: str | Path, content: dict[str, Any]) -> Path:
    """Write ``content`` as indented JSON, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_jsonable(content), indent=2) + "\n")
    return path


def export_nifti(
    path: str | Path,
    image: Any,
    geometry: Geometry,
    sidecar: dict[str, Any] | None = None,
    *,
    magnitude: bool = True,
    repetition_time_s: float | None = None,
) -> Path:
    """Write ``image`` as NIfTI-1 with the RAS affine of ``geometry`` (+ JSON sidecar).

    Parameters
    ----------
    path : str or Path
        Output; ``.nii.gz`` is appended unless the name ends in ``.nii(.gz)``.
    image : (..., nz, ny, nx) array
        Leading axes are flattened into the 4th NIfTI dimension.
    geometry : Geometry
        Geometry of the last three axes.
    sidecar : dict, optional
        Written beside the image as ``<name>.json`` (see :func:`make_sidecar`).
    magnitude : bool
        Store ``abs(image)`` as float32 (default) or keep complex values (complex64).
    repetition_time_s : float, optional
        Time between frames of a 4D series, stored in ``pixdim[4]`` (seconds); default the
        sidecar's ``RepetitionTime`` (fMRI).

    Returns
    -------
    Path
        The NIfTI file.
    """
    import nibabel as nib

    path = nifti_path(path)
    array = _as_volume(image, geometry, str(path))
    if magnitude or not np.iscomplexobj(array):
        array = np.abs(array).astype(np.float32) if np.iscomplexobj(array) else array
        array = array.astype(np.float32, copy=False)
    else:
        array = array.astype(np.complex64, copy=False)
    nz, ny, nx = array.shape[-3:]
    frames = array.reshape(-1, nz, ny, nx)
    data = frames.transpose(3, 2, 1, 0)  # (nx, ny, nz, t)
    if data.shape[-1] == 1:
        data = data[..., 0]
    affine = geometry.nifti_affine()
    img = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    img.header.set_xyzt_units("mm", "sec")
    if repetition_time_s is None and sidecar is not None:
        repetition_time_s = sidecar.get("RepetitionTime")
    if data.ndim == 4 and repetition_time_s:
        img.header.set_zooms((*img.header.get_zooms()[:3], float(repetition_time_s)))
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(img, tmp)
    if sidecar is not None:
        write_json(sidecar_path(path), sidecar)
    return path


def robust_window(values: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.5)) -> tuple:
    """Display window ``(low, high)`` from percentiles of the non-zero magnitudes."""
    mags = np.abs(values).ravel()
    nonzero = mags[mags > 0]
    if nonzero.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(nonzero, percentiles)
    if high <= low:
        high = low + (float(nonzero.max()) - low or 1.0)
    return float(low), float(high)


def montage(image: Any, columns: int | None = None) -> np.ndarray:
    """Tile the 2D frames of ``(..., ny, nx)`` into one ``(rows*ny, columns*nx)`` array."""
    array = np.abs(np.asarray(image))
    if array.ndim == 2:
        return array
    ny, nx = array.shape[-2:]
    frames = array.reshape(-1, ny, nx)
    n = len(frames)
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    out = np.zeros((rows * ny, columns * nx), dtype=frames.dtype)
    for i, frame in enumerate(frames):
        r, c = divmod(i, columns)
        out[r * ny : (r + 1) * ny, c * nx : (c + 1) * nx] = frame
    return out


def write_png(
    path: str | Path,
    image: Any,
    *,
    percentiles: tuple[float, float] = (1.0, 99.5),
    columns: int | None = None,
) -> Path:
    """PNG preview: magnitude montage of all slices, grey window from robust percentiles.

    Rows of the picture are ``y`` (phase), columns ``x`` (readout), first slice top left.
    """
    import matplotlib.image

    path = Path(path)
    if path.suffix.lower() != ".png":
        path = path.with_name(path.name + ".png")
    array = _as_volume(image, None, str(path))
    tiles = montage(array, columns)
    low, high = robust_window(array, percentiles)
    grey = np.clip((tiles - low) / (high - low), 0.0, 1.0)
    with atomic_path(path) as tmp:
        matplotlib.image.imsave(tmp, grey, cmap="gray", vmin=0.0, vmax=1.0, format="png")
    return path


def export(
    path: str | Path,
    image: Any,
    geometry: Geometry,
    *,
    format: str = "nifti",
    header: Header | None = None,
    sidecar: dict[str, Any] | None = None,
    magnitude: bool = True,
    indices: dict[str, Sequence[int]] | None = None,
    as_volume: bool = False,
) -> Path:
    """Write ``image`` in one of :data:`FORMATS` (the CLI's ``--format``).

    ``sidecar`` (NIfTI) defaults to :func:`make_sidecar` of ``header``; ``header`` also
    fills the ISMRMRD and DICOM headers. ``indices`` and ``as_volume`` are passed to
    :func:`recon.io.images.write_ismrmrd_images`.
    """
    fmt = format.lower()
    if fmt in ("nii", "nii.gz"):
        fmt = "nifti"
    if fmt == "nifti":
        side = sidecar if sidecar is not None else make_sidecar(header)
        return export_nifti(path, image, geometry, side, magnitude=magnitude)
    if fmt == "png":
        return write_png(path, image)
    if fmt == "ismrmrd":
        from recon.io.images import write_ismrmrd_images

        return write_ismrmrd_images(
            path,
            image,
            geometry,
            header=header,
            complex_values=not magnitude,
            indices=indices,
            as_volume=as_volume,
        )
    if fmt == "dicom":
        from recon.io.dicom import write_dicom

        return write_dicom(path, image, geometry, header=header)
    if fmt == "cfl":
        from recon.io.cfl import write_cfl

        return write_cfl(path, np.asarray(image))
    raise ConfigError(f"unknown export format {format!r}; use one of {', '.join(FORMATS)}")
