"""Batch reconstruction of many files on Dask distributed.

One task per input file runs the same pipeline as ``recon run`` on a worker and writes its
outputs into ``OUTDIR/<file stem>/`` atomically: into a hidden staging folder first, renamed
into place when complete, with a ``.complete.json`` marker written last. A re-run skips files
whose marker exists. Tasks of a worker that dies are rescheduled by the Dask scheduler on the
remaining workers (``retries`` more attempts for tasks that raise), so nothing is lost.

The cluster is an embedded :class:`distributed.LocalCluster` by default, or any running
scheduler given by address (``tcp://127.0.0.1:8786``). On machines with GPUs, CUDA tasks ask
for a ``GPU`` resource so that each device runs one task at a time (dask-cuda's
``LocalCUDACluster`` provides one worker per device when it is installed).
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from recon.errors import ConfigError, InputError

COMPLETE_MARKER = ".complete.json"


@dataclass(frozen=True)
class BatchOptions:
    """What every task of a batch runs: the ``recon run`` options."""

    config: str | None = None
    overrides: tuple[str, ...] = ()
    device: str = "auto"
    formats: tuple[str, ...] | None = None


@dataclass
class TaskResult:
    """Outcome of one input file: ``status`` is ``done``, ``skipped`` or ``failed``."""

    input: str
    output: str
    status: str
    seconds: float = 0.0
    error: str = ""
    worker: str = ""
    extra: dict = field(default_factory=dict)


def output_dir_for(input_path: Path, out_root: Path) -> Path:
    """Output folder of one input file: ``OUTDIR/<stem>`` (``.h5`` removed)."""
    return out_root / input_path.stem


def is_complete(out_dir: Path) -> bool:
    """True when a previous run finished this output folder."""
    return (out_dir / COMPLETE_MARKER).is_file()


def reconstruct_file(input_path: str, out_root: str, options: BatchOptions) -> TaskResult:
    """Run the pipeline on one file into ``OUTDIR/<stem>`` atomically (a Dask task).

    Raises the pipeline's exception for a failure, so that Dask's retries apply.
    """
    from distributed import get_worker

    from recon.pipeline import run_file

    source, root = Path(input_path), Path(out_root)
    final = output_dir_for(source, root)
    if is_complete(final):
        return TaskResult(str(source), str(final), "skipped")
    try:
        worker = get_worker().address
    except ValueError:  # executed outside a worker (synchronous scheduler)
        worker = "local"
    staging = root / f".{source.stem}.partial-{uuid.uuid4().hex[:8]}"
    start = time.perf_counter()
    try:
        run_file(
            source,
            staging,
            config=options.config,
            overrides=list(options.overrides),
            device=options.device,
            formats=None if options.formats is None else list(options.formats),
        )
        seconds = time.perf_counter() - start
        marker = {"input": str(source), "seconds": seconds, "worker": worker}
        (staging / COMPLETE_MARKER).write_text(json.dumps(marker))
        if final.exists():  # an incomplete earlier attempt
            shutil.rmtree(final)
        staging.rename(final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return TaskResult(str(source), str(final), "done", seconds, worker=worker)


def _finished_by_earlier_attempt(result: TaskResult) -> TaskResult:
    """The result of a task whose output an earlier attempt of the same task completed.

    The scheduler re-runs a task when the worker holding its result dies, even after the
    output was moved into place; the re-run then finds the marker. The file was still
    reconstructed by this batch, so it is ``done``, with the time and worker of the marker.
    """
    marker = json.loads((Path(result.output) / COMPLETE_MARKER).read_text())
    return replace(
        result,
        status="done",
        seconds=float(marker.get("seconds", 0.0)),
        worker=str(marker.get("worker", "")),
        extra={"rerun_found_complete": True},
    )


def _client(scheduler: str | None, workers: int):
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("recon batch needs Dask distributed: pip install 'recon[dist]'") from None
    if scheduler:
        try:
            return Client(scheduler, timeout="10s"), None
        except OSError as error:
            raise ConfigError(f"cannot reach the Dask scheduler {scheduler}: {error}") from None
    try:
        from dask_cuda import LocalCUDACluster

        from recon.backend import gpu_available

        if gpu_available():
            cluster = LocalCUDACluster(resources={"GPU": 1})
            return Client(cluster), cluster
    except ImportError:
        pass
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    return Client(cluster), cluster


def run_batch(
    inputs: Sequence[Path],
    out_root: Path,
    options: BatchOptions,
    *,
    scheduler: str | None = None,
    workers: int = 2,
    retries: int = 2,
    progress: Callable[[TaskResult, int, int], None] | None = None,
    client: Any = None,
) -> list[TaskResult]:
    """Reconstruct every input file on a Dask cluster; return one result per file.

    Parameters
    ----------
    inputs : sequence of Path
        ISMRMRD files; each must exist and have a distinct stem.
    out_root : Path
        Output root; file ``x.h5`` goes to ``out_root/x/``.
    options : BatchOptions
        Pipeline options shared by all files.
    scheduler : str, optional
        Address of a running Dask scheduler; an embedded LocalCluster when None.
    workers : int
        Worker processes of the embedded cluster.
    retries : int
        Extra attempts for a task that raises (a dead worker's tasks are rescheduled anyway).
    progress : callable, optional
        Called as ``progress(result, n_done, n_total)`` after each file.
    client : distributed.Client, optional
        Use this client (left open) instead of connecting to ``scheduler`` or starting one.
    """
    from distributed import as_completed

    sources = [Path(p).resolve() for p in inputs]
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        raise InputError(f"input file not found: {missing[0]}")
    stems = [p.stem for p in sources]
    duplicated = sorted({s for s in stems if stems.count(s) > 1})
    if duplicated:
        raise InputError(f"two inputs would write the same output folder: {duplicated[0]}")
    out_root = Path(out_root).resolve()
    out_root.mkdir(parents=True, exist_ok=True)

    results: list[TaskResult] = []
    todo = []
    for source in sources:
        final = output_dir_for(source, out_root)
        if is_complete(final):
            results.append(TaskResult(str(source), str(final), "skipped"))
        else:
            todo.append(source)
    total = len(sources)
    for result in results:
        if progress:
            progress(result, len(results), total)
    if not todo:
        return results

    own_client = client is None
    cluster = None
    if own_client:
        client, cluster = _client(scheduler, workers)
    try:
        resources = {"GPU": 1} if options.device.startswith("cuda") else None
        futures = {
            client.submit(
                reconstruct_file,
                str(source),
                str(out_root),
                options,
                key=f"recon-{source.stem}-{uuid.uuid4().hex[:6]}",
                retries=retries,
                pure=False,
                resources=resources,
            ): source
            for source in todo
        }
        for future in as_completed(futures):
            source = futures[future]
            try:
                result = future.result()
            except Exception as error:
                result = TaskResult(
                    str(source),
                    str(output_dir_for(source, out_root)),
                    "failed",
                    error=f"{type(error).__name__}: {error}",
                )
            if result.status == "skipped":  # not complete at submission: an earlier attempt
                result = _finished_by_earlier_attempt(result)  # finished it, then its worker died
            results.append(result)
            if progress:
                progress(result, len(results), total)
    finally:
        if own_client:
            client.close()
        if cluster is not None:
            cluster.close()
    order = {str(p): i for i, p in enumerate(sources)}
    return sorted(results, key=lambda r: order[r.input])
