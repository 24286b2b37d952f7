"""MRD server: per-slice latency and sustained throughput of a 32-coil 7 T multi-slice stream.

The server runs as ``recon serve`` in a subprocess (its own interpreter, as in production)
on loopback; the client side streams in-memory acquisitions slice after slice and records,
for every slice, the time from sending its last readout to receiving its image. Both sides
use the ``default`` scanner config's pipeline (prewhitening with the stream's noise
readouts, FFT, RSS). The peer is the offline pipeline (``recon run`` in memory) on identical
inputs in this process (no network, no buffering): what streaming must match (NRMSE) and
the work it overlaps with the transfer. Target on this CPU: the first image is
back before the last slice has started to be sent.
"""

from __future__ import annotations

import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import ismrmrd
import numpy as np

from benchmarks.harness import Row, measure
from recon.backend import fftc
from recon.io.ismrmrd import raw_from_acquisitions
from recon.metrics import nrmse
from recon.pipeline import plan_run, reconstruct
from recon.server.protocol import MessageId, MessageReader, encode_message

SUITE = "server"
PACE_S = 0.002
"""Readout interval of the paced stream (s): a 2D multi-slice scan's rate on the scanner."""


def _header(nx: int, ny: int, nslices: int, ncoils: int) -> str:
    """7 T header: recon ``nx x ny`` at 1 mm, readout 2x oversampled."""
    return f"""<?xml version="1.0"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
 <acquisitionSystemInformation><systemFieldStrength_T>6.98</systemFieldStrength_T>
  <receiverChannels>{ncoils}</receiverChannels></acquisitionSystemInformation>
 <experimentalConditions><H1resonanceFrequency_Hz>297200000</H1resonanceFrequency_Hz>
 </experimentalConditions>
 <encoding>
  <encodedSpace><matrixSize><x>{2 * nx}</x><y>{ny}</y><z>1</z></matrixSize>
   <fieldOfView_mm><x>{2 * nx}</x><y>{ny}</y><z>2</z></fieldOfView_mm></encodedSpace>
  <reconSpace><matrixSize><x>{nx}</x><y>{ny}</y><z>1</z></matrixSize>
   <fieldOfView_mm><x>{nx}</x><y>{ny}</y><z>2</z></fieldOfView_mm></reconSpace>
  <encodingLimits>
   <kspace_encoding_step_1><minimum>0</minimum><maximum>{ny - 1}</maximum>
    <center>{ny // 2}</center></kspace_encoding_step_1>
   <slice><minimum>0</minimum><maximum>{nslices - 1}</maximum><center>0</center></slice>
  </encodingLimits>
  <trajectory>cartesian</trajectory>
 </encoding>
</ismrmrdHeader>"""


def _stream(nslices: int, ncoils: int, nx: int, ny: int) -> list[ismrmrd.Acquisition]:
    """Fully sampled slices of an ellipse phantom seen by Gaussian coil profiles."""
    rng = np.random.default_rng(7)
    y, x = np.meshgrid(np.linspace(-1, 1, ny), np.linspace(-1, 1, 2 * nx), indexing="ij")
    angles = 2 * np.pi * np.arange(ncoils) / ncoils
    maps = np.exp(
        -((x[None] - 0.4 * np.cos(angles)[:, None, None]) ** 2)
        - (y[None] - 0.9 * np.sin(angles)[:, None, None]) ** 2
        + 1j * angles[:, None, None]
    ).astype(np.complex64)
    acquisitions = []
    for _ in range(4):
        noise = rng.standard_normal((ncoils, 2 * nx)) + 1j * rng.standard_normal((ncoils, 2 * nx))
        acq = ismrmrd.Acquisition.from_array((1e-3 * noise).astype(np.complex64))
        acq.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
        acquisitions.append(acq)
    for s in range(nslices):
        image = ((2 * x / 0.9) ** 2 + (y / 0.8) ** 2 < 1).astype(np.complex64)
        for _ in range(6):
            cx, cy, r = rng.uniform(-0.3, 0.3), rng.uniform(-0.5, 0.5), rng.uniform(0.05, 0.2)
            image[((x - cx) / 0.5) ** 2 + (y - cy) ** 2 < r**2] *= rng.uniform(0.3, 1.6)
        kspace = fftc(maps * image, axes=(-2, -1)).astype(np.complex64)
        for ky in range(ny):
            acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(kspace[:, ky]))
            acq.idx.kspace_encode_step_1, acq.idx.slice = ky, s
            acq.center_sample = nx
            acq.position[:] = (0.0, 0.0, 2.0 * s)
            acq.read_dir[:], acq.phase_dir[:], acq.slice_dir[:] = (1, 0, 0), (0, 1, 0), (0, 0, 1)
            if ky == ny - 1:
                acq.set_flag(ismrmrd.ACQ_LAST_IN_SLICE)
            acquisitions.append(acq)
    acquisitions[-1].set_flag(ismrmrd.ACQ_LAST_IN_MEASUREMENT)
    return acquisitions


@dataclass
class StreamRun:
    """Client-side timings of one streaming session (seconds from the first byte sent)."""

    last_readout_sent: dict[int, float] = field(default_factory=dict)
    slice_started: dict[int, float] = field(default_factory=dict)
    image_received: dict[int, float] = field(default_factory=dict)
    images: dict[int, np.ndarray] = field(default_factory=dict)
    send_s: float = 0.0
    error: str = ""


def _session(
    port: int, xml: str, messages: list[tuple[int, bool, bytes]], pace_s: float = 0.0
) -> StreamRun:
    """Stream ``messages`` (slice, last-in-slice, bytes), one every ``pace_s`` s (0: at once)."""
    run = StreamRun()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        origin = time.perf_counter()

        def receive() -> None:
            reader = MessageReader(sock)
            while (message := reader.read_message()) is not None:
                if message.id == MessageId.IMAGE:
                    s = message.payload.slice
                    run.image_received[s] = time.perf_counter() - origin
                    run.images[s] = message.payload.data[0, 0]
                elif message.id == MessageId.TEXT:
                    run.error = message.payload
                elif message.id == MessageId.CLOSE:
                    return

        receiver = threading.Thread(target=receive, daemon=True)
        receiver.start()
        sock.sendall(
            encode_message(MessageId.CONFIG_FILE, "default") + encode_message(MessageId.HEADER, xml)
        )
        for i, (s, last, raw) in enumerate(messages):
            if pace_s:
                time.sleep(max(0.0, origin + i * pace_s - time.perf_counter()))
            run.slice_started.setdefault(s, time.perf_counter() - origin)
            sock.sendall(raw)
            if last:
                run.last_readout_sent[s] = time.perf_counter() - origin
        sock.sendall(encode_message(MessageId.CLOSE))
        run.send_s = time.perf_counter() - origin
        receiver.join(120)
    if run.error or len(run.images) != len(run.last_readout_sent):
        raise RuntimeError(f"stream failed: {run.error or 'images missing'}")
    return run


def _start_server() -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "recon", "serve", "--port", "0", "--device", "cpu"],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        match = re.search(r"serving on [\d.]+:(\d+)", process.stderr.readline())
        if match:
            return process, int(match.group(1))
    process.kill()
    raise RuntimeError("recon serve did not start")


def run(quick: bool = True) -> list[Row]:
    """Stream a 32-coil multi-slice 7 T acquisition through ``recon serve``."""
    ncoils = 32
    nslices, nx, ny = (8, 96, 96) if quick else (24, 256, 256)
    acquisitions = _stream(nslices, ncoils, nx, ny)
    xml = _header(nx, ny, nslices, ncoils)
    messages = [
        (
            a.idx.slice,
            a.is_flag_set(ismrmrd.ACQ_LAST_IN_SLICE),
            encode_message(MessageId.ACQUISITION, a),
        )
        for a in acquisitions
    ]
    case = f"{ncoils}-coil 7T {nslices} slices {ny}x{2 * nx}"

    def offline() -> np.ndarray:  # the peer: recon run on identical inputs
        raw = raw_from_acquisitions(xml, acquisitions)
        plan = plan_run(raw, config="default", device="cpu")
        return reconstruct(plan, measure_memory=False).images[0]

    process, port = _start_server()
    try:
        repeats = 1 if quick else 3
        fast = measure(lambda: _session(port, xml, messages), repeats=repeats, warmup=1)
        paced = measure(lambda: _session(port, xml, messages, PACE_S), repeats=1, warmup=0)
        peer = measure(offline, repeats=repeats, warmup=0 if quick else 1)
    finally:
        process.terminate()
        process.wait(30)
        process.stderr.close()
    reference = peer.result
    rows = []
    for name, timing in (
        ("as fast as possible", fast),
        (f"paced {PACE_S * 1e3:g} ms/readout", paced),
    ):
        result: StreamRun = timing.result
        error = max(nrmse(result.images[s], reference[s]) for s in range(nslices))
        latencies = [result.image_received[s] - result.last_readout_sent[s] for s in range(nslices)]
        first_image = min(result.image_received.values())
        last_slice_start = result.slice_started[nslices - 1]
        done = max(result.image_received.values())
        verdict = "met" if first_image < last_slice_start else "MISSED"
        rows.append(
            Row(
                SUITE,
                case,
                f"recon serve, stream {name}",
                timing.median_s,
                timing.peak_mib,
                nrmse=error,
                ratio=1.0,
                throughput=len(acquisitions) / done,
                unit="acq/s",
                notes=(
                    f"per-slice latency (last readout in -> image out) median "
                    f"{statistics.median(latencies):.3f} s, max {max(latencies):.3f} s; "
                    f"first image {first_image:.3f} s, last slice sent from "
                    f"{last_slice_start:.3f} s (target {verdict}); sent at "
                    f"{len(acquisitions) / result.send_s:.0f} acq/s"
                ),
            )
        )
    rows.append(
        Row(
            SUITE,
            case,
            "recon run in memory, same pipeline (no network)",
            peer.median_s,
            peer.peak_mib,
            nrmse=0.0,
            ratio=peer.median_s / fast.median_s,
            throughput=len(acquisitions) / peer.median_s,
            unit="acq/s",
        )
    )
    return rows


if __name__ == "__main__":
    for row in run(quick="--full" not in sys.argv):
        print(row)
