"""The reconstruction pipeline: scanner configs, stage objects and the runner.

- :mod:`recon.pipeline.config`: TOML scanner configs, schema validation, ``--set``, selection
- :mod:`recon.pipeline.stages`: stage objects over the engine's functions
- :mod:`recon.pipeline.runner`: :func:`plan_run`, :func:`reconstruct`, :func:`run_file`
"""

from recon.pipeline.config import ScannerConfig, available_configs, load_config, select_config
from recon.pipeline.runner import (
    FORMATS,
    Plan,
    Reconstruction,
    RunResult,
    new_context,
    plan_run,
    reconstruct,
    run_file,
)

__all__ = [
    "FORMATS",
    "Plan",
    "Reconstruction",
    "RunResult",
    "ScannerConfig",
    "available_configs",
    "load_config",
    "new_context",
    "plan_run",
    "reconstruct",
    "run_file",
    "select_config",
]
