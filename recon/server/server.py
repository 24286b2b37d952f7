"""The MRD streaming reconstruction server.

One thread accepts connections (at most ``max_connections`` served at once; further clients
wait in the listen backlog), one reader thread per connection decodes messages and buffers
acquisitions, and complete units go to a :class:`DeviceQueue` whose single worker runs the
reconstructions of every connection one after another, so one device is never
oversubscribed. A sender thread per connection returns each unit's image as soon as it is
ready, so slice 1 goes back while slice 2 is still arriving.

A connection is: CONFIG_FILE (a shipped scanner config's name, or ``auto`` to choose it from
the header as ``recon run`` does) or CONFIG_TEXT (a TOML scanner config), HEADER, then
ACQUISITION / WAVEFORM / TEXT messages, then CLOSE. The server answers with IMAGE messages
and a final CLOSE. Errors in one connection (unknown config, malformed message, failed
reconstruction) are reported to that client as a TEXT message followed by CLOSE; the server
carries on with the others. The reconstruction is pluggable (:attr:`ServerOptions.factory`,
see :mod:`recon.server.reconstruction`); by default it is the config's pipeline.
"""

from __future__ import annotations

import logging
import queue
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import ismrmrd
import numpy as np

from recon.backend import Device
from recon.errors import ConfigError, InputError, ProtocolError, ReconError
from recon.io.header import Header, parse_header
from recon.pipeline.config import (
    ScannerConfig,
    available_configs,
    header_facts,
    load_config,
    select_config,
    validate,
)
from recon.server.buffering import AcquisitionBuffer, ReconUnit
from recon.server.images import ImageDtype, make_image
from recon.server.protocol import Limits, MessageId, MessageReader, MessageWriter
from recon.server.reconstruction import Reconstruction, ReconstructionFactory, pipeline_factory

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

log = logging.getLogger("recon.server")

AUTO_CONFIG = "auto"


def resolve_config(name: str) -> ScannerConfig | None:
    """The shipped scanner config a CONFIG_FILE name selects.

    ``auto`` (or an empty name) returns None: the config is then chosen from the XML header
    (:func:`config_for_header`), as ``recon run`` does without ``--config``. A ``.toml`` or
    ``.xml`` suffix is ignored, so Gadgetron clients asking for ``default.xml`` get the
    default config. Only shipped configs can be named: a client cannot make the server
    read a file by path.

    Raises
    ------
    ConfigError
        For a name that is not a shipped config.
    """
    name = name.strip()
    for suffix in (".toml", ".xml"):
        name = name.removesuffix(suffix)
    if name in ("", AUTO_CONFIG):
        return None
    known = available_configs()
    if name not in known:
        raise ConfigError(f"unknown config {name!r}; available: {AUTO_CONFIG}, {', '.join(known)}")
    return load_config(name)


def config_for_header(header: Header) -> ScannerConfig:
    """The shipped config whose ``[select]`` criteria best match the header."""
    return load_config(select_config(header_facts(header, None)).name)


def config_from_text(text: str) -> ScannerConfig:
    """A scanner config sent as CONFIG_TEXT: TOML in the schema of ``scanner_configs``."""
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"CONFIG_TEXT is not a TOML scanner config ({error})") from None
    return ScannerConfig("config-text", None, validate(table, "CONFIG_TEXT scanner config"))


class DeviceQueue:
    """Run reconstruction jobs on one device, one at a time, in submission order."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"recon-{device}")

    def submit(self, fn: Callable[..., np.ndarray], *args: object) -> Future:
        """Queue ``fn(*args)``; its result arrives in the returned future."""
        return self._executor.submit(fn, *args)

    def shutdown(self) -> None:
        """Finish the queued jobs and stop the worker."""
        self._executor.shutdown(wait=True)


@dataclass
class ServerOptions:
    """Settings of :class:`ReconServer`.

    Attributes
    ----------
    host, port : str, int
        Address to listen on; port 0 picks a free port (see :attr:`ReconServer.address`).
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    max_connections : int
        Connections served at once.
    image_dtype : {"float32", "int16"}
        Pixel type of the returned magnitude images (a config's ``output.dtype`` of
        ``complex64`` also gives float32 magnitudes: the server returns magnitude images).
    series_index : int
        ``image_series_index`` of the first contrast (contrast ``c`` gets ``series_index + c``).
    timeout_s : float
        A connection idle this long (no byte received) is closed with an error.
    limits : Limits
        Bounds on announced message sizes.
    max_buffered_bytes : int
        Bound on one connection's buffered k-space.
    factory : callable
        ``factory(config, header, device) -> Reconstruction``, once per connection.
    """

    host: str = "127.0.0.1"
    port: int = 9002
    device: str = "auto"
    max_connections: int = 4
    image_dtype: ImageDtype = "float32"
    series_index: int = 1
    timeout_s: float = 300.0
    limits: Limits = field(default_factory=Limits)
    max_buffered_bytes: int = 4 * 2**30
    factory: ReconstructionFactory = pipeline_factory


@dataclass
class SessionStats:
    """Counters and timings of one connection (logged as one line when it ends)."""

    peer: str
    config: str = "-"
    acquisitions: int = 0
    waveforms: int = 0
    units: int = 0
    images: int = 0
    started: float = field(default_factory=time.perf_counter)
    first_image_s: float | None = None
    recon_s: float = 0.0
    max_latency_s: float = 0.0
    status: str = "ok"

    def line(self, bytes_in: int, bytes_out: int) -> str:
        first = "-" if self.first_image_s is None else f"{self.first_image_s:.3f}s"
        return (
            f"connection {self.peer} config={self.config} acquisitions={self.acquisitions} "
            f"waveforms={self.waveforms} units={self.units} images={self.images} "
            f"in={bytes_in / 2**20:.1f}MiB out={bytes_out / 2**20:.1f}MiB "
            f"first_image={first} recon={self.recon_s:.3f}s "
            f"max_slice_latency={self.max_latency_s:.3f}s "
            f"total={time.perf_counter() - self.started:.3f}s status={self.status}"
        )


_DONE = object()


class Session:
    """One client connection: read, buffer, reconstruct (via the device queue), reply."""

    def __init__(self, sock: socket.socket, peer: str, server: ReconServer) -> None:
        self.sock = sock
        self.server = server
        self.options = server.options
        self.stats = SessionStats(peer)
        self.reader = MessageReader(sock, self.options.limits)
        self.writer = MessageWriter(sock.sendall)
        self.buffer = AcquisitionBuffer(self.options.max_buffered_bytes)
        self.config: ScannerConfig | None = None
        self.reconstruction: Reconstruction | None = None
        self.header: Header | None = None
        self._failed = threading.Event()
        self._fail_lock = threading.Lock()
        self._outbox: queue.Queue = queue.Queue()
        self._image_counters: dict[int, int] = {}

    def run(self) -> None:
        """Serve the connection to its end; never raises."""
        self.sock.settimeout(self.options.timeout_s)
        sender = threading.Thread(target=self._send_loop, name=f"send-{self.stats.peer}")
        sender.start()
        try:
            self._read_loop()
        except (ReconError, MemoryError) as error:
            self.fail(str(error))
        except TimeoutError:
            self.fail(f"no data for {self.options.timeout_s:g} s")
        except OSError as error:
            self._abort(f"dropped ({error})")
        except Exception as error:
            log.exception("internal error on %s", self.stats.peer)
            self.fail(f"internal server error: {type(error).__name__}: {error}")
        finally:
            self._outbox.put(_DONE)
            sender.join()
            self._close()
            log.info(self.stats.line(self.reader.bytes_read, self.writer.bytes_written))

    # -- reading ---------------------------------------------------------------------------

    def _read_loop(self) -> None:
        while True:
            message = self.reader.read_message()
            if self._failed.is_set():
                return
            if message is None:
                self._abort("dropped mid-stream (no CLOSE)")
                return
            if message.id == MessageId.CLOSE:
                self._submit(self.buffer.flush())
                return
            self._handle(message.id, message.payload)

    def _handle(self, message_id: MessageId, payload: object) -> None:
        if message_id in (MessageId.CONFIG_FILE, MessageId.CONFIG_TEXT):
            if self.reconstruction is not None:
                raise ProtocolError(f"{message_id.name} after the MRD header")
            if message_id == MessageId.CONFIG_FILE:
                self.config = resolve_config(str(payload))
            else:
                self.config = config_from_text(str(payload))
            self.stats.config = self.config.name if self.config else AUTO_CONFIG
        elif message_id == MessageId.HEADER:
            if self.reconstruction is not None:
                raise ProtocolError("a second MRD header in one connection")
            self.header = parse_header(str(payload), f"MRD header from {self.stats.peer}")
            self.config = self.config or config_for_header(self.header)
            self.stats.config = self.config.name
            self.reconstruction = self.options.factory(
                self.config, self.header, self.server.device_queue.device
            )
        elif message_id == MessageId.ACQUISITION:
            if self.reconstruction is None:
                raise ProtocolError("ACQUISITION before the MRD header")
            self.stats.acquisitions += 1
            self._submit(self.buffer.add(payload))
        elif message_id == MessageId.WAVEFORM:
            self.stats.waveforms += 1
        elif message_id == MessageId.TEXT:
            log.debug("text from %s: %.200s", self.stats.peer, payload)
        else:
            raise ProtocolError(f"{message_id.name} messages are not accepted by this server")

    def _submit(self, units: list[ReconUnit]) -> None:
        for unit in units:
            self.stats.units += 1
            future = self.server.device_queue.submit(self._reconstruct, unit)
            self._outbox.put((unit, future))

    def _reconstruct(self, unit: ReconUnit) -> tuple[np.ndarray, float]:
        if self._failed.is_set():
            raise InputError("connection already failed")
        start = time.perf_counter()
        volume = self.reconstruction(unit)
        return volume, time.perf_counter() - start

    # -- sending ---------------------------------------------------------------------------

    def _send_loop(self) -> None:
        while True:
            item = self._outbox.get()
            if item is _DONE:
                break
            if self._failed.is_set():
                item[1].cancel()
                continue
            unit, future = item
            try:
                volume, seconds = future.result()
                self.stats.recon_s += seconds
                if isinstance(volume, list):  # several slices (multiband EPI)
                    images = [self._image(unit, s.volume, s.geometry) for s in volume]
                else:
                    images = [self._image(unit, volume)]
            except Exception as error:
                self.fail(f"reconstruction of slice {unit.key[0]} failed: {error}")
                continue
            try:
                for image in images:
                    self.writer.send_image(image)
            except OSError as error:
                self._abort(f"dropped while sending images ({error})")
                continue
            now = time.perf_counter()
            self.stats.images += len(images)
            self.stats.max_latency_s = max(self.stats.max_latency_s, now - unit.completed_at)
            if self.stats.first_image_s is None:
                self.stats.first_image_s = now - self.stats.started
        if not self._failed.is_set():
            try:
                self.writer.send_close()
            except OSError as error:
                self._abort(f"dropped before CLOSE ({error})")

    def _image(
        self, unit: ReconUnit, volume: np.ndarray, geometry: ismrmrd.Acquisition | None = None
    ):
        series = self.options.series_index + unit.key[1]
        index = self._image_counters.get(series, 0) + 1
        self._image_counters[series] = index
        return make_image(
            volume,
            unit,
            self.header.encoding,
            image_index=index,
            series_index=series,
            comment=f"recon: {self.reconstruction.name}",
            dtype=self.options.image_dtype,
            geometry=geometry,
        )

    # -- ending ----------------------------------------------------------------------------

    def fail(self, message: str) -> None:
        """Report an error to the client (TEXT then CLOSE) once, and stop the session."""
        with self._fail_lock:
            if self._failed.is_set():
                return
            self._failed.set()
        self.stats.status = f"error: {message}"
        log.warning("connection %s: %s", self.stats.peer, message)
        try:
            self.writer.send_text(f"recon server error: {message}")
            self.writer.send_close()
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return

    def _abort(self, status: str) -> None:
        """Stop without a reply: the peer is gone."""
        with self._fail_lock:
            if self._failed.is_set():
                return
            self._failed.set()
        self.stats.status = status

    def _close(self) -> None:
        """Drain what the client still sends (bounded), then close.

        Closing with unread data makes TCP reset the connection, which can destroy the
        error TEXT before the client reads it; so read until the client closes, at most
        ``drain_s`` seconds.
        """
        if self._failed.is_set():
            deadline = time.monotonic() + self.server.drain_s
            sink = bytearray(65536)
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            try:
                while (remaining := deadline - time.monotonic()) > 0:
                    self.sock.settimeout(remaining)
                    if self.sock.recv_into(sink) == 0:
                        break
            except OSError:
                pass
        self.sock.close()


class ReconServer:
    """Accept MRD connections and reconstruct what they stream.

    Parameters
    ----------
    options : ServerOptions
        Address, device, limits and the reconstruction factory.

    Examples
    --------
    >>> server = ReconServer(ServerOptions(port=0))   # doctest: +SKIP
    >>> server.start(); host, port = server.address  # doctest: +SKIP
    >>> server.shutdown()                             # doctest: +SKIP
    """

    drain_s = 5.0

    def __init__(self, options: ServerOptions | None = None) -> None:
        self.options = options or ServerOptions()
        if self.options.max_connections < 1:
            raise ConfigError(f"max_connections must be >= 1, got {self.options.max_connections}")
        self.device_queue = DeviceQueue(Device(self.options.device))
        self._listener = socket.create_server(
            (self.options.host, self.options.port), backlog=64, reuse_port=False
        )
        self._listener.setblocking(False)
        self._slots = threading.BoundedSemaphore(self.options.max_connections)
        self._stop = threading.Event()
        self._sessions: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._acceptor: threading.Thread | None = None
        self.connections_served = 0

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the server listens on."""
        host, port = self._listener.getsockname()[:2]
        return host, port

    def start(self) -> None:
        """Accept connections in a background thread."""
        self._acceptor = threading.Thread(target=self.serve_forever, name="recon-accept")
        self._acceptor.start()

    def serve_forever(self) -> None:
        """Accept connections until :meth:`request_stop`; then finish the ones in flight."""
        log.info(
            "serving on %s:%d (device %s, at most %d connections)",
            *self.address,
            self.device_queue.device,
            self.options.max_connections,
        )
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            while not self._stop.is_set():
                if not self._slots.acquire(timeout=0.1):
                    continue
                if not selector.select(timeout=0.1):
                    self._slots.release()
                    continue
                try:
                    sock, peer = self._listener.accept()
                except BlockingIOError:
                    self._slots.release()
                    continue
                sock.setblocking(True)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                thread = threading.Thread(
                    target=self._serve, args=(sock, f"{peer[0]}:{peer[1]}"), daemon=True
                )
                with self._lock:
                    self._sessions.add(thread)
                thread.start()
        self._finish()

    def _serve(self, sock: socket.socket, peer: str) -> None:
        try:
            Session(sock, peer, self).run()
        finally:
            with self._lock:
                self._sessions.discard(threading.current_thread())
                self.connections_served += 1
            self._slots.release()

    def request_stop(self) -> None:
        """Stop accepting; connections in flight finish (safe from a signal handler)."""
        self._stop.set()

    def _finish(self) -> None:
        self._listener.close()
        with self._lock:
            sessions = list(self._sessions)
        for thread in sessions:
            thread.join()
        self.device_queue.shutdown()
        log.info("stopped after %d connections", self.connections_served)

    def shutdown(self) -> None:
        """Stop accepting, wait for the connections in flight, release the port."""
        self.request_stop()
        if self._acceptor is not None:
            self._acceptor.join()
            self._acceptor = None
