"""MRD server + client on loopback: correct images, headers, streaming, concurrency, errors."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc

import ismrmrd
import numpy as np
import pytest
from ismrmrd.serialization import ConfigFile, ProtocolDeserializer, ProtocolSerializer
from ismrmrd.xsd import CreateFromDocument
from server_sim import header_xml, oblique_axes, slice_position, write_multislice

from recon.backend import ifftc, rss
from recon.errors import ConfigError
from recon.io.ismrmrd import read_dataset
from recon.io.sort import IMAGING_KINDS, sort_cartesian
from recon.metrics import nrmse
from recon.pipeline import plan_run, reconstruct
from recon.server import ReconServer, ServerOptions, send_file, write_images
from recon.server.client import ERROR_PREFIX, RawFile
from recon.server.protocol import MessageId, MessageReader, encode_message
from recon.server.reconstruction import cartesian_factory, pipeline_factory
from recon.server.server import resolve_config
from recon.sim import SimSpec, simulate

NSLICES, NCOILS, NX, NY = 3, 8, 48, 40


@pytest.fixture
def make_server():
    """Start servers on an ephemeral loopback port; always shut them down.

    They use the ``fft`` reconstruction (exact on the simulated, fully sampled data, so
    transport tests compare with the ground truth) unless a factory is given.
    """
    servers = []

    def _make(**options) -> ReconServer:
        options = {
            "port": 0,
            "device": "cpu",
            "timeout_s": 20.0,
            "factory": cartesian_factory,
            **options,
        }
        server = ReconServer(ServerOptions(**options))
        server.drain_s = 2.0
        server.start()
        servers.append(server)
        return server

    yield _make
    for server in servers:
        server.shutdown()


@pytest.fixture
def server(make_server):
    return make_server()


@pytest.fixture(scope="module")
def multislice(tmp_path_factory):
    """(path, ground-truth magnitudes (nslices, ny, nx)) of the simulated 7 T file."""
    path = tmp_path_factory.mktemp("mrd") / "multislice_7t.h5"
    truth = write_multislice(path, nslices=NSLICES, ncoils=NCOILS, nx=NX, ny=NY, waveforms=4)
    return path, truth


def _wait_served(server: ReconServer, count: int, timeout_s: float = 10.0) -> None:
    """Wait until the server has finished ``count`` connections (logged and closed)."""
    deadline = time.monotonic() + timeout_s
    while server.connections_served < count and time.monotonic() < deadline:
        time.sleep(0.01)


def _by_slice(images: list[ismrmrd.Image]) -> list[ismrmrd.Image]:
    return sorted(images, key=lambda image: image.slice)


def _worst_nrmse(images, truth) -> float:
    return max(nrmse(image.data[0, 0], truth[image.slice]) for image in images)


def _raw_session(address, chunks, *, timeout=20.0):
    """Send byte chunks on a raw socket, then read messages until CLOSE or end of stream."""
    with socket.create_connection(address, timeout=timeout) as sock:
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except OSError:
                break
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        reader = MessageReader(sock)
        messages = []
        try:
            while (message := reader.read_message()) is not None:
                messages.append(message)
                if message.id == MessageId.CLOSE:
                    break
        except ConnectionResetError:
            pass
        return messages


def _acquisition_messages(path) -> list[bytes]:
    return [encode_message(MessageId.ACQUISITION, a) for a in RawFile.open(path).acquisitions()]


def _preamble(xml: str) -> bytes:
    return encode_message(MessageId.CONFIG_FILE, "default") + encode_message(MessageId.HEADER, xml)


def test_multislice_images_match_ground_truth(server, multislice, tmp_path, caplog):
    path, truth = multislice
    with caplog.at_level(logging.INFO, logger="recon.server"):
        result = send_file(path, *server.address)
        _wait_served(server, 1)
    assert result.closed and not result.errors
    assert result.acquisitions == 2 + NSLICES * NY and result.waveforms == 4
    images = _by_slice(result.images)
    assert [image.slice for image in images] == list(range(NSLICES))
    assert _worst_nrmse(images, truth) < 1e-5
    axes = oblique_axes()
    for image in images:
        assert image.data.shape == (1, 1, NY, NX) and image.data.dtype == np.float32
        assert image.image_type == ismrmrd.IMTYPE_MAGNITUDE
        assert image.image_series_index == 1
        assert np.allclose(image.position, slice_position(image.slice, NSLICES), atol=1e-4)
        assert np.allclose(image.read_dir, axes[0]) and np.allclose(image.slice_dir, axes[2])
        assert np.allclose(image.phase_dir, axes[1])
        assert np.allclose(image.field_of_view, (2.0 * NX, 2.0 * NY, 3.0))
        assert np.allclose(image.patient_table_position, (0.0, 0.0, -1200.0))
        assert image.meta["ImageComments"].startswith("recon: cartesian")
    assert sorted(image.image_index for image in images) == list(range(1, NSLICES + 1))
    lines = [r.message for r in caplog.records if r.message.startswith("connection ")]
    assert len(lines) == 1 and "status=ok" in lines[0] and f"images={NSLICES}" in lines[0]
    assert "waveforms=4" in lines[0] and "first_image=" in lines[0]

    out = write_images(result.images, tmp_path / "images.h5", "dataset")
    with ismrmrd.Dataset(str(out), "dataset", create_if_needed=False) as dataset:
        assert dataset.number_of_images("image_1") == NSLICES
        stored = [dataset.read_image("image_1", i) for i in range(NSLICES)]
    assert _worst_nrmse(stored, truth) < 1e-5
    assert [s.meta["ImageComments"] for s in stored] == [
        i.meta["ImageComments"] for i in result.images
    ]


def test_skyra_fft_matches_offline_sorting(server, shared_file):
    path = shared_file("siemens_skyra_grappa_r3.h5")
    result = send_file(path, *server.address)
    assert result.closed and not result.errors and len(result.images) == 1
    raw = read_dataset(path)
    header = raw.header
    data = sort_cartesian(raw, remove_oversampling=True)
    offline = rss(ifftc(data.kspace.reshape(-1, *data.kspace.shape[-4:])[0]), axis=0)
    rx, ry, _ = header.encoding.recon_matrix
    offline = offline[:, :, offline.shape[-1] // 2 - rx // 2 :][..., :rx]
    image = result.images[0]
    assert image.data.shape == (1, 1, ry, rx)
    assert nrmse(image.data[0], offline) < 1e-5
    first_imaging = raw.select(*IMAGING_KINDS)[0]
    assert np.allclose(image.position, raw.head.position[first_imaging])
    assert np.allclose(image.field_of_view, header.encoding.recon_fov_mm)


def test_first_slice_returns_before_the_next_is_sent(server, multislice):
    """Incremental: slice 0's image comes back while slice 1 has not been sent at all."""
    path, truth = multislice
    acquisitions = list(RawFile.open(path).acquisitions())
    first_slice_end = next(
        i for i, a in enumerate(acquisitions) if a.is_flag_set(ismrmrd.ACQ_LAST_IN_SLICE)
    )
    with socket.create_connection(server.address, timeout=20) as sock:
        sock.sendall(_preamble(RawFile.open(path).xml))
        for acq in acquisitions[: first_slice_end + 1]:
            sock.sendall(encode_message(MessageId.ACQUISITION, acq))
        reader = MessageReader(sock)
        first = reader.read_message()
        sent_before_first_image = first_slice_end + 1
        for acq in acquisitions[first_slice_end + 1 :]:
            sock.sendall(encode_message(MessageId.ACQUISITION, acq))
        sock.sendall(encode_message(MessageId.CLOSE))
        rest = []
        while (message := reader.read_message()).id != MessageId.CLOSE:
            rest.append(message)
    assert first.id == MessageId.IMAGE and first.payload.slice == 0
    assert sent_before_first_image < len(acquisitions) - (NSLICES - 1) * NY + 1
    images = [first.payload] + [m.payload for m in rest]
    assert len(images) == NSLICES
    assert _worst_nrmse(images, truth) < 1e-5


def test_ismrmrd_protocol_serializer_interoperates(server, multislice):
    """A raw socket client built on ismrmrd's own ProtocolSerializer/Deserializer."""
    path, truth = multislice
    raw = RawFile.open(path)
    with socket.create_connection(server.address, timeout=20) as sock:
        with sock.makefile("wb") as out:
            serializer = ProtocolSerializer(out)
            serializer.serialize(ConfigFile("default"))
            serializer.serialize(CreateFromDocument(raw.xml))
            for acq in raw.acquisitions():
                serializer.serialize(acq)
            serializer.close()
        with sock.makefile("rb") as incoming:
            received = list(ProtocolDeserializer(incoming).deserialize())
    images = [m for m in received if isinstance(m, ismrmrd.Image)]
    assert len(images) == len(received) == NSLICES
    assert _worst_nrmse(images, truth) < 1e-5


def test_four_concurrent_clients(make_server, tmp_path):
    server = make_server(max_connections=4)
    files = []
    for k in range(4):
        path = tmp_path / f"client{k}.h5"
        files.append((path, write_multislice(path, nslices=2, ncoils=4, seed=100 + k)))
    results: dict[int, object] = {}

    def client(k: int) -> None:
        results[k] = send_file(files[k][0], *server.address)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == [0, 1, 2, 3]
    errors = [
        _worst_nrmse(results[k].images, files[k][1]) if len(results[k].images) == 2 else 1.0
        for k in range(4)
    ]
    assert max(errors) < 1e-5, errors


def _assert_still_serving(server, multislice):
    path, truth = multislice
    result = send_file(path, *server.address)
    assert result.closed and len(result.images) == NSLICES
    assert _worst_nrmse(result.images, truth) < 1e-5


MALFORMED = {
    "unknown id": (lambda xml, acqs: [_preamble(xml), b"\xe7\x03" + b"\x00" * 64], "unknown"),
    "truncated acquisition": (
        lambda xml, acqs: [_preamble(xml), acqs[3][: len(acqs[3]) // 2]],
        "closed inside ACQUISITION",
    ),
    "absurd length": (
        lambda xml, acqs: [_preamble(xml), b"\x05\x00\xff\xff\xff\xff" + b"x" * 1000],
        "exceeds the limit",
    ),
    "header not XML": (
        lambda xml, acqs: [
            encode_message(MessageId.CONFIG_FILE, "default"),
            encode_message(MessageId.HEADER, "this is { not xml"),
        ],
        "not well-formed",
    ),
    "image input": (
        lambda xml, acqs: [
            _preamble(xml),
            encode_message(MessageId.IMAGE, ismrmrd.Image.from_array(np.ones((4, 4), np.float32))),
        ],
        "IMAGE messages are not accepted",
    ),
    "acquisition before header": (
        lambda xml, acqs: [encode_message(MessageId.CONFIG_FILE, "default"), acqs[3]],
        "before the MRD header",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_stream_gets_error_text_then_close(server, multislice, case):
    path, _ = multislice
    make_chunks, expected = MALFORMED[case]
    chunks = make_chunks(RawFile.open(path).xml, _acquisition_messages(path))
    messages = _raw_session(server.address, chunks)
    assert [m.id for m in messages] == [MessageId.TEXT, MessageId.CLOSE]
    assert messages[0].payload.startswith(ERROR_PREFIX) and expected in messages[0].payload
    _assert_still_serving(server, multislice)


def test_dropped_connection_is_survived(server, multislice):
    path, _ = multislice
    acquisitions = _acquisition_messages(path)
    for cut in (5, NY + 4):
        sock = socket.create_connection(server.address, timeout=20)
        sock.sendall(_preamble(RawFile.open(path).xml) + b"".join(acquisitions[:cut]))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # reset, mid-stream
    _wait_served(server, 2)
    assert server.connections_served == 2
    _assert_still_serving(server, multislice)


def test_oversize_length_refused_with_bounded_memory(server, multislice):
    """Announcing 4 GiB (text) or 4 GiB of samples allocates nothing on the server."""
    path, _ = multislice
    from ismrmrd.acquisition import AcquisitionHeader

    head = AcquisitionHeader()
    head.number_of_samples, head.active_channels = 65535, 65535
    xml = RawFile.open(path).xml
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        text = _raw_session(server.address, [_preamble(xml), b"\x05\x00\xff\xff\xff\xff"])
        acq = _raw_session(
            server.address, [_preamble(xml), b"\xf0\x03" + bytes(head) + b"\x00" * 4096]
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "exceeds the limit" in text[0].payload
    assert "above the limit" in acq[0].payload
    assert (peak - before) / 2**20 < 16.0
    _assert_still_serving(server, multislice)


def test_config_names():
    chosen = [resolve_config(n).name for n in (" default ", "default.xml", "default.toml")]
    assert chosen == ["default"] * 3
    assert resolve_config("") is None and resolve_config("auto") is None
    with pytest.raises(ConfigError, match="unknown config 'Generic_Cartesian_Grappa'"):
        resolve_config("Generic_Cartesian_Grappa.xml")
    with pytest.raises(ConfigError, match="unknown config '/etc/passwd'"):
        resolve_config("/etc/passwd.toml")


def test_unknown_config_is_reported(server, multislice):
    path, _ = multislice
    result = send_file(path, *server.address, config="no_such_scanner")
    assert result.images == [] and result.closed
    assert len(result.errors) == 1 and "unknown config 'no_such_scanner'" in result.errors[0]
    _assert_still_serving(server, multislice)


@pytest.mark.filterwarnings("ignore:.*no noise readouts:UserWarning")
def test_multiband_epi_stream_matches_recon_run(make_server, tmp_path):
    """A multiband EPI run (MB 2, R 2, 3 repetitions) streamed: every true slice of every
    repetition comes back, as ``recon run`` reconstructs it, at its own position."""
    from recon.sim.epi import EpiSpec, simulate_epi

    spec = EpiSpec(matrix=32, slices=4, ncoils=4, accel=2, calib=16, multiband=2,
                   repetitions=3, slice_spacing_mm=8.0)  # fmt: skip
    path = simulate_epi(tmp_path / "mb.h5", spec).path
    raw = read_dataset(path)
    with pytest.warns(UserWarning, match="no noise readouts"):
        offline = reconstruct(plan_run(raw, device="cpu"), measure_memory=False)
    server = make_server(factory=pipeline_factory)
    result = send_file(path, *server.address, config="default")
    assert result.closed and not result.errors
    assert len(result.images) == spec.slices * spec.repetitions
    seen = set()
    for image in result.images:
        s, repetition = image.slice, image.repetition
        seen.add((s, repetition))
        reference = offline.images[repetition, s]
        assert nrmse(image.data[0, 0], reference) < 1e-5
        assert image.position[2] == pytest.approx((s - spec.slices // 2) * 8.0)
    assert seen == {(s, r) for s in range(spec.slices) for r in range(spec.repetitions)}


def test_reconstruction_failure_is_reported(make_server, multislice):
    calls = {"n": 0}

    def flaky_factory(config, header, device):
        inner = cartesian_factory(config, header, device)
        calls["n"] += 1
        first_connection = calls["n"] == 1

        class Flaky:
            name = inner.name

            def __call__(self, unit):
                if first_connection and unit.key[0] == 1:
                    raise RuntimeError("solver diverged")
                return inner(unit)

        return Flaky()

    server = make_server(factory=flaky_factory)
    path, _ = multislice
    result = send_file(path, *server.address)
    assert result.closed and len(result.images) == 1 and result.images[0].slice == 0
    assert len(result.errors) == 1
    assert "reconstruction of slice 1 failed: solver diverged" in result.errors[0]
    _assert_still_serving(server, multislice)


def test_int16_images_carry_their_scale(make_server, multislice):
    server = make_server(image_dtype="int16")
    path, truth = multislice
    result = send_file(path, *server.address)
    assert len(result.images) == NSLICES
    errors = []
    for image in result.images:
        assert image.data.dtype == np.int16 and image.data.max() == 32767
        value = image.data[0, 0] * float(image.meta["RescaleSlope"])
        errors.append(nrmse(value, truth[image.slice]))
    assert max(errors) < 1e-4


def test_sigterm_finishes_work_in_flight(multislice):
    path, truth = multislice
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "recon",
            "serve",
            "--port",
            "0",
            "--device",
            "cpu",
            "--recon",
            "fft",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = ""
        deadline = time.monotonic() + 30
        while "serving on" not in line and time.monotonic() < deadline:
            line = process.stderr.readline()
        port = int(line.rsplit(":", 1)[1].split()[0])
        acquisitions = _acquisition_messages(path)
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(_preamble(RawFile.open(path).xml) + b"".join(acquisitions[: NY + 2]))
            time.sleep(0.2)
            process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            sock.sendall(b"".join(acquisitions[NY + 2 :]) + encode_message(MessageId.CLOSE))
            reader = MessageReader(sock)
            messages = []
            while (message := reader.read_message()) is not None:
                messages.append(message)
        code = process.wait(timeout=20)
        log = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    images = [m.payload for m in messages if m.id == MessageId.IMAGE]
    assert messages[-1].id == MessageId.CLOSE and len(images) == NSLICES
    assert _worst_nrmse(images, truth) < 1e-5
    assert code == 0
    assert "SIGTERM" in log and log.count("status=ok") == 1
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_header_without_cartesian_support_is_reported(server):
    xml = header_xml(NX, NY, NSLICES, NCOILS, 2).replace(">cartesian<", ">radial<")
    messages = _raw_session(server.address, [_preamble(xml)])
    assert [m.id for m in messages] == [MessageId.TEXT, MessageId.CLOSE]
    assert "radial" in messages[0].payload


def test_connections_beyond_the_limit_wait_their_turn(make_server, multislice):
    server = make_server(max_connections=1)
    path, truth = multislice
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(send_file(path, *server.address)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    _wait_served(server, 3)
    assert len(results) == 3 and server.connections_served == 3
    assert max(_worst_nrmse(r.images, truth) for r in results) < 1e-5


@pytest.mark.gpu
def test_gpu_server_matches_ground_truth(make_server, multislice):
    server = make_server(device="cuda")
    path, truth = multislice
    result = send_file(path, *server.address)
    assert result.closed and len(result.images) == NSLICES
    assert _worst_nrmse(result.images, truth) < 1e-5


def test_config_text_is_a_toml_scanner_config(make_server, multislice):
    """CONFIG_TEXT carries a scanner config (TOML) that drives the pipeline's chain."""
    server = make_server(factory=pipeline_factory)
    path, truth = multislice
    body = [
        encode_message(MessageId.HEADER, RawFile.open(path).xml),
        *_acquisition_messages(path),
        encode_message(MessageId.CLOSE),
    ]
    chain = '[chain]\ncartesian_2d = ["fft", "combine"]\n'
    messages = _raw_session(server.address, [encode_message(MessageId.CONFIG_TEXT, chain), *body])
    images = [m.payload for m in messages if m.id == MessageId.IMAGE]
    assert len(images) == NSLICES and messages[-1].id == MessageId.CLOSE
    assert images[0].meta["ImageComments"].endswith("config-text: fft > combine")
    assert _worst_nrmse(images, truth) < 1e-5  # no prewhitening in that chain: exact
    bad = _raw_session(server.address, [encode_message(MessageId.CONFIG_TEXT, "[chain\n"), *body])
    assert [m.id for m in bad] == [MessageId.TEXT, MessageId.CLOSE]
    assert "not a TOML scanner config" in bad[0].payload
    unknown = [encode_message(MessageId.CONFIG_TEXT, "[output]\ncolour = 1\n"), *body]
    assert "colour" in _raw_session(server.address, unknown)[0].payload


def _offline(path, config=None) -> np.ndarray:
    """``recon run``'s images in memory: (nslices, ny, nx) for one frame."""
    plan = plan_run(read_dataset(path), config=config, device="cpu")
    return reconstruct(plan, measure_memory=False).images[0]


@pytest.mark.parametrize("config", ["auto", "default"])
def test_pipeline_matches_recon_run_on_multislice(make_server, multislice, config):
    """Streamed slice by slice through the pipeline = the offline run of the whole file."""
    path, _ = multislice
    server = make_server(factory=pipeline_factory)
    result = send_file(path, *server.address, config=config)
    assert result.closed and not result.errors and len(result.images) == NSLICES
    offline = _offline(path, None if config == "auto" else config)
    images = _by_slice(result.images)
    assert max(nrmse(i.data[0, 0], offline[i.slice]) for i in images) < 1e-5
    assert "prewhiten" in images[0].meta["ImageComments"]


def test_pipeline_matches_recon_run_on_skyra_grappa(make_server, shared_file):
    """Measured GRAPPA R=3 data with noise and embedded calibration, as ``recon run``."""
    path = shared_file("siemens_skyra_grappa_r3.h5")
    server = make_server(factory=pipeline_factory)
    result = send_file(path, *server.address)
    assert result.closed and not result.errors and len(result.images) == 1
    offline = _offline(path)
    image = result.images[0]
    assert image.data.shape[-2:] == offline.shape[-2:]
    assert nrmse(image.data[0, 0], offline[0]) < 1e-5
    assert "grappa" in image.meta["ImageComments"]


@pytest.fixture(scope="module")
def sim7t(tmp_path_factory):
    """Write ``recon.sim`` 7 T files on demand (cached per module): name -> path."""
    folder = tmp_path_factory.mktemp("sim7t")
    specs = {
        # 16-coil oblique multi-slice GRAPPA R=2 with embedded ACS and correlated noise
        "grappa": SimSpec(
            matrix=64, slices=3, ncoils=16, accel=2, calib=16, oblique_deg=(12.0, -8.0, 0.0),
            noise_readouts=16, seed=3,
        ),
        # separate reference scan, then two repetitions
        "separate": SimSpec(
            matrix=64, slices=3, ncoils=16, accel=2, calib=16, calib_mode="separate",
            repetitions=2, noise_readouts=16, seed=4,
        ),
        # embedded ACS in each of two repetitions
        "embedded": SimSpec(
            matrix=64, slices=3, ncoils=16, accel=2, calib=16, repetitions=2,
            noise_readouts=16, seed=6,
        ),
    }  # fmt: skip
    paths: dict[str, object] = {}

    def _get(name: str):
        if name not in paths:
            paths[name] = folder / f"{name}.h5"
            simulate(paths[name], specs[name])
        return paths[name]

    return _get


def test_pipeline_matches_recon_run_on_simulated_7t_grappa(make_server, sim7t):
    """recon.sim multi-slice GRAPPA file streamed = ``recon run`` on it."""
    path = sim7t("grappa")
    server = make_server(factory=pipeline_factory)
    result = send_file(path, *server.address)
    assert result.closed and not result.errors and len(result.images) == 3
    offline = _offline(path)
    images = _by_slice(result.images)
    assert max(nrmse(i.data[0, 0], offline[i.slice]) for i in images) < 1e-5
    assert "grappa" in images[0].meta["ImageComments"]
    assert len({tuple(np.round(i.position, 3)) for i in images}) == 3


@pytest.mark.parametrize("mode", ["separate", "embedded"])
def test_pipeline_repetitions_reuse_calibration_as_offline(make_server, sim7t, mode):
    """Two repetitions: the session context keeps each slice's GRAPPA calibration from
    repetition 0 for repetition 1, exactly as ``recon run`` does."""
    path = sim7t(mode)
    server = make_server(factory=pipeline_factory)
    result = send_file(path, *server.address)
    assert result.closed and not result.errors and len(result.images) == 6
    offline = reconstruct(plan_run(read_dataset(path), device="cpu"), measure_memory=False)
    frame = {f: i for i, f in enumerate(offline.frames)}
    errors = [
        nrmse(
            image.data[0, 0],
            offline.images[
                frame[(image.contrast, image.phase, image.repetition, image.set)], image.slice
            ],
        )
        for image in result.images
    ]
    assert sorted({i.repetition for i in result.images}) == [0, 1]
    assert max(errors) < 1e-5


def test_pipeline_streams_spiral_with_trajectories(make_server, shared_file):
    """Non-Cartesian readouts carry their trajectories through the stream: same as offline."""
    path = shared_file("jemris_spiral_slc30.h5")
    server = make_server(factory=pipeline_factory)
    result = send_file(path, *server.address)
    assert result.closed and not result.errors and len(result.images) == 1
    assert nrmse(result.images[0].data[0], _offline(path)) < 1e-5
