"""Exception families of recon.

Every error a user can cause derives from :class:`ReconError` and carries a
one-line message that names the problem (and the file, key or value involved).
The CLI prints that line and exits with code 2; ``--debug`` shows the traceback.
"""


class ReconError(Exception):
    """Base class of all errors a user can act on."""


class InputError(ReconError):
    """Bad input data: unreadable, truncated or inconsistent files, wrong shapes."""


class DeviceError(ReconError):
    """A requested compute device (GPU, CuPy) is not available."""


class ConfigError(ReconError):
    """A scanner configuration or parameter is invalid or impossible."""


class ProtocolError(ReconError):
    """A malformed MRD streaming message."""
