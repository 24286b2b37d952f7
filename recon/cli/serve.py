"""``recon serve`` (MRD streaming reconstruction server) and ``recon send`` (its client)."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import typer

from recon.cli.app import app, say
from recon.errors import ConfigError, ProtocolError


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(9002, "--port", help="TCP port (0: any free port)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    max_connections: int = typer.Option(
        4, "--max-connections", help="Connections served at once; others wait."
    ),
    image_dtype: str = typer.Option(
        "float32", "--image-dtype", help="Pixel type of the returned images: float32 or int16."
    ),
    timeout: float = typer.Option(
        300.0, "--timeout", help="Close a connection silent for this many seconds."
    ),
    recon: str = typer.Option(
        "pipeline",
        "--recon",
        help="pipeline (the scanner config's chain, as recon run) or fft (zero-filled FFT + RSS).",
    ),
) -> None:
    """Serve MRD streaming reconstruction; SIGTERM finishes work in flight, then exits."""
    from recon.server import ReconServer, ServerOptions
    from recon.server.reconstruction import FACTORIES

    if image_dtype not in ("float32", "int16"):
        raise ConfigError(f"--image-dtype {image_dtype!r}: use float32 or int16")
    if recon not in FACTORIES:
        raise ConfigError(f"--recon {recon!r}: use {' or '.join(FACTORIES)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    options = ServerOptions(
        host=host,
        port=port,
        device=device,
        max_connections=max_connections,
        image_dtype=image_dtype,  # type: ignore[arg-type]
        timeout_s=timeout,
        factory=FACTORIES[recon],
    )
    try:
        server = ReconServer(options)
    except OSError as error:
        raise ConfigError(f"cannot listen on {host}:{port}: {error}") from None

    def _stop(signum: int, frame: object) -> None:
        logging.getLogger("recon.server").info(
            "%s: finishing connections in flight (send it again to stop at once)",
            signal.Signals(signum).name,
        )
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        server.request_stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server.serve_forever()


@app.command()
def send(
    input_file: Path = typer.Argument(..., help="ISMRMRD raw-data file to stream."),
    output: Path = typer.Option(..., "-o", "--output", help="HDF5 file for the images."),
    host: str = typer.Option("127.0.0.1", "--host", help="Server address."),
    port: int = typer.Option(9002, "--port", help="Server port."),
    config: str = typer.Option(
        "auto", "--config", "-c", help="Scanner config to request (auto: from the header)."
    ),
    group: str = typer.Option(None, "--group", "-G", help="Input group (default: the only one)."),
    out_group: str = typer.Option(
        None, "--out-group", help="Output group (default: the input group's name)."
    ),
    waveforms: bool = typer.Option(True, "--waveforms/--no-waveforms", help="Send waveforms."),
    timeout: float = typer.Option(300.0, "--timeout", help="Socket timeout in seconds."),
) -> None:
    """Stream IN.h5 to an MRD server; write the images it returns to OUT.h5."""
    from recon.server.client import RawFile, send_file, write_images

    raw = RawFile.open(input_file, group)
    result = send_file(
        input_file,
        host,
        port,
        config,
        group=raw.group,
        waveforms=waveforms,
        timeout_s=timeout,
    )
    for text in result.texts:
        say(f"server: {text}")
    if result.errors:
        raise ProtocolError(f"{host}:{port} reported: {result.errors[0]}")
    path = write_images(result.images, output, out_group or raw.group, raw.xml)
    latency = "-" if result.latency_s is None else f"{result.latency_s * 1e3:.1f} ms"
    say(
        f"sent {result.acquisitions} acquisitions and {result.waveforms} waveforms in "
        f"{result.send_s:.3f} s; received {len(result.images)} images -> {path}"
    )
    say(f"latency (last acquisition sent -> last image received): {latency}")
