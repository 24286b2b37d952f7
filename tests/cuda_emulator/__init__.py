"""CPU emulator of CUDA kernels: the real ``.cu`` file compiled by g++, driven like cupy.RawModule.

:func:`build_module` parses every ``extern "C" __global__`` function of a CUDA source, generates
one small C launcher per kernel (``emu_launch_<name>(grid, block, void** args)``, the argument
convention of ``cuLaunchKernel``), compiles source + launchers with ``g++ -std=c++20`` behind
``cuda_emulator.h`` and loads the shared library with :mod:`ctypes`. The returned
:class:`EmulatedModule` has the kernel-module interface of DESIGN.md: ``get_function(name)``
gives a callable ``kernel(grid, block, args, shared_mem=0)`` taking NumPy arrays where CuPy
would take device arrays. Arguments are checked as strictly as a GPU launch needs them to be
right: arrays must be C-contiguous with the element type of the parameter, scalars must be
NumPy scalars of the exact type (``np.int32`` for ``int``, ``np.float32`` for ``float``), and a
kernel that writes dynamic shared memory past ``shared_mem`` raises RuntimeError.
"""

from __future__ import annotations

import ctypes
import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEADER = Path(__file__).resolve().parent / "cuda_emulator.h"
SHARED_BYTES = 48 * 1024
MAX_THREADS_PER_BLOCK = 1024
WARNINGS = ("-Wall", "-Wextra", "-Werror")

_KERNEL_RE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)', re.S)
_POINTER_DTYPES = {
    "float": np.float32,
    "double": np.float64,
    "int": np.int32,
    "unsigned int": np.uint32,
    "float2": np.complex64,
    "double2": np.complex128,
}
_SCALAR_TYPES = {
    "int": (np.int32, ctypes.c_int32),
    "unsigned int": (np.uint32, ctypes.c_uint32),
    "float": (np.float32, ctypes.c_float),
    "double": (np.float64, ctypes.c_double),
}


@dataclass(frozen=True)
class Param:
    """One kernel parameter: its C type (qualifiers removed), base type and pointer flag."""

    name: str
    ctype: str
    base: str
    pointer: bool


def kernel_signatures(source: str) -> dict[str, list[Param]]:
    """Parameters of every ``extern "C" __global__`` function of a CUDA source."""
    kernels = {}
    for match in _KERNEL_RE.finditer(source):
        params = []
        for raw in match.group(2).split(","):
            text = " ".join(raw.replace("__restrict__", " ").split())
            ctype, name = text.rsplit(" ", 1) if "*" not in text else text.rsplit("*", 1)
            pointer = "*" in text
            ctype = (ctype + "*") if pointer else ctype
            base = ctype.replace("*", "").replace("const", "").strip()
            params.append(Param(name.strip(), " ".join(ctype.split()), base, pointer))
        kernels[match.group(1)] = params
    return kernels


def launcher_source(cu_path: Path, kernels: dict[str, list[Param]]) -> str:
    """C++ translation unit: the header, the CUDA source, and one launcher per kernel."""
    lines = [f'#include "{HEADER}"', f'#include "{cu_path}"', ""]
    for name, params in kernels.items():
        lines.append(
            f'extern "C" int emu_launch_{name}(unsigned int gx, unsigned int gy, '
            "unsigned int gz, unsigned int bx, unsigned int by, unsigned int bz, "
            "unsigned long shared_mem, void** args) {"
        )
        for i, p in enumerate(params):
            lines.append(f"    {p.ctype} a{i} = *static_cast<{p.ctype}*>(args[{i}]);")
        call = ", ".join(f"a{i}" for i in range(len(params)))
        lines.append(
            "    return emu_checked(shared_mem, [&] { emu_launch(dim3{gx, gy, gz}, "
            f"dim3{{bx, by, bz}}, [=] {{ {name}({call}); }}); }});"
        )
        lines.append("}")
        lines.append("")
    return "\n".join(lines)


class EmulatedKernel:
    """A kernel of an :class:`EmulatedModule`, called as ``kernel(grid, block, args)``."""

    def __init__(self, library: ctypes.CDLL, name: str, params: list[Param]) -> None:
        self.name = name
        self.params = params
        self._launch = getattr(library, f"emu_launch_{name}")
        self._launch.restype = ctypes.c_int
        self._launch.argtypes = [ctypes.c_uint] * 6 + [
            ctypes.c_ulong,
            ctypes.POINTER(ctypes.c_void_p),
        ]

    def _convert(self, param: Param, value: object) -> ctypes._SimpleCData:
        if param.pointer:
            dtype = _POINTER_DTYPES[param.base]
            if not isinstance(value, np.ndarray):
                raise TypeError(f"{self.name}: {param.name} needs an array, got {type(value)}")
            if value.dtype != dtype or not value.flags.c_contiguous:
                raise TypeError(
                    f"{self.name}: {param.name} needs a C-contiguous {np.dtype(dtype)} array, "
                    f"got {value.dtype} (contiguous={value.flags.c_contiguous})"
                )
            if "const" not in param.ctype and not value.flags.writeable:
                raise TypeError(f"{self.name}: {param.name} is written but read-only")
            return ctypes.c_void_p(value.ctypes.data)
        np_type, c_type = _SCALAR_TYPES[param.base]
        if type(value) is not np_type:
            raise TypeError(
                f"{self.name}: {param.name} needs a {np_type.__name__} scalar, got {type(value)}"
            )
        return c_type(value.item())

    def __call__(self, grid: tuple, block: tuple, args: tuple, *, shared_mem: int = 0) -> None:
        grid = tuple(grid) + (1,) * (3 - len(grid))
        block = tuple(block) + (1,) * (3 - len(block))
        if len(args) != len(self.params):
            raise TypeError(f"{self.name}: {len(self.params)} arguments expected, got {len(args)}")
        if int(np.prod(block)) > MAX_THREADS_PER_BLOCK or min(grid + block) < 1:
            raise ValueError(f"{self.name}: invalid launch geometry grid={grid} block={block}")
        if shared_mem > SHARED_BYTES:
            raise ValueError(f"{self.name}: {shared_mem} bytes of dynamic shared memory > 48 KiB")
        values = [self._convert(p, a) for p, a in zip(self.params, args, strict=True)]
        pointers = (ctypes.c_void_p * len(values))(
            *[ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in values]
        )
        if self._launch(*grid, *block, shared_mem, pointers):
            raise RuntimeError(
                f"{self.name}: wrote shared memory past the {shared_mem} bytes of the launch"
            )


class EmulatedModule:
    """Kernel-module interface (``get_function``) over a g++-compiled CUDA source."""

    def __init__(self, library_path: Path, kernels: dict[str, list[Param]]) -> None:
        self._library = ctypes.CDLL(str(library_path))
        self._kernels = kernels
        self.library_path = library_path

    def get_function(self, name: str) -> EmulatedKernel:
        """The kernel ``name`` (KeyError when the source has no such ``extern "C"`` kernel)."""
        return EmulatedKernel(self._library, name, self._kernels[name])


_CACHE: dict[str, EmulatedModule] = {}


def build_module(cu_path: Path, build_dir: Path, *, opt: str = "-O2") -> EmulatedModule:
    """Compile ``cu_path`` for the CPU emulator in ``build_dir`` (cached per process)."""
    source = Path(cu_path).read_text()
    kernels = kernel_signatures(source)
    launchers = launcher_source(Path(cu_path).resolve(), kernels)
    key = hashlib.sha256((source + HEADER.read_text() + launchers + opt).encode()).hexdigest()
    key = key[:16]
    if key in _CACHE:
        return _CACHE[key]
    compiler = shutil.which("g++")
    if compiler is None:
        raise RuntimeError("the CUDA emulator needs g++ on the PATH")
    build_dir.mkdir(parents=True, exist_ok=True)
    cpp = build_dir / f"emulated_{key}.cpp"
    lib = build_dir / f"emulated_{key}.so"
    cpp.write_text(launchers)
    cmd = [compiler, "-std=c++20", opt, *WARNINGS, "-shared", "-fPIC", "-pthread", "-o", str(lib),
           str(cpp)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"g++ failed on {cu_path}:\n{done.stderr}")
    module = EmulatedModule(lib, kernels)
    _CACHE[key] = module
    return module
