"""The benchmark harness and report writer (the suites themselves are run by `recon bench`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.harness import Row, measure
from benchmarks.runner import SuiteOutcome, available_suites, markdown_table, write_report


def test_measure_reports_median_and_traced_peak():
    calls = []

    def work():
        calls.append(1)
        return np.ones(2**20, dtype=np.float64)  # 8 MiB

    m = measure(work, repeats=3, warmup=2)
    assert len(calls) == 2 + 3 + 1
    assert len(m.times_s) == 3 and m.median_s == sorted(m.times_s)[1]
    assert 7.5 < m.peak_mib < 9.0


def test_report_files(tmp_path):
    rows = [
        Row("nufft", "2d type1", "recon", 0.5, 10.0, nrmse=1e-4, ratio=1.0),
        Row("nufft", "2d type1", "sigpy", 2.0, 30.0, nrmse=7e-3, ratio=4.0),
    ]
    outcomes = [SuiteOutcome("nufft", rows, 3.0), SuiteOutcome("broken", [], 0.1, "ValueError: x")]
    paths = write_report(outcomes, tmp_path, quick=True)
    assert set(paths) == {"report.json", "report.md", "ratios.png"}
    doc = json.loads(paths["report.json"].read_text())
    assert doc["suites"][0]["rows"][1]["ratio"] == pytest.approx(4.0)
    assert doc["suites"][1]["error"] == "ValueError: x"
    table = markdown_table(outcomes)
    assert "| nufft | 2d type1 | sigpy | 2 | 4.00 | 7.00e-03 |" in table
    assert "(failed)" in table
    assert paths["ratios.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*tmp*"))


def test_suites_are_discovered():
    assert all(name.isidentifier() for name in available_suites())
