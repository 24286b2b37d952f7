"""Run the benchmark suites and write the report (JSON, Markdown table, PNG chart of ratios).

Every module ``benchmarks/suite_<name>.py`` with a ``run(quick: bool) -> list[Row]`` function is
a suite. Each suite runs recon and every installed peer on identical inputs in this process.

Usage::

    python -m benchmarks.runner [--full] [--suite nufft --suite coils] [-o bench-report]
    recon bench [--quick|--full] [-o bench-report]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import Row

BENCH_DIR = Path(__file__).resolve().parent


def available_suites() -> list[str]:
    """Names of the suites present, e.g. ``["coils", "nufft"]``."""
    return sorted(p.stem.removeprefix("suite_") for p in BENCH_DIR.glob("suite_*.py"))


@dataclass
class SuiteOutcome:
    """Rows of one suite, its wall time (s), and the error line if it failed."""

    name: str
    rows: list[Row]
    seconds: float
    error: str = ""


def run_suites(
    names: Iterable[str] | None = None, *, quick: bool = True, log=print
) -> list[SuiteOutcome]:
    """Import and run the named suites (all when None); a failing suite is reported, not fatal."""
    outcomes = []
    for name in names or available_suites():
        if name not in available_suites():
            raise ValueError(f"unknown benchmark suite {name!r}: have {available_suites()}")
        log(f"suite {name} ...")
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"benchmarks.suite_{name}")
            rows = list(module.run(quick=quick))
            outcomes.append(SuiteOutcome(name, rows, time.perf_counter() - start))
        except Exception as error:  # one broken suite must not hide the others
            log(traceback.format_exc())
            outcomes.append(
                SuiteOutcome(
                    name, [], time.perf_counter() - start, f"{type(error).__name__}: {error}"
                )
            )
        log(f"suite {name} done in {outcomes[-1].seconds:.1f} s")
    return outcomes


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def markdown_table(outcomes: list[SuiteOutcome]) -> str:
    """The report as a Markdown table, one row per implementation and case."""
    lines = [
        "| suite | case | implementation | median (s) | peer time / ours | NRMSE | throughput "
        "| peak MiB | notes |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for outcome in outcomes:
        if outcome.error:
            lines.append(f"| {outcome.name} | (failed) | | | | | | | {outcome.error} |")
        for r in outcome.rows:
            throughput = f"{r.throughput:.3g} {r.unit}" if r.throughput is not None else ""
            lines.append(
                f"| {r.suite} | {r.case} | {r.impl} | {r.median_s:.4g} | {_fmt(r.ratio, '.2f')} "
                f"| {_fmt(r.nrmse, '.2e')} | {throughput} | {r.peak_mib:.0f} | {r.notes} |"
            )
    return "\n".join(lines) + "\n"


def plot_ratios(outcomes: list[SuiteOutcome], path: Path) -> bool:
    """Bar chart of peer-time / our-time per case and peer; False when nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [
        (f"{r.suite}:{r.case}\nvs {r.impl}", r.ratio)
        for o in outcomes
        for r in o.rows
        if r.ratio is not None and r.ratio != 1.0
    ]
    if not bars:
        return False
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(bars)), 5))
    labels, ratios = zip(*bars, strict=True)
    colours = ["tab:green" if v >= 1 else "tab:red" for v in ratios]
    ax.bar(range(len(bars)), ratios, color=colours)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(range(len(bars)), labels, rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("peer time / recon time (> 1: recon faster)")
    ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_report(outcomes: list[SuiteOutcome], out_dir: Path, *, quick: bool) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and ``ratios.png`` into ``out_dir``, each atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "quick": quick,
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    document = {
        "meta": meta,
        "suites": [
            {
                "name": o.name,
                "seconds": o.seconds,
                "error": o.error,
                "rows": [r.as_dict() for r in o.rows],
            }
            for o in outcomes
        ],
    }
    written = {}
    for name, text in (
        ("report.json", json.dumps(document, indent=2)),
        ("report.md", markdown_table(outcomes)),
    ):
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out_dir / name)
        written[name] = out_dir / name
    tmp_png = out_dir / ".ratios.tmp.png"
    if plot_ratios(outcomes, tmp_png):
        tmp_png.replace(out_dir / "ratios.png")
        written["ratios.png"] = out_dir / "ratios.png"
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full sizes (default: quick)")
    parser.add_argument("--suite", action="append", help="run only these suites")
    parser.add_argument("-o", "--output", default="bench-report", help="report folder")
    args = parser.parse_args(argv)
    outcomes = run_suites(args.suite, quick=not args.full)
    paths = write_report(outcomes, Path(args.output), quick=not args.full)
    print(markdown_table(outcomes))
    print("written:", ", ".join(str(p) for p in paths.values()))
    return 1 if any(o.error for o in outcomes) else 0


if __name__ == "__main__":
    raise SystemExit(main())
