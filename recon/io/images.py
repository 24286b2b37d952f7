"""ISMRMRD image files: write reconstructed images, read image series back.

An ISMRMRD image series is an HDF5 group ``/<group>/<series>`` with ``header`` (one
ISMRMRD image header per image), ``attributes`` (the Meta XML string of each image) and
``data`` of shape ``(nimages, channels, nz, ny, nx)``. Files written here are readable by
``ismrmrd.Dataset(path, group).read_image(series, i)``.

Image headers carry the geometry of :mod:`recon.geometry`: ``position`` is the centre of
voxel ``(ny//2, nx//2)`` of each slice (``nz//2`` too for a volume), ``field_of_view`` is
``(x, y, z)`` in mm with ``z`` the slice thickness (or slab thickness for a volume).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from recon import __version__
from recon.errors import InputError
from recon.geometry import Geometry, geometry_from_header
from recon.io.atomic import atomic_path
from recon.io.header import Header

#: ISMRMRD image types.
MAGNITUDE, PHASE, REAL, IMAG, COMPLEX = 1, 2, 3, 4, 5

COUNTERS = ("average", "slice", "contrast", "phase", "repetition", "set")


@dataclass
class ImageSeries:
    """One image series read back from a file.

    Attributes
    ----------
    name : str
        The series' group name (e.g. ``image_0``).
    data : (nimages, channels, nz, ny, nx) array
        float32, complex64 or the stored integer type.
    headers : numpy structured array (nimages,)
        ISMRMRD image headers (fields ``position``, ``read_dir``, ``slice``, ...).
    meta : list of dict
        The Meta attributes of each image (values are strings or lists of strings).
    """

    name: str
    data: np.ndarray
    headers: np.ndarray
    meta: list[dict[str, Any]]

    def geometry(self, index: int) -> Geometry:
        """Geometry of image ``index`` (shape ``(nz, ny, nx)``)."""
        h = self.headers[index]
        nx, ny, nz = (int(v) for v in h["matrix_size"])
        return geometry_from_header(
            (nz, ny, nx),
            tuple(float(v) for v in h["field_of_view"]),
            h["position"],
            h["read_dir"],
            h["phase_dir"],
            h["slice_dir"],
            h["patient_table_position"],
        )


def _meta_xml(meta: dict[str, Any]) -> str:
    import ismrmrd

    return ismrmrd.Meta(meta).serialize()


def _image(
    data: np.ndarray,
    geometry: Geometry,
    position: np.ndarray,
    fov_z: float,
    image_type: int,
    index: int,
    series_index: int,
    counters: dict[str, int],
    meta: dict[str, Any],
    measurement_uid: int,
) -> Any:
    import ismrmrd

    img = ismrmrd.Image.from_array(data[None], transpose=False)
    head = img.getHead()
    _, ny, nx = data.shape
    _, dy, dx = geometry.voxel_size_mm
    head.field_of_view[:] = (nx * dx, ny * dy, fov_z)
    head.position[:] = [float(v) for v in position]
    head.read_dir[:] = [float(v) for v in geometry.read_dir]
    head.phase_dir[:] = [float(v) for v in geometry.phase_dir]
    head.slice_dir[:] = [float(v) for v in geometry.slice_dir]
    head.patient_table_position[:] = [float(v) for v in geometry.patient_table_position]
    head.image_type = image_type
    head.image_index = index
    head.image_series_index = series_index
    head.measurement_uid = measurement_uid
    for name, value in counters.items():
        setattr(head, name, int(value))
    img.setHead(head)
    img.data[:] = data[None]
    img.attribute_string = _meta_xml(meta)
    return img


def write_ismrmrd_images(
    path: str | Path,
    image: Any,
    geometry: Geometry,
    *,
    header: Header | None = None,
    complex_values: bool = False,
    indices: dict[str, Sequence[int]] | None = None,
    as_volume: bool = False,
    series: str = "image_0",
    series_index: int = 0,
    group: str = "dataset",
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write ``image`` as an ISMRMRD image file (magnitude series, optionally complex too).

    Parameters
    ----------
    path : str or Path
        New file (replaced atomically when it exists).
    image : (..., nz, ny, nx) array
        Leading axes are frames (e.g. repetitions), flattened in C order.
    geometry : Geometry
        Geometry of the last three axes.
    header : Header, optional
        Written to ``/<group>/xml`` and used for Meta attributes.
    complex_values : bool
        Also write series ``<series>_complex`` (image type COMPLEX) with complex64 data.
    indices : dict of counter name to sequence, optional
        Counter values (``repetition``, ``contrast``, ...) of each frame for the headers.
    as_volume : bool
        One 3D image per frame (a slab) instead of one 2D image per slice.
    series, series_index, group : str, int, str
        Names and series index in the headers.
    meta : dict, optional
        Extra Meta attributes for every image.

    Returns
    -------
    Path
    """
    import ismrmrd

    from recon.io.export import _as_volume, robust_window

    path = Path(path)
    array = _as_volume(image, geometry, str(path))
    nz, ny, nx = array.shape[-3:]
    frames = array.reshape(-1, nz, ny, nx)
    indices = dict(indices or {})
    for name, values in indices.items():
        if name not in COUNTERS or len(values) != len(frames):
            raise InputError(
                f"{path}: indices[{name!r}] must be a counter of {COUNTERS} with one value "
                f"per frame ({len(frames)})"
            )
    low, high = robust_window(frames)
    base_meta = {
        "DataRole": "Image",
        "ImageProcessingHistory": "recon",
        "SoftwareVersion": f"recon {__version__}",
        "WindowCenter": f"{(low + high) / 2:.6g}",
        "WindowWidth": f"{high - low:.6g}",
        **(meta or {}),
    }
    uid = 0
    variants = [(series, series_index, MAGNITUDE)]
    if complex_values:
        variants.append((f"{series}_complex", series_index + 1, COMPLEX))
    with atomic_path(path) as tmp:
        tmp.unlink()
        dset = ismrmrd.Dataset(str(tmp), group, create_if_needed=True)
        try:
            if header is not None:
                dset.write_xml_header(header.xml)
            for name, s_index, kind in variants:
                values = np.abs(frames).astype(np.float32) if kind == MAGNITUDE else frames
                values = values.astype(np.complex64 if kind == COMPLEX else np.float32)
                number = 0
                for f, frame in enumerate(values):
                    counters = {n: v[f] for n, v in indices.items()}
                    if as_volume:
                        parts = [(frame, geometry.position, nz * geometry.voxel_size_mm[0], 0)]
                    else:
                        parts = [
                            (
                                frame[k : k + 1],
                                geometry.slice_position(k),
                                geometry.voxel_size_mm[0],
                                k,
                            )
                            for k in range(nz)
                        ]
                    for data, position, fov_z, k in parts:
                        number += 1
                        item_counters = {"slice": k, **counters}
                        item_meta = {**base_meta, "ImageComment": name}
                        dset.append_image(
                            name,
                            _image(
                                data,
                                geometry,
                                position,
                                fov_z,
                                kind,
                                number,
                                s_index,
                                item_counters,
                                item_meta,
                                uid,
                            ),
                        )
        finally:
            dset.close()
    return path


def read_ismrmrd_images(path: str | Path, group: str | None = None) -> list[ImageSeries]:
    """Read all image series of an ISMRMRD file.

    Parameters
    ----------
    path : str or Path
    group : str, optional
        The group holding the series (``dataset``, ``images``, ...); by default every
        top-level group is searched.

    Returns
    -------
    list of ImageSeries
        In the order of the series names.
    """
    import ismrmrd

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise InputError(f"{path}: not an HDF5 file")
    out = []
    try:
        with h5py.File(path, "r") as handle:
            groups = [group] if group is not None else list(handle.keys())
            for name in groups:
                if name not in handle:
                    raise InputError(f"{path}: no group /{name}")
                node = handle[name]
                if not isinstance(node, h5py.Group):
                    continue
                for series in sorted(node.keys()):
                    item = node[series]
                    if not isinstance(item, h5py.Group) or not {"header", "data"} <= set(item):
                        continue
                    headers = item["header"][:]
                    raw = item["data"][:]
                    if raw.dtype.names and {"real", "imag"} <= set(raw.dtype.names):
                        data = (raw["real"] + 1j * raw["imag"]).astype(
                            np.complex128 if raw["real"].dtype == np.float64 else np.complex64
                        )
                    else:
                        data = raw
                    metas = []
                    if "attributes" in item:
                        for text in item["attributes"][:]:
                            text = text.decode() if isinstance(text, bytes) else str(text)
                            metas.append(dict(ismrmrd.Meta.deserialize(text)) if text else {})
                    else:
                        metas = [{} for _ in range(len(headers))]
                    out.append(ImageSeries(f"{name}/{series}", data, headers, metas))
    except (OSError, KeyError, ValueError) as error:
        raise InputError(f"{path}: cannot read images (truncated or corrupt?): {error}") from None
    if not out:
        raise InputError(f"{path}: no ISMRMRD image series found")
    return out
