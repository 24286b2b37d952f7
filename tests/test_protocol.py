"""MRD framing: interoperability with ismrmrd's own (de)serialisers, bounds, truncation."""

from __future__ import annotations

import io
import struct
import tracemalloc

import ismrmrd
import numpy as np
import pytest
from ismrmrd.acquisition import AcquisitionHeader
from ismrmrd.serialization import ConfigFile, ConfigText, ProtocolDeserializer, ProtocolSerializer

from recon.errors import ProtocolError
from recon.server.protocol import (
    ACQUISITION_HEADER_BYTES,
    IMAGE_HEADER_BYTES,
    Limits,
    MessageId,
    MessageReader,
    StreamSource,
    encode_message,
)


def _acquisition(rng: np.random.Generator, nc: int = 4, ns: int = 32, ndim: int = 2):
    data = (rng.standard_normal((nc, ns)) + 1j * rng.standard_normal((nc, ns))).astype(np.complex64)
    traj = rng.standard_normal((ns, ndim)).astype(np.float32)
    acq = ismrmrd.Acquisition.from_array(data, traj)
    acq.idx.slice, acq.idx.kspace_encode_step_1 = 2, 17
    acq.set_flag(ismrmrd.ACQ_LAST_IN_SLICE)
    acq.position[:] = (1.5, -2.0, 30.25)
    return acq


def _image(rng: np.random.Generator):
    image = ismrmrd.Image.from_array(rng.standard_normal((3, 5, 7)).astype(np.float32))
    image.image_series_index, image.slice = 4, 1
    image.meta = {"ImageComments": "test", "WindowCenter": "12"}
    return image


def _reader(data: bytes, limits: Limits | None = None) -> MessageReader:
    return MessageReader(StreamSource(io.BytesIO(data)), limits)


def _read_all(reader: MessageReader) -> list:
    messages = []
    while (message := reader.read_message()) is not None:
        messages.append(message)
    return messages


def test_reads_what_ismrmrd_serializer_writes(rng):
    acq, image = _acquisition(rng), _image(rng)
    waveform = ismrmrd.Waveform.from_array(np.arange(12, dtype=np.uint32).reshape(2, 6))
    stream = io.BytesIO()
    with ProtocolSerializer(stream) as serializer:
        serializer.serialize(ConfigFile("default"))
        serializer.serialize(ConfigText("<config/>"))
        serializer.serialize("free text")
        serializer.serialize(acq)
        serializer.serialize(image)
        serializer.serialize(waveform)
    reader = _reader(stream.getvalue())
    messages = _read_all(reader)
    ids = [m.id for m in messages]
    assert ids == [
        MessageId.CONFIG_FILE,
        MessageId.CONFIG_TEXT,
        MessageId.TEXT,
        MessageId.ACQUISITION,
        MessageId.IMAGE,
        MessageId.WAVEFORM,
        MessageId.CLOSE,
    ]
    assert [m.payload for m in messages[:3]] == ["default", "<config/>", "free text"]
    got_acq, got_image, got_waveform = (m.payload for m in messages[3:6])
    assert got_acq.getHead() == acq.getHead()
    assert np.max(np.abs(got_acq.data - acq.data)) == 0
    assert np.max(np.abs(got_acq.traj - acq.traj)) == 0
    assert got_image.getHead().image_series_index == 4
    assert np.max(np.abs(got_image.data - image.data)) == 0
    assert got_image.meta["ImageComments"] == "test"
    assert np.array_equal(got_waveform.data, waveform.data)
    assert reader.bytes_read == len(stream.getvalue())


def test_ismrmrd_deserializer_reads_what_we_write(rng):
    acq, image = _acquisition(rng), _image(rng)
    data = b"".join(
        [
            encode_message(MessageId.CONFIG_FILE, "default"),
            encode_message(MessageId.TEXT, "hello"),
            encode_message(MessageId.ACQUISITION, acq),
            encode_message(MessageId.IMAGE, image),
            encode_message(MessageId.CLOSE),
        ]
    )
    objects = list(ProtocolDeserializer(io.BytesIO(data)).deserialize())
    assert len(objects) == 4
    assert objects[0] == "default" and objects[1] == "hello"
    assert np.max(np.abs(objects[2].data - acq.data)) == 0
    assert objects[2].idx.slice == 2
    assert np.max(np.abs(objects[3].data - image.data)) == 0
    assert objects[3].meta["WindowCenter"] == "12"


@pytest.mark.parametrize("message_id", [MessageId.TEXT, MessageId.CONFIG_TEXT, MessageId.HEADER])
def test_null_terminated_lengths_are_accepted(message_id):
    """Gadgetron counts a trailing null in string lengths; ismrmrd-python does not."""
    text = "<ismrmrdHeader/>"
    gadgetron = struct.pack("<HI", message_id, len(text) + 1) + text.encode() + b"\x00"
    plain = struct.pack("<HI", message_id, len(text)) + text.encode()
    decoded = [_reader(raw).read_message().payload for raw in (gadgetron, plain)]
    assert decoded == [text, text]


def test_reads_one_byte_at_a_time(rng):
    """``recv`` may return fewer bytes than asked: the reader loops until complete."""
    acq = _acquisition(rng)

    class Trickle:
        def __init__(self, data: bytes) -> None:
            self.data, self.position, self.calls = data, 0, 0

        def recv_into(self, buffer, nbytes):
            self.calls += 1
            if self.position >= len(self.data):
                return 0
            buffer[0] = self.data[self.position]
            self.position += 1
            return 1

    raw = encode_message(MessageId.ACQUISITION, acq) + encode_message(MessageId.CLOSE)
    source = Trickle(raw)
    messages = _read_all(MessageReader(source))
    assert [m.id for m in messages] == [MessageId.ACQUISITION, MessageId.CLOSE]
    assert np.max(np.abs(messages[0].payload.data - acq.data)) == 0
    assert source.calls >= len(raw)


def test_unknown_id_is_refused():
    with pytest.raises(ProtocolError, match="unknown message id 999"):
        _reader(struct.pack("<H", 999) + b"\x00" * 16).read_message()


def test_truncated_acquisition_is_refused(rng):
    raw = encode_message(MessageId.ACQUISITION, _acquisition(rng))
    for cut in (1, 2 + ACQUISITION_HEADER_BYTES // 2, len(raw) - 1):
        with pytest.raises(ProtocolError, match="connection closed inside"):
            _reader(raw[:cut]).read_message()


def _peak_mib(fn) -> float:
    tracemalloc.start()
    try:
        fn()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak / 2**20


def test_absurd_lengths_are_refused_without_allocating(rng):
    """Every length is bounded before allocation: refusing costs (almost) no memory."""
    header = AcquisitionHeader()
    header.number_of_samples, header.active_channels = 65535, 65535
    image_header = _image(rng).getHead()
    image_header.matrix_size[:] = (65535, 65535, 65535)
    small_image = _image(rng).getHead()
    cases = {
        "TEXT length": struct.pack("<HI", MessageId.TEXT, 0xFFFFFFFF),
        "HEADER length": struct.pack("<HI", MessageId.HEADER, 0xFFFFFFFF),
        "ACQUISITION": struct.pack("<H", MessageId.ACQUISITION) + bytes(header),
        "IMAGE": struct.pack("<H", MessageId.IMAGE) + bytes(image_header),
        "IMAGE attribute": struct.pack("<H", MessageId.IMAGE)
        + bytes(small_image)
        + struct.pack("<Q", 2**63),
    }
    assert len(bytes(image_header)) == IMAGE_HEADER_BYTES
    for name, raw in cases.items():

        def read(raw=raw):
            with pytest.raises(ProtocolError, match="limit"):
                _reader(raw).read_message()

        peak = _peak_mib(read)
        assert peak < 1.0, f"{name}: {peak:.2f} MiB allocated while refusing"


def test_limits_are_configurable(rng):
    acq = _acquisition(rng, nc=4, ns=32, ndim=0)
    raw = encode_message(MessageId.ACQUISITION, acq)
    assert _reader(raw, Limits(max_acquisition_bytes=4 * 32 * 8)).read_message() is not None
    with pytest.raises(ProtocolError, match="above the limit of 1023 bytes"):
        _reader(raw, Limits(max_acquisition_bytes=1023)).read_message()


def test_invalid_utf8_and_long_config_name():
    with pytest.raises(ProtocolError, match="not valid UTF-8"):
        _reader(struct.pack("<HI", MessageId.TEXT, 2) + b"\xff\xfe").read_message()
    with pytest.raises(ProtocolError, match="too long"):
        encode_message(MessageId.CONFIG_FILE, "x" * 1024)
    raw = encode_message(MessageId.CONFIG_FILE, "x" * 1023)
    assert len(raw) == 2 + 1024
    assert _reader(raw).read_message().payload == "x" * 1023
