"""Rewrite the samples of every readout of an ISMRMRD file through a coil transform.

The output is a byte copy of the input (XML header, acquisition headers, trajectories,
waveforms, any other group) in which the ``data`` of each usable readout is replaced by
``transform(block)``, read and written in blocks of rows with h5py (no per-readout Python
reads). When the transform changes the number of channels (coil compression), the
acquisition headers (``active_channels``, ``available_channels``, ``channel_mask``) and the
XML ``receiverChannels`` are updated. The file appears under its name only when complete.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from recon.errors import InputError
from recon.io.atomic import atomic_path

#: Readouts rewritten per HDF5 read/write (bounds memory for large files).
ROWS_PER_BLOCK = 2048

Transform = Callable[[np.ndarray], np.ndarray]


def rewrite_readouts(
    src: str | Path,
    dst: str | Path,
    transform: Transform,
    usable: np.ndarray,
    *,
    ncoils_in: int,
    ncoils_out: int | None = None,
    group: str = "dataset",
) -> None:
    """Copy ``src`` to ``dst`` with ``transform`` applied to the samples of every readout.

    Parameters
    ----------
    transform : callable
        ``(m, ncoils_in, nsamples) complex64 -> (m, ncoils_out, nsamples)``; called once per
        block of readouts sharing their sample count.
    usable : (nreadouts,) bool
        Readouts to transform (others, e.g. without samples, are copied as they are).
    ncoils_in, ncoils_out : int
        Channel counts before and after (``ncoils_out`` None: unchanged).
    """
    ncoils_out = ncoils_in if ncoils_out is None else ncoils_out
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
        with h5py.File(tmp, "r+") as handle:
            node = handle[group]
            dset = node["data"]
            for start in range(0, dset.shape[0], ROWS_PER_BLOCK):
                stop = min(start + ROWS_PER_BLOCK, dset.shape[0])
                records = dset[start:stop]
                _rewrite_block(records, transform, usable[start:stop], ncoils_in, ncoils_out)
                dset[start:stop] = records
            if ncoils_out != ncoils_in:
                xml = node["xml"][0]
                xml = xml.decode() if isinstance(xml, bytes) else str(xml)
                node["xml"][0] = re.sub(
                    r"<receiverChannels>\s*\d+\s*</receiverChannels>",
                    f"<receiverChannels>{ncoils_out}</receiverChannels>",
                    xml,
                )


def _rewrite_block(
    records: np.ndarray, transform: Transform, usable: np.ndarray, nc: int, nc_out: int
) -> None:
    samples = records["data"]
    lengths = np.array([s.size for s in samples])
    keep = usable & (lengths > 0)
    for length in np.unique(lengths[keep]):
        rows = np.flatnonzero(keep & (lengths == length))
        if length % (2 * nc):
            raise InputError(f"a readout holds {length} values, not a multiple of {nc} channels")
        block = np.stack([samples[i] for i in rows]).view(np.complex64)
        out = np.ascontiguousarray(transform(block.reshape(len(rows), nc, -1)), np.complex64)
        flat = out.view(np.float32).reshape(len(rows), -1)
        for j, i in enumerate(rows):
            samples[i] = flat[j]
    records["data"] = samples
    if nc_out != nc:
        head = records["head"]
        head["active_channels"][keep] = nc_out
        head["available_channels"][keep] = nc_out
        mask = np.zeros(head["channel_mask"].shape[1:], dtype=np.uint64)
        for c in range(nc_out):
            mask[c // 64] |= np.uint64(1) << np.uint64(c % 64)
        head["channel_mask"][keep] = mask
        records["head"] = head
