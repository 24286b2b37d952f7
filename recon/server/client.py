"""MRD streaming client: send an ISMRMRD file to a server, collect the images it returns.

The stream is CONFIG_FILE, HEADER, the file's acquisitions in file order with its waveforms
interleaved by time stamp, then CLOSE. A receiver thread collects IMAGE and TEXT messages
until the server's CLOSE. Images are written like the python-ismrmrd-server client does:
``/<group>/image_<series>/{data,header,attributes}`` through :class:`ismrmrd.Dataset`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import ismrmrd
import numpy as np

from recon.errors import InputError, ProtocolError, ReconError
from recon.server.protocol import Limits, MessageId, MessageReader, MessageWriter

ERROR_PREFIX = "recon server error:"
"""TEXT messages from the recon server starting with this report a failed connection."""

_CHUNK = 256

HDF5_LOCK = threading.Lock()
"""Serialises this module's HDF5 access: concurrent h5py reads of variable-length records
from several threads (several clients in one process) can crash the interpreter."""


@dataclass
class RawFile:
    """An ISMRMRD raw-data file opened for streaming.

    Attributes
    ----------
    path : Path
    group : str
        The HDF5 group holding ``xml`` and ``data`` (and optionally ``waveforms``).
    xml : str
        The XML header.
    """

    path: Path
    group: str
    xml: str

    @classmethod
    def open(cls, path: str | os.PathLike, group: str | None = None) -> RawFile:
        """Check that ``path`` holds ISMRMRD raw data (in ``group``, or its only group)."""
        path = Path(path)
        try:
            with HDF5_LOCK, h5py.File(path, "r") as f:
                groups = list(f.keys())
                if group is None:
                    if len(groups) != 1:
                        raise InputError(
                            f"{path}: {len(groups)} groups {groups}, choose one with --group"
                        )
                    group = groups[0]
                if group not in f or "data" not in f[group] or "xml" not in f[group]:
                    raise InputError(f"{path}: group {group!r} has no ISMRMRD xml and data")
                xml = f[group]["xml"][0]
        except OSError as error:
            raise InputError(f"{path}: not a readable HDF5 file ({error})") from None
        xml = xml.decode("utf-8") if isinstance(xml, bytes) else str(xml)
        return cls(path, group, xml)

    def acquisitions(self) -> Iterator[ismrmrd.Acquisition]:
        """The acquisitions in file order (read in chunks)."""
        with HDF5_LOCK, h5py.File(self.path, "r") as f:
            count = f[self.group]["data"].shape[0]
        for start in range(0, count, _CHUNK):
            with HDF5_LOCK, h5py.File(self.path, "r") as f:
                rows = f[self.group]["data"][start : start + _CHUNK]
            for row in rows:
                acq = ismrmrd.Acquisition(row["head"])
                acq.data[:] = row["data"].view(np.complex64).reshape(acq.data.shape)
                if acq.traj.size:
                    acq.traj[:] = row["traj"].reshape(acq.traj.shape)
                yield acq

    def waveforms(self) -> list[ismrmrd.Waveform]:
        """The waveforms (physiological signals), empty when the file has none."""
        with HDF5_LOCK, ismrmrd.Dataset(str(self.path), self.group, mode="r") as dataset:
            if "waveforms" not in dataset.list():
                return []
            return [dataset.read_waveform(i) for i in range(dataset.number_of_waveforms())]


def interleave(
    acquisitions: Iterator[ismrmrd.Acquisition], waveforms: list[ismrmrd.Waveform]
) -> Iterator[ismrmrd.Acquisition | ismrmrd.Waveform]:
    """Acquisitions in their order, each waveform sent before the first later acquisition.

    Waveform ``time_stamp`` and ``acquisition_time_stamp`` share the scanner clock.
    """
    pending = sorted(waveforms, key=lambda w: w.time_stamp)
    position = 0
    for acq in acquisitions:
        while position < len(pending) and pending[position].time_stamp <= (
            acq.acquisition_time_stamp
        ):
            yield pending[position]
            position += 1
        yield acq
    yield from pending[position:]


@dataclass
class SendResult:
    """What a streaming session returned.

    Attributes
    ----------
    images : list of ismrmrd.Image
        In arrival order.
    texts : list of str
        TEXT messages from the server.
    acquisitions, waveforms : int
        Messages sent.
    closed : bool
        The server ended with CLOSE (not a dropped connection).
    send_s : float
        Time to send the whole file (s).
    latency_s : float or None
        From the last acquisition sent to the last image received (s).
    image_times_s : list of float
        Arrival time of each image, from the first byte sent (s).
    """

    images: list[ismrmrd.Image] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    acquisitions: int = 0
    waveforms: int = 0
    closed: bool = False
    send_s: float = 0.0
    latency_s: float | None = None
    image_times_s: list[float] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        """The server's error reports."""
        return [t for t in self.texts if t.startswith(ERROR_PREFIX)]


class _Receiver(threading.Thread):
    def __init__(self, sock: socket.socket, result: SendResult, origin: float) -> None:
        super().__init__(name="mrd-receive", daemon=True)
        self.reader = MessageReader(sock, Limits())
        self.result = result
        self.origin = origin
        self.last_image_at: float | None = None
        self.ended = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while (message := self.reader.read_message()) is not None:
                if message.id == MessageId.IMAGE:
                    self.last_image_at = time.perf_counter()
                    self.result.images.append(message.payload)
                    self.result.image_times_s.append(self.last_image_at - self.origin)
                elif message.id == MessageId.TEXT:
                    self.result.texts.append(message.payload)
                elif message.id == MessageId.CLOSE:
                    self.result.closed = True
                    return
                else:
                    raise ProtocolError(f"unexpected {message.id.name} message from the server")
        except (ReconError, OSError) as error:
            self.error = error
        finally:
            self.ended.set()


def send_file(
    path: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 9002,
    config: str = "auto",
    *,
    group: str | None = None,
    waveforms: bool = True,
    timeout_s: float = 300.0,
) -> SendResult:
    """Stream an ISMRMRD file to an MRD server and collect what it sends back.

    Parameters
    ----------
    path : path
        ISMRMRD raw-data file.
    host, port : str, int
        The server.
    config : str
        Config name sent as CONFIG_FILE (``auto``: the server chooses from the header).
    group : str, optional
        HDF5 group (default: the file's only group).
    waveforms : bool
        Send the file's waveforms too.
    timeout_s : float
        Socket timeout (s) for connecting, sending and waiting for the server.

    Returns
    -------
    SendResult

    Raises
    ------
    InputError
        Unreadable file.
    ProtocolError
        The connection failed or the server answered malformed messages.
    """
    raw = RawFile.open(path, group)
    stream = interleave(raw.acquisitions(), raw.waveforms() if waveforms else [])
    result = SendResult()
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except OSError as error:
        raise ProtocolError(f"cannot connect to {host}:{port}: {error}") from None
    with sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        writer = MessageWriter(sock.sendall)
        origin = time.perf_counter()
        receiver = _Receiver(sock, result, origin)
        receiver.start()
        last_sent = None
        try:
            writer.send_config_file(config)
            writer.send_header(raw.xml)
            for item in stream:
                if receiver.ended.is_set():
                    break
                if isinstance(item, ismrmrd.Waveform):
                    writer.send_waveform(item)
                    result.waveforms += 1
                else:
                    writer.send_acquisition(item)
                    result.acquisitions += 1
                    last_sent = time.perf_counter()
            if not receiver.ended.is_set():
                writer.send_close()
        except OSError as error:
            if not receiver.ended.is_set():
                receiver.ended.wait(timeout_s)
            if not result.closed:
                raise ProtocolError(f"connection to {host}:{port} failed: {error}") from None
        result.send_s = time.perf_counter() - origin
        receiver.join(timeout_s)
        if receiver.is_alive():
            raise ProtocolError(f"no CLOSE from {host}:{port} within {timeout_s:g} s")
    if receiver.error is not None and not result.closed:
        raise ProtocolError(f"connection to {host}:{port} failed: {receiver.error}")
    if last_sent is not None and receiver.last_image_at is not None:
        result.latency_s = receiver.last_image_at - last_sent
    return result


def write_images(
    images: list[ismrmrd.Image], out: str | os.PathLike, group: str, xml: str | None = None
) -> Path:
    """Write images as ``/<group>/image_<series>/{data,header,attributes}`` (atomically).

    Parameters
    ----------
    images : list of ismrmrd.Image
    out : path
        Output HDF5 file; written to a temporary name and renamed when complete.
    group : str
        Top-level group.
    xml : str, optional
        XML header stored as ``/<group>/xml``.
    """
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with HDF5_LOCK, ismrmrd.Dataset(str(tmp), group, mode="w") as dataset:
            if xml is not None:
                dataset.write_xml_header(xml.encode("utf-8"))
            for image in images:
                dataset.append_image(f"image_{image.image_series_index}", image)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
