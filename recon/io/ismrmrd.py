"""Bulk reader of ISMRMRD/HDF5 raw data.

An ISMRMRD file holds ``/<group>/xml`` (the XML header, see :mod:`recon.io.header`) and
``/<group>/data``: a 1-D compound dataset with one record per readout, fields ``head`` (the
340-byte acquisition header), ``traj`` (variable-length float32, ``number_of_samples x
trajectory_dimensions``) and ``data`` (variable-length float32 pairs, ``active_channels x
number_of_samples`` complex samples). ``group`` is ``"dataset"`` unless told otherwise.

:func:`read_dataset` reads the XML header and *all* acquisition headers at once (their bytes
straight from storage, see :func:`_read_heads`, flattened into a struct of arrays,
:class:`AcquisitionHeaders`), classifies the readouts by flag (:mod:`recon.io.flags`) and
checks them. Samples are not
loaded: :meth:`RawData.iter_blocks` reads the ``data`` (and ``traj``) fields of any set of
readouts in blocks of bounded size, so a file larger than memory can be processed slice by
slice (see :mod:`recon.io.sort`).

Bad input, decided here (``E`` = :class:`~recon.errors.InputError`, ``W`` =
:class:`ReadWarning` and reconstruction goes on):

- not an HDF5 file, truncated or unreadable file, missing ``xml`` or ``data``: E;
- channel count changing between readouts (noise, calibration, imaging, navigator and
  phase-correction readouts must all agree): E;
- readouts with zero channels or zero samples: W, and the readouts are marked unusable;
- a record whose ``data`` length disagrees with its header: E;
- NaN/Inf samples (found when the samples are read): W, the samples are set to zero;
- an XML header that does not validate against ``ismrmrd.xsd``: W
  (:class:`~recon.io.header.HeaderWarning`), read leniently; XML that is not well-formed: E.

Counters outside the encoded matrix (E) or only outside the header's encoding limits (W)
are checked when sorting (:mod:`recon.io.sort`). The CLI prints an E as one line naming the
file and exits with code 2; outputs are written under temporary names (:mod:`recon.io.atomic`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from recon.errors import InputError
from recon.io.flags import ReadoutKind, classify
from recon.io.header import Header, parse_header

#: Default budget of one block of samples read at once (bytes of complex64 output).
BLOCK_BYTES = 64 * 2**20

#: Counters in ``head['idx']`` (besides ``user``), named as in ISMRMRD.
IDX_FIELDS = (
    "kspace_encode_step_1",
    "kspace_encode_step_2",
    "average",
    "slice",
    "contrast",
    "phase",
    "repetition",
    "set",
    "segment",
)


class ReadWarning(UserWarning):
    """Something odd in the raw data that the reader works around (see the module doc)."""


class AcquisitionHeaders:
    """All acquisition headers of a file as a struct of arrays.

    Every field of the ISMRMRD acquisition header is an attribute holding one array with
    the readouts along the first axis, e.g. ``flags`` (n,) uint64, ``number_of_samples``
    (n,) uint16, ``position`` (n, 3) float32. The ``idx`` counters are flattened to
    top-level names (``kspace_encode_step_1``, ``slice``, ``repetition``, ...; the
    ``idx.user`` array is ``idx_user`` (n, 8)).
    """

    def __init__(self, fields: dict[str, np.ndarray]) -> None:
        self.fields = fields

    @classmethod
    def from_structured(cls, head: np.ndarray) -> AcquisitionHeaders:
        """Flatten a structured array of ISMRMRD acquisition headers (vectorised)."""
        fields: dict[str, np.ndarray] = {}
        for name in head.dtype.names:
            if name == "idx":
                idx = head["idx"]
                for sub in idx.dtype.names:
                    key = "idx_user" if sub == "user" else sub
                    fields[key] = np.ascontiguousarray(idx[sub])
            else:
                fields[name] = np.ascontiguousarray(head[name])
        return cls(fields)

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.__dict__["fields"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __len__(self) -> int:
        return len(self.fields["flags"])

    def subset(self, index: Any) -> AcquisitionHeaders:
        """The headers of the readouts selected by ``index`` (slice, mask or indices)."""
        return AcquisitionHeaders({k: v[index] for k, v in self.fields.items()})


class _FileSource:
    """Reads sample and trajectory records of an ISMRMRD file by row ranges."""

    def __init__(self, path: Path, group: str) -> None:
        self.path, self.group = path, group

    def open(self) -> Any:
        return _open(self.path)

    def read(self, handle: Any, start: int, stop: int, step: int, traj: bool) -> tuple:
        dset = handle[self.group]["data"]
        try:
            if traj:
                both = dset.fields(["data", "traj"])[start:stop:step]
                return both["data"], both["traj"]
            return dset.fields("data")[start:stop:step], None
        except (OSError, ValueError, RuntimeError) as error:
            raise InputError(
                f"{self.path}: cannot read readouts {start}..{stop - 1} "
                f"(truncated or corrupt file?): {error}"
            ) from None


class _MemorySource:
    """Sample and trajectory records held in memory (e.g. received over the network)."""

    def __init__(self, data: Sequence[np.ndarray], traj: Sequence[np.ndarray]) -> None:
        self.path = Path("<memory>")
        self.data, self.traj = data, traj

    def open(self) -> Any:
        import contextlib

        return contextlib.nullcontext()

    def read(self, handle: Any, start: int, stop: int, step: int, traj: bool) -> tuple:
        return self.data[start:stop:step], (self.traj[start:stop:step] if traj else None)


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as error:
        raise InputError(f"{path}: cannot open as HDF5 (truncated or corrupt?): {error}") from None


@dataclass
class RawData:
    """An ISMRMRD raw dataset: header, all acquisition headers, lazy access to samples.

    Attributes
    ----------
    path : Path
        The file (``<memory>`` for data built in memory).
    header : Header
        The parsed XML header.
    head : AcquisitionHeaders
        Struct of arrays of all acquisition headers, in file order.
    kinds : (nreadouts,) int8
        :class:`~recon.io.flags.ReadoutKind` of every readout.
    usable : (nreadouts,) bool
        False for readouts without samples or channels (skipped with a warning).
    """

    path: Path
    header: Header
    head: AcquisitionHeaders
    kinds: np.ndarray
    usable: np.ndarray
    source: Any = field(repr=False)

    def __len__(self) -> int:
        return len(self.head)

    def select(self, *kinds: ReadoutKind, encoding: int | None = None) -> np.ndarray:
        """Indices (ascending) of the usable readouts of the given kinds (and encoding)."""
        keep = self.usable & np.isin(self.kinds, [int(k) for k in kinds])
        if encoding is not None:
            keep &= self.head.encoding_space_ref == encoding
        return np.flatnonzero(keep)

    def iter_blocks(
        self,
        rows: np.ndarray,
        *,
        traj: bool = False,
        block_bytes: int = BLOCK_BYTES,
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """Read the samples of ``rows`` in blocks of at most about ``block_bytes``.

        Parameters
        ----------
        rows : (n,) int
            Readout indices, ascending. Rows in arithmetic progression (consecutive, or
            every n-th as the slices of an interleaved multi-slice scan) are read with one
            strided HDF5 read; nothing else is read.
        traj : bool
            Also read the trajectories.
        block_bytes : int
            Budget of one block of complex64 samples.

        Yields
        ------
        rows : (m,) int
            The readouts of this block (all with the same channel and sample counts).
        data : (m, ncoils, nsamples) complex64
            Their samples; NaN/Inf samples are replaced by 0 with a :class:`ReadWarning`.
        traj : (m, nsamples, ndim) float32 or None
            Their trajectories (``ndim`` = ``trajectory_dimensions``).
        """
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return
        if (np.diff(rows) <= 0).any():
            raise ValueError("iter_blocks: rows must be strictly ascending")
        nc = self.head.active_channels[rows].astype(np.int64)
        ns = self.head.number_of_samples[rows].astype(np.int64)
        nbytes = 8 * nc * ns
        with self.source.open() as handle:
            for group, step in _plan_blocks(rows, nc, ns, nbytes, block_bytes):
                yield self._read_group(handle, group, step, traj)

    def _read_group(self, handle: Any, group: np.ndarray, step: int, traj: bool) -> tuple:
        start, stop = int(group[0]), int(group[-1]) + 1
        records, trajs = self.source.read(handle, start, stop, step, traj)
        nc = int(self.head.active_channels[group[0]])
        ns = int(self.head.number_of_samples[group[0]])
        out = np.empty((len(group), nc, ns), dtype=np.complex64)
        flat = out.view(np.float32).reshape(len(group), 2 * nc * ns)
        for j, record in enumerate(records):
            if record.size != flat.shape[1]:
                raise InputError(
                    f"{self.source.path}: readout {group[j]} holds {record.size} values, "
                    f"its header says {nc} channels x {ns} samples ({flat.shape[1]} values)"
                )
            flat[j] = record
        del records
        bad = ~np.isfinite(flat)
        if bad.any():
            nbad = int(np.count_nonzero(bad.any(axis=1)))
            warnings.warn(
                f"{self.source.path}: {nbad} readout(s) between {start} and {stop - 1} "
                "contain NaN/Inf samples; they are set to 0",
                ReadWarning,
                stacklevel=3,
            )
            flat[bad] = 0
        coords = None
        if traj:
            ndim = int(self.head.trajectory_dimensions[group[0]])
            coords = np.empty((len(group), ns, ndim), dtype=np.float32)
            for j, record in enumerate(trajs):
                if record.size != ns * ndim:
                    raise InputError(
                        f"{self.source.path}: readout {group[j]} has {record.size} trajectory "
                        f"values, its header says {ns} samples x {ndim} dimensions"
                    )
                coords[j] = record.reshape(ns, ndim)
        return group, out, coords

    def read(self, rows: np.ndarray, *, traj: bool = False) -> tuple:
        """Samples (and trajectories) of ``rows`` (any order) at once; all of one shape.

        Returns ``(data (n, ncoils, nsamples) complex64, traj (n, nsamples, ndim) or None)``
        in the order of ``rows``.
        """
        rows = np.asarray(rows, dtype=np.int64)
        unique, inverse = np.unique(rows, return_inverse=True)
        shapes = set(
            zip(
                self.head.active_channels[unique].tolist(),
                self.head.number_of_samples[unique].tolist(),
                strict=True,
            )
        )
        if len(shapes) > 1:
            raise InputError(f"{self.path}: readouts differ in channels x samples {sorted(shapes)}")
        nc, ns = shapes.pop() if shapes else (0, 0)
        ndim = int(self.head.trajectory_dimensions[unique[0]]) if len(unique) else 0
        data = np.empty((len(unique), nc, ns), dtype=np.complex64)
        coords = np.empty((len(unique), ns, ndim), dtype=np.float32) if traj else None
        done = 0
        for group, block, tblock in self.iter_blocks(unique, traj=traj):
            data[done : done + len(group)] = block
            if traj:
                coords[done : done + len(group)] = tblock
            done += len(group)
        if np.array_equal(unique, rows):
            return data, coords
        return data[inverse], (None if coords is None else coords[inverse])


def _plan_blocks(
    rows: np.ndarray, nc: np.ndarray, ns: np.ndarray, nbytes: np.ndarray, budget: int
) -> Iterator[tuple[np.ndarray, int]]:
    """Split ascending ``rows`` into (group, step): runs read with one strided h5py call.

    A group is an arithmetic progression of rows with one (channels, samples) shape and
    at most ``budget`` bytes of samples (at least one readout).
    """
    start = 0
    n = len(rows)
    while start < n:
        stop = start + 1
        step = int(rows[start + 1] - rows[start]) if start + 1 < n else 1
        total = int(nbytes[start])
        while (
            stop < n
            and rows[stop] - rows[stop - 1] == step
            and nc[stop] == nc[start]
            and ns[stop] == ns[start]
            and total + int(nbytes[stop]) <= budget
        ):
            total += int(nbytes[stop])
            stop += 1
        yield rows[start:stop], (step if stop - start > 1 else 1)
        start = stop


def _check_headers(path: Path, head: AcquisitionHeaders, kinds: np.ndarray) -> np.ndarray:
    """Vectorised sanity checks of the acquisition headers; returns the usable mask."""
    nc = head.active_channels.astype(np.int64)
    ns = head.number_of_samples.astype(np.int64)
    empty = (nc == 0) | (ns == 0)
    if empty.any():
        first = np.flatnonzero(empty)
        warnings.warn(
            f"{path}: {len(first)} readout(s) have zero channels or samples "
            f"(first: readout {first[0]}); they are skipped",
            ReadWarning,
            stacklevel=3,
        )
    usable = ~empty
    relevant = usable & (kinds != ReadoutKind.OTHER) & (kinds != ReadoutKind.DUMMY)
    channels = nc[relevant]
    if channels.size and (channels != channels[0]).any():
        where = np.flatnonzero(relevant)
        change = where[np.flatnonzero(channels != channels[0])[0]]
        raise InputError(
            f"{path}: channel count changes mid-scan ({channels[0]} channels, then "
            f"{nc[change]} at readout {change})"
        )
    return usable


def read_dataset(path: str | Path, *, group: str = "dataset") -> RawData:
    """Open an ISMRMRD raw data file: header and all acquisition headers, no samples.

    Parameters
    ----------
    path : str or Path
        The ISMRMRD/HDF5 file.
    group : str
        The HDF5 group holding ``xml`` and ``data``; when the file has no such group but
        exactly one group with both, that one is used.

    Returns
    -------
    RawData

    Raises
    ------
    InputError
        Not HDF5, truncated, no ``xml`` or ``data``, or inconsistent headers (see module doc).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise InputError(f"{path}: not an HDF5 file")
    with _open(path) as handle:
        if group not in handle:
            candidates = [
                name
                for name, node in handle.items()
                if isinstance(node, h5py.Group) and "xml" in node and "data" in node
            ]
            if len(candidates) != 1:
                raise InputError(f"{path}: no /{group} group (not an ISMRMRD raw data file)")
            group = candidates[0]
        node = handle[group]
        if "xml" not in node:
            raise InputError(f"{path}: missing /{group}/xml (the ISMRMRD header)")
        if "data" not in node:
            raise InputError(f"{path}: missing /{group}/data (no acquisitions)")
        try:
            xml = node["xml"][0]
            dset = node["data"]
            if dset.dtype.names is None or "head" not in dset.dtype.names:
                raise InputError(f"{path}: /{group}/data is not an ISMRMRD acquisition table")
            head_struct = _read_heads(path, dset)
        except (OSError, RuntimeError, ValueError) as error:
            raise InputError(f"{path}: cannot read (truncated or corrupt file?): {error}") from None
    header = parse_header(xml, str(path))
    return _build(path, header, head_struct, _FileSource(path, group))


def _read_heads(path: Path, dset: h5py.Dataset) -> np.ndarray:
    """All acquisition headers of ``dset``, without reading the samples.

    HDF5 converts the variable-length members of a compound record even when only the
    ``head`` member is requested, so ``dset.fields("head")[:]`` reads the whole file. When
    the table is stored without filters, the header bytes are instead read straight from
    the file at the offsets HDF5 reports (contiguous layout, or chunk by chunk) and checked
    against h5py on the first and last record; otherwise (or if that check fails) the
    headers are read through h5py in blocks of rows, which bounds memory but reads all.
    """
    heads = _heads_from_storage(path, dset)
    if heads is not None:
        return heads
    n = dset.shape[0]
    head_dtype = dset.dtype.fields["head"][0]
    heads = np.empty(n, dtype=head_dtype)
    step = 1024
    for start in range(0, n, step):
        heads[start : start + step] = dset.fields("head")[start : start + step]
    return heads


def _heads_from_storage(path: Path, dset: h5py.Dataset) -> np.ndarray | None:
    n = dset.shape[0]
    head_dtype = dset.dtype.fields["head"][0]
    if n == 0:
        return np.empty(0, dtype=head_dtype)
    ftype = dset.id.get_type()
    names = [ftype.get_member_name(i).decode() for i in range(ftype.get_nmembers())]
    member = names.index("head")
    if ftype.get_member_type(member).get_size() != head_dtype.itemsize:
        return None
    record = ftype.get_size()
    view = np.dtype(
        {
            "names": ["head"],
            "formats": [head_dtype],
            "offsets": [ftype.get_member_offset(member)],
            "itemsize": record,
        }
    )
    plist = dset.id.get_create_plist()
    if plist.get_nfilters():
        return None
    layout = plist.get_layout()
    if layout == h5py.h5d.CONTIGUOUS:
        offset = dset.id.get_offset()
        if offset is None:
            return None
        heads = np.fromfile(path, dtype=view, count=n, offset=offset)["head"]
        if len(heads) != n:
            return None
    elif layout == h5py.h5d.CHUNKED and len(dset.chunks) == 1:
        rows = dset.chunks[0]
        chunks: list = []
        dset.id.chunk_iter(chunks.append)
        heads = np.empty(n, dtype=head_dtype)
        filled = 0
        mapped = np.memmap(path, dtype=np.uint8, mode="r")
        for info in chunks:
            start = info.chunk_offset[0]
            count = min(rows, n - start)
            end = info.byte_offset + count * record
            if end > mapped.size:
                return None
            heads[start : start + count] = mapped[info.byte_offset : end].view(view)["head"]
            filled += count
        del mapped
        if filled != n:
            return None
    else:
        return None
    for i in {0, n - 1}:
        if dset.fields("head")[i] != heads[i]:
            return None
    return heads


def raw_from_acquisitions(header: str | Header, acquisitions: Sequence[Any]) -> RawData:
    """Build :class:`RawData` in memory from ``ismrmrd.Acquisition`` objects.

    Used by the MRD server, which receives readouts one by one.
    """
    from ismrmrd.hdf5 import acquisition_header_dtype

    if not isinstance(header, Header):
        header = parse_header(header, "<memory>")
    head = np.empty(len(acquisitions), dtype=acquisition_header_dtype)
    data, traj = [], []
    for i, acq in enumerate(acquisitions):
        head[i] = np.frombuffer(acq.getHead(), dtype=acquisition_header_dtype)[0]
        data.append(np.ascontiguousarray(acq.data, dtype=np.complex64).view(np.float32).ravel())
        traj.append(np.ascontiguousarray(acq.traj, dtype=np.float32).ravel())
    return _build(Path("<memory>"), header, head, _MemorySource(data, traj))


def _build(path: Path, header: Header, head_struct: np.ndarray, source: Any) -> RawData:
    head = AcquisitionHeaders.from_structured(head_struct)
    kinds = classify(head.flags)
    usable = _check_headers(path, head, kinds)
    return RawData(path=path, header=header, head=head, kinds=kinds, usable=usable, source=source)
