"""Timing and memory measurement shared by the benchmark suites.

Each suite module ``benchmarks/suite_<name>.py`` exposes ``run(quick: bool) -> list[Row]``;
the runner collects the rows into JSON, Markdown and a PNG chart. Peers are run in the same
process on identical inputs, and ratios are medians over repeats after a warm-up.
"""

from __future__ import annotations

import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Measurement:
    """Median wall time over the repeats (s), all times (s), and peak traced memory (MiB)."""

    median_s: float
    times_s: list[float]
    peak_mib: float
    result: Any = field(repr=False, default=None)


@dataclass
class Row:
    """One implementation on one benchmark case.

    ``ratio`` is the peer's median time divided by ours (> 1: we are faster); it is set on
    the peer's rows and on ours it is 1. ``nrmse`` is the accuracy the implementation
    reached against the case's reference (exact or shared).
    """

    suite: str
    case: str
    impl: str
    median_s: float
    peak_mib: float
    nrmse: float | None = None
    ratio: float | None = None
    throughput: float | None = None
    unit: str = ""
    notes: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(fn: Callable[[], Any], *, repeats: int = 3, warmup: int = 1) -> Measurement:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed.

    Peak memory is what :mod:`tracemalloc` sees during one extra traced call (NumPy
    allocations are traced; memory allocated inside C libraries such as FINUFFT is not).
    """
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return Measurement(statistics.median(times), times, peak / 2**20, result)
