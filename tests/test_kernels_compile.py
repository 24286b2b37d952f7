"""Every kernel in kernels/ compiles for sm_80 and sm_90 with NVRTC, and with nvcc when present.

NVRTC comes from the cuda-bindings and nvidia-cuda-nvrtc wheels (the test extra), so this runs
in the default test run without a GPU; the measured number is the size of the cubin.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from recon.resources import kernels_dir

SOURCES = sorted(kernels_dir().glob("*.cu"))
ARCHS = ["sm_80", "sm_90"]


def nvrtc_compile(source: bytes, name: str, arch: str) -> tuple[int, str, int]:
    """NVRTC result code, compile log and cubin size for one source and architecture."""
    from cuda.bindings import nvrtc

    err, program = nvrtc.nvrtcCreateProgram(source, name.encode(), 0, [], [])
    assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS
    options = [f"--gpu-architecture={arch}".encode(), b"-std=c++17"]
    (result,) = nvrtc.nvrtcCompileProgram(program, len(options), options)
    _, log_size = nvrtc.nvrtcGetProgramLogSize(program)
    log = b" " * log_size
    nvrtc.nvrtcGetProgramLog(program, log)
    size = 0
    if result == nvrtc.nvrtcResult.NVRTC_SUCCESS:
        _, size = nvrtc.nvrtcGetCUBINSize(program)
    nvrtc.nvrtcDestroyProgram(program)
    return int(result), log.decode(errors="replace").strip("\x00 \n"), int(size)


def test_kernels_exist():
    assert len(SOURCES) >= 1
    assert "gridding.cu" in [p.name for p in SOURCES]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_kernel_compiles_with_nvrtc(source, arch):
    result, log, size = nvrtc_compile(source.read_bytes(), source.name, arch)
    assert result == 0, log
    assert "warning" not in log.lower(), log
    assert size > 1000


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on the PATH")
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_kernel_compiles_with_nvcc(source, arch, tmp_path):
    out = tmp_path / f"{source.stem}_{arch}.cubin"
    done = subprocess.run(
        ["nvcc", f"-arch={arch}", "-cubin", "-Werror", "all-warnings", "-o", str(out),
         str(source)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 1000
