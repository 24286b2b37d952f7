"""MRD streaming: protocol framing, reconstruction server and client (``recon serve/send``)."""

from recon.server.client import SendResult, send_file, write_images
from recon.server.protocol import Limits, MessageId, MessageReader, MessageWriter
from recon.server.server import ReconServer, ServerOptions

__all__ = [
    "Limits",
    "MessageId",
    "MessageReader",
    "MessageWriter",
    "ReconServer",
    "SendResult",
    "ServerOptions",
    "send_file",
    "write_images",
]
