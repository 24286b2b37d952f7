"""DICOM export: one MR Image Storage file per slice (and frame), written with pydicom.

Geometry follows :mod:`recon.geometry`: ``ImagePositionPatient`` is the LPS centre of the
first voxel of each slice (not the slice centre), ``ImageOrientationPatient`` is
``read_dir`` then ``phase_dir``, ``PixelSpacing`` is ``(dy, dx)`` (row spacing first).
Pixel values are the magnitude scaled to uint16 with ``RescaleSlope`` so that
``stored * slope + intercept`` gives back the float magnitude to 1/65535 of its range.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import numpy as np

from recon import __version__
from recon.geometry import Geometry
from recon.io.atomic import atomic_dir
from recon.io.header import Header

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def _uid(value: str | None) -> str:
    from pydicom.uid import generate_uid

    if value and all(part.isdigit() for part in value.split(".")) and len(value) <= 64:
        return value
    return generate_uid()


def _dataset(
    pixels: np.ndarray,
    slope: float,
    geometry: Geometry,
    k: int,
    number: int,
    common: dict[str, Any],
) -> Any:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    for key, value in common.items():
        setattr(ds, key, value)
    ds.SOPClassUID = MR_IMAGE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.InstanceNumber = number
    dz, dy, dx = geometry.voxel_size_mm
    first = geometry.first_voxel(k)
    ds.ImagePositionPatient = [f"{v:.6f}" for v in first]
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*geometry.read_dir, *geometry.phase_dir)]
    ds.PixelSpacing = [f"{dy:.6f}", f"{dx:.6f}"]
    ds.SliceThickness = f"{dz:.6f}"
    ds.SpacingBetweenSlices = f"{dz:.6f}"
    normal = np.cross(geometry.read_dir, geometry.phase_dir)
    ds.SliceLocation = f"{float(first @ normal):.6f}"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = f"{slope:.10g}"
    ds.PixelData = pixels.astype("<u2").tobytes()
    return ds


def write_dicom(
    path: str | Path,
    image: Any,
    geometry: Geometry,
    *,
    header: Header | None = None,
    series_description: str = "recon",
    series_number: int = 1,
) -> Path:
    """Write the magnitude of ``image`` as a directory of single-slice DICOM files.

    Parameters
    ----------
    path : str or Path
        Output directory (replaced atomically), files ``IM_0001.dcm``, ... in slice order
        within each frame.
    image : (..., nz, ny, nx) array
        Leading axes are frames (temporal positions).
    geometry : Geometry
        Geometry of the last three axes.
    header : Header, optional
        Fills scanner, timing and frame-of-reference fields.

    Returns
    -------
    Path
        The directory.
    """
    from pydicom.uid import generate_uid

    from recon.io.export import _as_volume

    path = Path(path)
    array = np.abs(_as_volume(image, geometry, str(path))).astype(np.float64)
    nz, ny, nx = array.shape[-3:]
    frames = array.reshape(-1, nz, ny, nx)
    peak = float(frames.max())
    slope = peak / 65535.0 if peak > 0 else 1.0
    now = datetime.datetime.now()
    common: dict[str, Any] = {
        "Modality": "MR",
        "PatientName": "Anonymous",
        "PatientID": "recon",
        "StudyInstanceUID": generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "SeriesNumber": series_number,
        "SeriesDescription": series_description,
        "ImageType": ["DERIVED", "PRIMARY", "M"],
        "ContentDate": now.strftime("%Y%m%d"),
        "ContentTime": now.strftime("%H%M%S"),
        "SoftwareVersions": f"recon {__version__}",
        "FrameOfReferenceUID": _uid(header.frame_of_reference_uid if header else None),
        "PositionReferenceIndicator": "",
    }
    if header is not None:
        if header.vendor:
            common["Manufacturer"] = header.vendor
        if header.model:
            common["ManufacturerModelName"] = header.model
        if header.field_strength_t:
            common["MagneticFieldStrength"] = f"{header.field_strength_t:.4f}"
        if header.h1_frequency_hz and 1e6 < header.h1_frequency_hz < 2e9:
            common["ImagingFrequency"] = f"{header.h1_frequency_hz / 1e6:.6f}"
        if header.te_ms:
            common["EchoTime"] = f"{header.te_ms[0]:.4f}"
        if header.tr_ms:
            common["RepetitionTime"] = f"{header.tr_ms[0]:.4f}"
        if header.flip_angle_deg:
            common["FlipAngle"] = f"{header.flip_angle_deg[0]:.4f}"
        if header.patient_position:
            common["PatientPosition"] = header.patient_position
        if header.protocol_name:
            common["ProtocolName"] = header.protocol_name
    with atomic_dir(path) as tmp:
        number = 0
        for t, frame in enumerate(frames):
            for k in range(nz):
                number += 1
                pixels = np.rint(frame[k] / slope).clip(0, 65535)
                extra = {"TemporalPositionIdentifier": t + 1} if len(frames) > 1 else {}
                ds = _dataset(pixels, slope, geometry, k, number, {**common, **extra})
                ds.save_as(tmp / f"IM_{number:04d}.dcm", enforce_file_format=True)
    return path
