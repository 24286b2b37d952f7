"""Single-threaded BLAS for the small dense matrices of GRAPPA calibration and LLR.

OpenBLAS threads spin-wait; on a shared machine (here 2 cores under a load of about 10) a
576 x 576 complex Cholesky took 3 s with its threads and 13 ms with one (measured), and
batched small SVDs suffer the same way. Work on such matrices therefore runs with one BLAS
thread; large FFTs keep their own workers.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np


def single_threaded_blas(xp: Any) -> Any:
    """Context limiting NumPy's BLAS/LAPACK to one thread (a no-op for CuPy)."""
    if xp is not np:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")
