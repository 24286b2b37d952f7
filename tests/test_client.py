"""MRD client: what it sends (order, waveforms), output layout, the ``recon send`` command."""

from __future__ import annotations

import socket
import threading

import h5py
import ismrmrd
import numpy as np
import pytest
from server_sim import write_multislice
from typer.testing import CliRunner

from recon.cli import app
from recon.errors import InputError, ProtocolError
from recon.metrics import nrmse
from recon.server import ReconServer, ServerOptions, send_file
from recon.server.client import RawFile, interleave
from recon.server.protocol import MessageId, MessageReader, MessageWriter
from recon.server.reconstruction import cartesian_factory


@pytest.fixture(scope="module")
def sim_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("client") / "sim.h5"
    truth = write_multislice(path, nslices=2, ncoils=4, waveforms=6)
    return path, truth


class RecordingServer:
    """A fake MRD server that records the messages of one connection and replies CLOSE."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.messages = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def address(self):
        return self.listener.getsockname()

    def _run(self) -> None:
        sock, _ = self.listener.accept()
        with sock:
            reader = MessageReader(sock)
            while (message := reader.read_message()) is not None:
                self.messages.append(message)
                if message.id == MessageId.CLOSE:
                    MessageWriter(sock.sendall).send_close()
                    break
        self.listener.close()


def test_client_sends_config_header_waveforms_in_time_order_then_close(sim_file):
    path, _ = sim_file
    fake = RecordingServer()
    result = send_file(path, *fake.address, config="7t_head")
    fake.thread.join(10)
    ids = [m.id for m in fake.messages]
    assert ids[:2] == [MessageId.CONFIG_FILE, MessageId.HEADER] and ids[-1] == MessageId.CLOSE
    assert fake.messages[0].payload == "7t_head"
    assert fake.messages[1].payload == RawFile.open(path).xml
    assert ids.count(MessageId.WAVEFORM) == 6 == result.waveforms
    assert ids.count(MessageId.ACQUISITION) == result.acquisitions == 2 + 2 * 40
    stamps = [
        m.payload.time_stamp if m.id == MessageId.WAVEFORM else m.payload.acquisition_time_stamp
        for m in fake.messages[2:-1]
    ]
    assert stamps == sorted(stamps)
    assert result.closed and result.images == [] and result.latency_s is None


def test_interleave_keeps_acquisition_order():
    acqs = []
    for stamp in (10, 30, 20, 40):
        acq = ismrmrd.Acquisition.from_array(np.zeros((1, 2), np.complex64))
        acq.acquisition_time_stamp = stamp
        acqs.append(acq)
    waves = []
    for stamp in (35, 5, 50):
        wave = ismrmrd.Waveform.from_array(np.zeros((1, 2), np.uint32))
        wave.time_stamp = stamp
        waves.append(wave)
    order = [
        ("w", x.time_stamp) if isinstance(x, ismrmrd.Waveform) else ("a", x.acquisition_time_stamp)
        for x in interleave(iter(acqs), waves)
    ]
    assert order == [("w", 5), ("a", 10), ("a", 30), ("a", 20), ("w", 35), ("a", 40), ("w", 50)]


def test_bad_input_files(tmp_path):
    with pytest.raises(InputError, match="not a readable HDF5"):
        RawFile.open(tmp_path / "missing.h5")
    two = tmp_path / "two.h5"
    with h5py.File(two, "w") as f:
        f.create_group("a")
        f.create_group("b")
    with pytest.raises(InputError, match="2 groups"):
        RawFile.open(two)
    with pytest.raises(InputError, match="no ISMRMRD xml and data"):
        RawFile.open(two, "a")


def test_unreachable_server_is_a_protocol_error(sim_file):
    path, _ = sim_file
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with pytest.raises(ProtocolError, match="cannot connect"):
        send_file(path, "127.0.0.1", port, timeout_s=2)


def test_recon_send_writes_server_client_layout(sim_file, tmp_path):
    path, truth = sim_file
    server = ReconServer(
        ServerOptions(port=0, device="cpu", timeout_s=20, factory=cartesian_factory)
    )
    server.start()
    try:
        port = server.address[1]
        out = tmp_path / "out.h5"
        runner = CliRunner()
        ok = runner.invoke(app, ["send", str(path), "--port", str(port), "-o", str(out)])
        bad = runner.invoke(
            app, ["send", str(path), "--port", str(port), "-o", str(tmp_path / "x.h5"), "-c", "?"]
        )
    finally:
        server.shutdown()
    assert ok.exit_code == 0, ok.output
    assert "latency" in ok.output and "received 2 images" in ok.output
    with h5py.File(out, "r") as f:
        assert sorted(f["dataset"]) == ["image_1", "xml"]
        assert sorted(f["dataset/image_1"]) == ["attributes", "data", "header"]
        data = f["dataset/image_1/data"][:]
        slices = f["dataset/image_1/header"]["slice"][:]
    assert data.shape == (2, 1, 1, 40, 48)
    assert max(nrmse(data[i, 0, 0], truth[s]) for i, s in enumerate(slices)) < 1e-5
    assert isinstance(bad.exception, ProtocolError) and "unknown config" in str(bad.exception)
    assert not (tmp_path / "x.h5").exists()
