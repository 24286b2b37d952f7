"""The ``cuda`` NUFFT backend: recon's gridding kernels (kernels/gridding.cu) driven from xp.

The host code is written against an array module ``xp`` (CuPy on a GPU, NumPy in the tests) and
a *kernel module* with ``get_function(name)`` returning a callable ``kernel(grid, block, args,
shared_mem=0)``: ``cupy.RawModule`` on a GPU, the g++-compiled CPU emulator of
tests/cuda_emulator in the tests. Everything besides the gridding itself (coordinates on the
oversampled grid, counting sort into bins, sub-problems, launch geometry, coil batching,
zero-padding, FFTs, deapodisation, scaling) happens here, so the emulator tests exercise the
same code a GPU runs.

Transform (DESIGN.md): ``y_j = sum_r x_r exp(-i 2 pi k_j . r / N) / sqrt(prod N)`` with r
centred (array index r + N//2). Type 2 (forward): ``x / phihat / sqrt(prod N)`` zero-padded onto
the oversampled grid at indices r mod n, unnormalised FFT, interpolation at
``t = k n / N mod n``. Type 1 (adjoint): spreading, unnormalised inverse FFT, crop, deapodise.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from recon.backend import Device
from recon.errors import DeviceError, InputError
from recon.noncart.kernel import KernelSpec, fine_grid_shape, kernel_fourier, kernel_spec
from recon.resources import kernel_source

SHARED_BYTES = 48 * 1024
DEFAULT_BINS = {2: (32, 32), 3: (16, 16, 4)}


def load_module() -> Any:
    """Compile kernels/gridding.cu with CuPy (NVRTC, cached on disk by CuPy)."""
    import cupy

    return cupy.RawModule(code=kernel_source("gridding.cu"), options=("-std=c++17",))


def _fft_functions(xp: Any) -> tuple[Any, Any]:
    """Unnormalised n-D forward and inverse FFT over the trailing ``ndim`` axes."""
    if xp is np:
        import os

        import scipy.fft

        workers = os.cpu_count() or 1

        def fwd(a, axes):
            return scipy.fft.fftn(a, axes=axes, workers=workers, overwrite_x=True)

        def inv(a, axes):
            return scipy.fft.ifftn(a, axes=axes, norm="forward", workers=workers, overwrite_x=True)

        return fwd, inv
    return (
        lambda a, axes: xp.fft.fftn(a, axes=axes),
        lambda a, axes: xp.fft.ifftn(a, axes=axes, norm="forward"),
    )


def tile_bytes(bins: tuple[int, ...], width: int) -> int:
    """Shared memory (bytes) of one complex64 tile: the bin plus w - 1 cells per axis."""
    return 8 * math.prod(b + width - 1 for b in bins)


def choose_bins(ndim: int, width: int, fine: tuple[int, ...]) -> tuple[int, ...]:
    """Bin size per axis (x first) whose tile fits in 48 KiB of shared memory.

    Starts from cuFINUFFT-like sizes (32 x 32 in 2D, 16 x 16 x 4 in 3D), never larger than the
    grid, and halves the largest bin edge until the tile fits.
    """
    bins = [min(b, n) for b, n in zip(DEFAULT_BINS[ndim], fine[::-1], strict=True)]
    while tile_bytes(tuple(bins), width) > SHARED_BYTES:
        axis = int(np.argmax(bins))
        if bins[axis] == 1:
            break
        bins[axis] = max(1, bins[axis] // 2)
    return tuple(bins)


class CudaBackend:
    """Gridding NUFFT on recon's CUDA kernels.

    Parameters
    ----------
    shape : tuple of int
        Image shape ``(ny, nx)`` or ``(nz, ny, nx)``.
    eps : float
        Requested relative accuracy; the kernel width follows from it.
    upsampling : float
        Oversampling factor of the grid (2, or e.g. 1.25 to save memory in 3D).
    device : Device or str
        A CUDA device. Ignored when ``xp`` and ``module`` are given (the emulator tests).
    module : kernel module, optional
        Anything with ``get_function(name)``; default ``cupy.RawModule`` of gridding.cu.
    xp : module, optional
        Array module matching ``module`` (NumPy for the emulator).
    kernel : {"es", "kb"}
        Exponential of semicircle (default) or Kaiser-Bessel.
    bins : tuple of int, optional
        Bin size per axis in x, y[, z] order (grid cells); default from :func:`choose_bins`.
    threads : int
        Threads per block: the maximum points of one spreading sub-problem, and the block size
        of the binning and interpolation launches.
    batch : int, optional
        Coils (transforms) per launch; default as many as fit in ``batch_bytes``.
    batch_bytes : int
        Memory budget of one batch of oversampled grids.
    """

    name = "cuda"

    def __init__(
        self,
        shape: tuple[int, ...],
        *,
        eps: float = 1e-4,
        upsampling: float = 2.0,
        device: Device | str = "cuda",
        module: Any = None,
        xp: Any = None,
        kernel: str = "es",
        bins: tuple[int, ...] | None = None,
        threads: int = 256,
        batch: int | None = None,
        batch_bytes: int = 1 << 30,
    ) -> None:
        if module is None or xp is None:
            dev = Device(device)
            if not dev.is_gpu:
                raise DeviceError("the cuda NUFFT backend needs a CUDA device (use finufft)")
            xp = dev.xp
            with dev.use():
                module = load_module()
        self.xp = xp
        self.module = module
        self.shape = tuple(int(n) for n in shape)
        self.ndim = len(self.shape)
        if self.ndim not in (2, 3):
            raise InputError(f"cuda NUFFT supports 2D and 3D images, got shape {self.shape}")
        self.spec: KernelSpec = kernel_spec(eps, upsampling, kernel)
        self.fine = fine_grid_shape(self.shape, self.spec)
        width = self.spec.width
        self.bins = tuple(bins) if bins is not None else choose_bins(self.ndim, width, self.fine)
        if len(self.bins) != self.ndim or tile_bytes(self.bins, width) > SHARED_BYTES:
            raise InputError(f"bins {self.bins} invalid for {self.ndim}D with kernel width {width}")
        self.nbins = tuple(-(-n // b) for n, b in zip(self.fine[::-1], self.bins, strict=True))
        self.threads = int(threads)
        self.batch = batch
        self.batch_bytes = batch_bytes
        self._fftn, self._ifftn = _fft_functions(xp)
        self._axes = tuple(range(-self.ndim, 0))
        # r = -N//2 .. (N-1)//2 sits at index r mod n of the oversampled grid
        index = [np.arange(n) - n // 2 for n in self.shape]
        self._crop = xp.ix_(*[xp.asarray(r % m) for r, m in zip(index, self.fine, strict=True)])
        deapod = np.ones((), dtype=np.float64)
        for n, m in zip(self.shape, self.fine, strict=True):
            deapod = np.multiply.outer(deapod, 1.0 / kernel_fourier(self.spec, m, n))
        self._deapod = xp.asarray((deapod / math.sqrt(math.prod(self.shape))).astype(np.float32))
        self.npts = 0

    @classmethod
    def available(cls) -> bool:
        """True when CuPy sees a usable CUDA device."""
        from recon.backend import gpu_available

        return gpu_available()

    def _launch(self, name: str, grid: int, block: int, args: tuple, shared_mem: int = 0) -> None:
        self.module.get_function(name)((grid,), (block,), args, shared_mem=shared_mem)

    def set_points(self, coord: Any) -> None:
        """Sort the points ``coord`` (npts, ndim) into bins and build the sub-problems.

        Coordinates are in grid units of the image (``coord[:, -1]`` pairs with x); any value is
        accepted and wrapped periodically.
        """
        xp, i32 = self.xp, np.int32
        coord = xp.asarray(coord, dtype=xp.float64)
        if coord.ndim != 2 or coord.shape[1] != self.ndim:
            raise InputError(f"coord must have shape (npts, {self.ndim}), got {coord.shape}")
        npts = coord.shape[0]
        scale = xp.asarray(
            [m / n for m, n in zip(self.fine, self.shape, strict=True)], dtype=xp.float64
        )
        period = xp.asarray(self.fine, dtype=xp.float64)
        t = xp.mod(coord * scale, period)  # (npts, ndim) in oversampled-grid cells, [0, n)
        self.t = xp.ascontiguousarray(t[:, ::-1].T.astype(xp.float32))  # rows x, y[, z]
        self.npts = npts
        nbins_total = math.prod(self.nbins)
        counts = xp.zeros(nbins_total, dtype=xp.int32)
        point_bin = xp.empty(npts, dtype=xp.int32)
        rank = xp.empty(npts, dtype=xp.int32)
        nx, ny, nz = (*self.fine[::-1], 1)[:3]
        bx, by, bz = (*self.bins, 1)[:3]
        nbx, nby = self.nbins[0], self.nbins[1]
        blocks = max(1, -(-npts // self.threads))
        self._launch(
            "bin_count",
            blocks,
            self.threads,
            (self.t, i32(npts), i32(self.ndim), i32(nx), i32(ny), i32(nz), i32(bx), i32(by),
             i32(bz), i32(nbx), i32(nby), i32(self.spec.width), counts, point_bin, rank),
        )  # fmt: skip
        bin_start = (xp.cumsum(counts) - counts).astype(xp.int32)
        self.sorted = xp.empty(npts, dtype=xp.int32)
        self._launch(
            "bin_scatter",
            blocks,
            self.threads,
            (point_bin, rank, bin_start, i32(npts), self.sorted),
        )
        # sub-problems: each bin cut into pieces of at most `threads` points, one block each
        nsub = (counts + self.threads - 1) // self.threads
        last_sub = xp.cumsum(nsub)
        first_sub = last_sub - nsub
        nsub_total = int(last_sub[-1])
        sub = xp.arange(nsub_total, dtype=xp.int32)
        self.sub_bin = xp.searchsorted(last_sub, sub, side="right").astype(xp.int32)
        piece = sub - first_sub[self.sub_bin]
        self.sub_start = (bin_start[self.sub_bin] + piece * self.threads).astype(xp.int32)
        self.sub_count = xp.minimum(counts[self.sub_bin] - piece * self.threads, self.threads)
        self.sub_count = self.sub_count.astype(xp.int32)

    def _batch_size(self, total: int) -> int:
        if self.batch is not None:
            return max(1, min(int(self.batch), total))
        per_grid = 8 * math.prod(self.fine)
        return max(1, min(total, self.batch_bytes // per_grid))

    def _spread(self, samples: Any) -> Any:
        """Spread ``(nb, npts)`` complex64 samples onto ``(nb, *fine)`` oversampled grids."""
        xp, i32 = self.xp, np.int32
        nb = samples.shape[0]
        grid = xp.zeros((nb, *self.fine), dtype=xp.complex64)
        s = self.spec
        common = (self.t, self.sorted, self.sub_bin, self.sub_start, self.sub_count, samples, grid,
                  i32(self.npts), i32(nb))  # fmt: skip
        geometry = (*(i32(n) for n in self.fine[::-1]), *(i32(b) for b in self.bins),
                    *(i32(b) for b in self.nbins[:-1]))  # fmt: skip
        name = f"spread_{self.ndim}d"
        args = (*common, *geometry, i32(s.width), np.float32(s.beta), i32(s.kind_code))
        if self.sub_bin.size:
            self._launch(name, int(self.sub_bin.size), self.threads, args,
                         tile_bytes(self.bins, s.width))  # fmt: skip
        return grid

    def _interp(self, grid: Any) -> Any:
        """Interpolate ``(nb, *fine)`` oversampled grids at the points: ``(nb, npts)``."""
        xp, i32 = self.xp, np.int32
        nb = grid.shape[0]
        out = xp.empty((nb, self.npts), dtype=xp.complex64)
        s = self.spec
        args = (self.t, self.sorted, grid, out, i32(self.npts), i32(nb),
                *(i32(n) for n in self.fine[::-1]), i32(s.width), np.float32(s.beta),
                i32(s.kind_code))  # fmt: skip
        if self.npts:
            self._launch(f"interp_{self.ndim}d", -(-self.npts // self.threads), self.threads, args)
        return out

    def _check(self, array: Any, tail: tuple[int, ...], what: str) -> Any:
        array = self.xp.asarray(array, dtype=self.xp.complex64)
        if array.ndim != 1 + len(tail) or tuple(array.shape[1:]) != tail:
            raise InputError(f"{what} must have shape (batch, {tail}), got {array.shape}")
        return array

    def forward(self, x: Any) -> Any:
        """Type 2: images ``(batch, *shape)`` -> samples ``(batch, npts)``, complex64."""
        xp = self.xp
        x = self._check(x, self.shape, "image")
        out = xp.empty((x.shape[0], self.npts), dtype=xp.complex64)
        step = self._batch_size(x.shape[0])
        for start in range(0, x.shape[0], step):
            part = x[start : start + step]
            grid = xp.zeros((part.shape[0], *self.fine), dtype=xp.complex64)
            grid[(Ellipsis, *self._crop)] = part * self._deapod
            grid = self._fftn(grid, self._axes)
            out[start : start + step] = self._interp(xp.ascontiguousarray(grid))
        return out

    def adjoint(self, y: Any) -> Any:
        """Type 1: samples ``(batch, npts)`` -> images ``(batch, *shape)``, complex64."""
        xp = self.xp
        y = xp.ascontiguousarray(self._check(y, (self.npts,), "samples"))
        out = xp.empty((y.shape[0], *self.shape), dtype=xp.complex64)
        step = self._batch_size(y.shape[0])
        for start in range(0, y.shape[0], step):
            grid = self._ifftn(self._spread(y[start : start + step]), self._axes)
            out[start : start + step] = grid[(Ellipsis, *self._crop)] * self._deapod
        return out

    def spread(self, y: Any) -> Any:
        """Gridding only: samples ``(batch, npts)`` -> oversampled grids ``(batch, *fine)``."""
        return self._spread(self.xp.ascontiguousarray(self._check(y, (self.npts,), "samples")))

    def interp(self, grid: Any) -> Any:
        """Gridding only: oversampled grids ``(batch, *fine)`` -> samples ``(batch, npts)``."""
        return self._interp(self.xp.ascontiguousarray(self._check(grid, self.fine, "grid")))
