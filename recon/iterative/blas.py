"""Single-threaded BLAS for the small dense matrices of GRAPPA calibration and LLR.

OpenBLAS threads spin-wait; on a shared machine (here 2 cores under a load of about 10) a
576 x 576 complex Cholesky took 3 s with its threads and 13 ms with one (measured), and
batched small SVDs suffer the same way. Work on such matrices therefore runs with one BLAS
thread; large FFTs keep their own workers.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import numpy as np


@functools.cache
def _controller() -> Any:
    """threadpoolctl's view of the loaded BLAS libraries, made once: building it scans every
    shared library of the process (about 2 ms), too slow for a context entered per unit."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def limit_blas_threads(limit: int) -> Any:
    """Context limiting NumPy's BLAS/LAPACK to ``limit`` threads."""
    return _controller().limit(limits=limit, user_api="blas")


def single_threaded_blas(xp: Any) -> Any:
    """Context limiting NumPy's BLAS/LAPACK to one thread (a no-op for CuPy)."""
    if xp is not np:
        return contextlib.nullcontext()
    return limit_blas_threads(1)
