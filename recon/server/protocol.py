"""MRD (ISMRMRD) streaming protocol: message framing, bounded reading, writing.

A stream is a sequence of messages, each a little-endian ``uint16`` id followed by a payload:

==========  ===============  ==========================================================
id          name             payload
==========  ===============  ==========================================================
1           CONFIG_FILE      1024 bytes, a null-padded UTF-8 config name
2           CONFIG_TEXT      ``uint32`` length + UTF-8 text
3           HEADER           ``uint32`` length + the ISMRMRD XML header
4           CLOSE            none
5           TEXT             ``uint32`` length + UTF-8 text
1008        ACQUISITION      340-byte header + float32 trajectory
                             ``(number_of_samples, trajectory_dimensions)`` + complex64
                             data ``(active_channels, number_of_samples)``
1022        IMAGE            198-byte header + ``uint64`` attribute length + Meta XML +
                             data ``(channels, z, y, x)`` of the header's data type
1026        WAVEFORM         40-byte header + uint32 data ``(channels, number_of_samples)``
==========  ===============  ==========================================================

This follows ismrmrd-python's ``ismrmrd.serialization`` and the python-ismrmrd-server's
``connection.py``; the fixed-size headers are ismrmrd's own ctypes structures and objects are
built and serialised with ismrmrd's classes. Gadgetron counts a trailing null in string
lengths while ismrmrd-python does not: trailing nulls are stripped, so both are accepted.

Every length read from the wire is checked against :class:`Limits` *before* anything is
allocated, so a hostile or corrupt length field costs no memory; reads loop until exactly the
announced number of bytes arrived (``recv`` may return less) and writes use ``sendall``.
"""

from __future__ import annotations

import ctypes
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol

import ismrmrd
import numpy as np
from ismrmrd.acquisition import AcquisitionHeader
from ismrmrd.image import ImageHeader, get_dtype_from_data_type
from ismrmrd.waveform import WaveformHeader

from recon.errors import ProtocolError

CONFIG_FILE_BYTES = 1024
ACQUISITION_HEADER_BYTES = ctypes.sizeof(AcquisitionHeader)  # 340
IMAGE_HEADER_BYTES = ctypes.sizeof(ImageHeader)  # 198
WAVEFORM_HEADER_BYTES = ctypes.sizeof(WaveformHeader)  # 40

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class MessageId(IntEnum):
    """MRD streaming message identifiers (``uint16``, little-endian on the wire)."""

    CONFIG_FILE = 1
    CONFIG_TEXT = 2
    HEADER = 3
    CLOSE = 4
    TEXT = 5
    ACQUISITION = 1008
    IMAGE = 1022
    WAVEFORM = 1026


@dataclass(frozen=True)
class Limits:
    """Upper bounds on what one message may announce, checked before allocation.

    Attributes
    ----------
    max_text_bytes : int
        CONFIG_TEXT and TEXT payloads (bytes).
    max_header_bytes : int
        The XML header (bytes).
    max_attribute_bytes : int
        An image's Meta attribute XML (bytes).
    max_acquisition_bytes : int
        One acquisition's trajectory + data (bytes).
    max_image_bytes : int
        One image's pixel data (bytes).
    max_waveform_bytes : int
        One waveform's data (bytes).
    """

    max_text_bytes: int = 16 * 2**20
    max_header_bytes: int = 16 * 2**20
    max_attribute_bytes: int = 4 * 2**20
    max_acquisition_bytes: int = 64 * 2**20
    max_image_bytes: int = 1024 * 2**20
    max_waveform_bytes: int = 16 * 2**20


@dataclass
class Message:
    """One decoded message.

    ``payload`` is ``None`` (CLOSE), a ``str`` (CONFIG_FILE, CONFIG_TEXT, HEADER, TEXT), or an
    :class:`ismrmrd.Acquisition`, :class:`ismrmrd.Image` or :class:`ismrmrd.Waveform`.
    ``nbytes`` is the size of the message on the wire, id included.
    """

    id: MessageId
    payload: Any
    nbytes: int


class _ByteSource(Protocol):
    def recv_into(self, buffer: memoryview, nbytes: int) -> int: ...


class StreamSource:
    """Adapt a binary file-like object (``readinto``) to the ``recv_into`` interface."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def recv_into(self, buffer: memoryview, nbytes: int) -> int:
        return self._stream.readinto(buffer[:nbytes]) or 0


def _decode_string(raw: bytes | bytearray, what: str) -> str:
    """UTF-8 text without the trailing nulls Gadgetron counts in its lengths."""
    try:
        return bytes(raw).rstrip(b"\x00").decode("utf-8")
    except UnicodeDecodeError as error:
        raise ProtocolError(
            f"{what} is not valid UTF-8 ({error.reason} at byte {error.start})"
        ) from None


class MessageReader:
    """Read MRD messages from a socket (or, via :class:`StreamSource`, a file).

    Parameters
    ----------
    source : socket.socket or StreamSource
        Anything with ``recv_into(buffer, nbytes) -> int`` returning 0 at end of stream.
    limits : Limits, optional
        Bounds on announced sizes; a message above them raises :class:`ProtocolError` before
        its payload is read or allocated.
    """

    def __init__(self, source: _ByteSource, limits: Limits | None = None) -> None:
        self._source = source
        self.limits = limits or Limits()
        self.bytes_read = 0

    def _read_exact(self, nbytes: int, what: str) -> bytearray:
        """Exactly ``nbytes`` bytes (loops over short reads); EOF inside raises."""
        buffer = bytearray(nbytes)
        view = memoryview(buffer)
        got = 0
        while got < nbytes:
            n = self._source.recv_into(view[got:], nbytes - got)
            if n == 0:
                raise ProtocolError(f"connection closed inside {what}: got {got} of {nbytes} bytes")
            got += n
        self.bytes_read += nbytes
        return buffer

    def _read_length(self, what: str, limit: int) -> int:
        (length,) = _U32.unpack(self._read_exact(4, f"{what} length"))
        if length > limit:
            raise ProtocolError(f"{what} length {length} bytes exceeds the limit of {limit} bytes")
        return length

    def read_message(self) -> Message | None:
        """The next message, or ``None`` when the peer closed the stream between messages.

        Raises
        ------
        ProtocolError
            Unknown id, a length above the limits, truncated payload, or undecodable content.
        """
        first = bytearray(2)
        view = memoryview(first)
        got = self._source.recv_into(view, 2)
        if got == 0:
            return None
        if got == 1 and self._source.recv_into(view[1:], 1) == 0:
            raise ProtocolError("connection closed inside a message id: got 1 of 2 bytes")
        self.bytes_read += 2
        start = self.bytes_read - 2
        (raw_id,) = _U16.unpack(first)
        try:
            message_id = MessageId(raw_id)
        except ValueError:
            raise ProtocolError(f"unknown message id {raw_id}") from None
        payload = self._read_payload(message_id)
        return Message(message_id, payload, self.bytes_read - start)

    def _read_payload(self, message_id: MessageId) -> Any:
        limits = self.limits
        if message_id == MessageId.CLOSE:
            return None
        if message_id == MessageId.CONFIG_FILE:
            raw = self._read_exact(CONFIG_FILE_BYTES, "CONFIG_FILE payload")
            return _decode_string(raw.split(b"\x00", 1)[0], "CONFIG_FILE name")
        if message_id in (MessageId.CONFIG_TEXT, MessageId.TEXT):
            name = message_id.name
            length = self._read_length(name, limits.max_text_bytes)
            return _decode_string(self._read_exact(length, name), name)
        if message_id == MessageId.HEADER:
            length = self._read_length("HEADER", limits.max_header_bytes)
            return _decode_string(self._read_exact(length, "HEADER"), "HEADER")
        if message_id == MessageId.ACQUISITION:
            return self._read_acquisition()
        if message_id == MessageId.IMAGE:
            return self._read_image()
        return self._read_waveform()

    def _read_acquisition(self) -> ismrmrd.Acquisition:
        raw = self._read_exact(ACQUISITION_HEADER_BYTES, "ACQUISITION header")
        head = AcquisitionHeader.from_buffer_copy(raw)
        ns, nc, nt = head.number_of_samples, head.active_channels, head.trajectory_dimensions
        traj_bytes = ns * nt * 4
        data_bytes = ns * nc * 8
        if traj_bytes + data_bytes > self.limits.max_acquisition_bytes:
            raise ProtocolError(
                f"ACQUISITION of {ns} samples x {nc} channels (+{nt}-d trajectory) is "
                f"{traj_bytes + data_bytes} bytes, above the limit of "
                f"{self.limits.max_acquisition_bytes} bytes"
            )
        traj = np.frombuffer(self._read_exact(traj_bytes, "ACQUISITION trajectory"), np.float32)
        data = np.frombuffer(self._read_exact(data_bytes, "ACQUISITION data"), np.complex64)
        return ismrmrd.Acquisition(head, data.reshape(nc, ns), traj.reshape(ns, nt))

    def _read_image(self) -> ismrmrd.Image:
        raw = self._read_exact(IMAGE_HEADER_BYTES, "IMAGE header")
        head = ImageHeader.from_buffer_copy(raw)
        try:
            dtype = get_dtype_from_data_type(head.data_type)
        except TypeError:
            raise ProtocolError(f"IMAGE has unknown data type {head.data_type}") from None
        shape = (head.channels, head.matrix_size[2], head.matrix_size[1], head.matrix_size[0])
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes > self.limits.max_image_bytes:
            raise ProtocolError(
                f"IMAGE of shape {shape} ({dtype}) is {nbytes} bytes, above the limit of "
                f"{self.limits.max_image_bytes} bytes"
            )
        (attr_len,) = _U64.unpack(self._read_exact(8, "IMAGE attribute length"))
        if attr_len > self.limits.max_attribute_bytes:
            raise ProtocolError(
                f"IMAGE attribute length {attr_len} bytes exceeds the limit of "
                f"{self.limits.max_attribute_bytes} bytes"
            )
        attributes = _decode_string(self._read_exact(attr_len, "IMAGE attributes"), "IMAGE Meta")
        data = np.frombuffer(self._read_exact(nbytes, "IMAGE data"), dtype).reshape(shape)
        try:
            meta = ismrmrd.Meta.deserialize(attributes) if attributes else ismrmrd.Meta()
        except Exception as error:
            raise ProtocolError(f"IMAGE Meta attributes are not valid XML: {error}") from None
        image = ismrmrd.Image(head, meta=meta, data=data)
        return image

    def _read_waveform(self) -> ismrmrd.Waveform:
        raw = self._read_exact(WAVEFORM_HEADER_BYTES, "WAVEFORM header")
        head = WaveformHeader.from_buffer_copy(raw)
        nbytes = head.channels * head.number_of_samples * 4
        if nbytes > self.limits.max_waveform_bytes:
            raise ProtocolError(
                f"WAVEFORM of {head.channels} channels x {head.number_of_samples} samples is "
                f"{nbytes} bytes, above the limit of {self.limits.max_waveform_bytes} bytes"
            )
        data = np.frombuffer(self._read_exact(nbytes, "WAVEFORM data"), np.uint32)
        return ismrmrd.Waveform(raw, data)


def _string_message(message_id: MessageId, text: str) -> bytes:
    encoded = text.encode("utf-8")
    return _U16.pack(message_id) + _U32.pack(len(encoded)) + encoded


def _serialized(message_id: MessageId, obj: Any) -> bytes:
    parts: list[Any] = [_U16.pack(message_id)]
    obj.serialize_into(parts.append)
    return b"".join(parts)


def encode_message(message_id: MessageId, payload: Any = None) -> bytes:
    """The bytes of one message (id + payload) as :class:`MessageReader` reads them.

    Parameters
    ----------
    message_id : MessageId
    payload : str, ismrmrd.Acquisition, ismrmrd.Image, ismrmrd.Waveform or None
        A ``str`` for CONFIG_FILE (< 1024 UTF-8 bytes), CONFIG_TEXT, HEADER and TEXT;
        the matching ismrmrd object for ACQUISITION, IMAGE and WAVEFORM; None for CLOSE.
    """
    message_id = MessageId(message_id)
    if message_id == MessageId.CLOSE:
        return _U16.pack(message_id)
    if message_id == MessageId.CONFIG_FILE:
        encoded = str(payload).encode("utf-8")
        if len(encoded) >= CONFIG_FILE_BYTES:
            raise ProtocolError(
                f"config name of {len(encoded)} bytes is too long (max {CONFIG_FILE_BYTES - 1})"
            )
        return _U16.pack(message_id) + encoded.ljust(CONFIG_FILE_BYTES, b"\x00")
    if message_id in (MessageId.CONFIG_TEXT, MessageId.HEADER, MessageId.TEXT):
        return _string_message(message_id, str(payload))
    return _serialized(message_id, payload)


class MessageWriter:
    """Write whole MRD messages to a socket; thread-safe (one message at a time).

    Parameters
    ----------
    send : callable
        ``sendall``-like: writes all of a bytes object or raises (e.g. ``socket.sendall``).
    """

    def __init__(self, send: Callable[[bytes], Any]) -> None:
        self._send = send
        self._lock = threading.Lock()
        self.bytes_written = 0

    def send(self, message_id: MessageId, payload: Any = None) -> None:
        """Encode and send one message atomically with respect to other threads."""
        data = encode_message(message_id, payload)
        with self._lock:
            self._send(data)
            self.bytes_written += len(data)

    def send_config_file(self, name: str) -> None:
        self.send(MessageId.CONFIG_FILE, name)

    def send_config_text(self, text: str) -> None:
        self.send(MessageId.CONFIG_TEXT, text)

    def send_header(self, xml: str) -> None:
        self.send(MessageId.HEADER, xml)

    def send_text(self, text: str) -> None:
        self.send(MessageId.TEXT, text)

    def send_acquisition(self, acquisition: ismrmrd.Acquisition) -> None:
        self.send(MessageId.ACQUISITION, acquisition)

    def send_image(self, image: ismrmrd.Image) -> None:
        self.send(MessageId.IMAGE, image)

    def send_waveform(self, waveform: ismrmrd.Waveform) -> None:
        self.send(MessageId.WAVEFORM, waveform)

    def send_close(self) -> None:
        self.send(MessageId.CLOSE)
