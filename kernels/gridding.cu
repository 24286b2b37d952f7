// Gridding kernels of recon's "cuda" NUFFT backend (recon/noncart/backends/cuda.py).
//
// Spreading (adjoint, type 1) and interpolation (forward, type 2) between nonuniform samples
// and an oversampled Cartesian grid, in 2D and 3D, for complex64 data and float32 coordinates.
// The design follows cuFINUFFT (Shih et al., IPDPSW 2021) and the idea of BART's gpu_grid:
//   1. bin_count + bin_scatter: counting sort of the points into bins, once per trajectory
//      (histogram with atomics whose return value is the rank inside the bin; the exclusive
//      scan of the counts is done by the host with xp.cumsum);
//   2. spread_2d / spread_3d: one block per sub-problem (at most blockDim.x points of one bin),
//      one thread per point; each thread evaluates its kernel weights per axis once
//      (w values per axis, never w^d) and keeps them in registers while the block loops over
//      all coils: shared-memory tile of the bin plus a halo of w - 1, atomics into the tile,
//      then the tile added to the global grid with atomics (periodic wrap);
//   3. interp_2d / interp_3d: one thread per point in bin order (gather, no atomics), all
//      coils per thread so the weights are computed once per sample.
//
// Conventions (set by the host code):
//   t       float32 (ndim, npts): point coordinates on the oversampled grid, in grid cells,
//           row 0 pairs with x (the fastest, last array axis), row 1 with y, row 2 with z.
//   grid    complex64 (ncoils, [nz,] ny, nx), the oversampled grid, C order.
//   samples complex64 (ncoils, npts).
//   kernel  kind 0: exponential of semicircle exp(beta (sqrt(1 - z^2) - 1));
//           kind 1: Kaiser-Bessel I0(beta sqrt(1 - z^2)); z = (grid index - t) / (w / 2).
//           The scale of the kernel cancels in the host's deapodisation.
// A point with i0 = ceil(t - w/2) touches grid indices i0 .. i0 + w - 1 (mod n). It is binned by
// wrap(i0) / bin, so the tile of a bin starting at b * bin needs bin + w - 1 cells per axis.
//
// The same file compiles with NVRTC/nvcc and, for the CPU emulator of the tests, with g++ behind
// tests/cuda_emulator/cuda_emulator.h, which predefines DYNAMIC_SHARED.

#define GRIDDING_MAX_WIDTH 16

#ifndef DYNAMIC_SHARED
#define DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

__device__ __forceinline__ int gridding_wrap(int i, int n) {
    i %= n;
    return i < 0 ? i + n : i;
}

__device__ __forceinline__ float gridding_kernel(float z, float beta, int kind) {
    float s = 1.0f - z * z;
    s = s > 0.0f ? s : 0.0f;
    if (kind == 0) {
        return expf(beta * (sqrtf(s) - 1.0f));
    }
    return cyl_bessel_i0f(beta * sqrtf(s));
}

// First grid index touched by a point at t; writes the w kernel weights of that axis.
__device__ __forceinline__ int gridding_weights(float t, int w, float beta, int kind,
                                                float* __restrict__ weights) {
    const int i0 = (int)ceilf(t - 0.5f * (float)w);
    const float x = (float)i0 - t;
    const float inv_half = 2.0f / (float)w;
    for (int i = 0; i < GRIDDING_MAX_WIDTH; ++i) {
        if (i < w) {
            weights[i] = gridding_kernel((x + (float)i) * inv_half, beta, kind);
        }
    }
    return i0;
}

__device__ __forceinline__ int gridding_first_index(float t, int w) {
    return (int)ceilf(t - 0.5f * (float)w);
}

// Histogram of the points over the bins. rank[j] is the position of point j inside its bin.
extern "C" __global__ void bin_count(const float* __restrict__ t, int npts, int ndim, int nx,
                                     int ny, int nz, int bx, int by, int bz, int nbx, int nby,
                                     int w, int* __restrict__ counts, int* __restrict__ point_bin,
                                     int* __restrict__ rank) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= npts) {
        return;
    }
    const int ix = gridding_wrap(gridding_first_index(t[j], w), nx) / bx;
    const int iy = gridding_wrap(gridding_first_index(t[npts + j], w), ny) / by;
    int iz = 0;
    if (ndim == 3) {
        iz = gridding_wrap(gridding_first_index(t[2 * npts + j], w), nz) / bz;
    }
    const int bin = ix + nbx * (iy + nby * iz);
    point_bin[j] = bin;
    rank[j] = atomicAdd(&counts[bin], 1);
}

// Permutation: sorted[bin_start[bin] + rank] = point index.
extern "C" __global__ void bin_scatter(const int* __restrict__ point_bin,
                                       const int* __restrict__ rank,
                                       const int* __restrict__ bin_start, int npts,
                                       int* __restrict__ sorted) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j < npts) {
        sorted[bin_start[point_bin[j]] + rank[j]] = j;
    }
}

extern "C" __global__ void spread_2d(const float* __restrict__ t, const int* __restrict__ sorted,
                                     const int* __restrict__ sub_bin,
                                     const int* __restrict__ sub_start,
                                     const int* __restrict__ sub_count,
                                     const float2* __restrict__ samples, float2* __restrict__ grid,
                                     int npts, int ncoils, int nx, int ny, int bx, int by, int nbx,
                                     int w, float beta, int kind) {
    DYNAMIC_SHARED(float2, tile);
    const int bin = sub_bin[blockIdx.x];
    const int ox = (bin % nbx) * bx;
    const int oy = (bin / nbx) * by;
    const int tx = bx + w - 1;
    const int tsize = tx * (by + w - 1);
    const bool active = (int)threadIdx.x < sub_count[blockIdx.x];

    float wx[GRIDDING_MAX_WIDTH];
    float wy[GRIDDING_MAX_WIDTH];
    int j = 0;
    int lx = 0;
    int ly = 0;
    if (active) {
        j = sorted[sub_start[blockIdx.x] + threadIdx.x];
        lx = gridding_wrap(gridding_weights(t[j], w, beta, kind, wx), nx) - ox;
        ly = gridding_wrap(gridding_weights(t[npts + j], w, beta, kind, wy), ny) - oy;
    }
    for (int coil = 0; coil < ncoils; ++coil) {
        for (int i = threadIdx.x; i < tsize; i += blockDim.x) {
            tile[i] = make_float2(0.0f, 0.0f);
        }
        __syncthreads();
        if (active) {
            const float2 v = samples[(size_t)coil * npts + j];
            for (int dy = 0; dy < w; ++dy) {
                float2* row = tile + (ly + dy) * tx + lx;
                const float vx = v.x * wy[dy];
                const float vy = v.y * wy[dy];
                for (int dx = 0; dx < w; ++dx) {
                    atomicAdd(&row[dx].x, vx * wx[dx]);
                    atomicAdd(&row[dx].y, vy * wx[dx]);
                }
            }
        }
        __syncthreads();
        float2* g = grid + (size_t)coil * nx * ny;
        for (int i = threadIdx.x; i < tsize; i += blockDim.x) {
            const float2 v = tile[i];
            if (v.x != 0.0f || v.y != 0.0f) {
                const int gx = gridding_wrap(ox + i % tx, nx);
                const int gy = gridding_wrap(oy + i / tx, ny);
                atomicAdd(&g[gy * nx + gx].x, v.x);
                atomicAdd(&g[gy * nx + gx].y, v.y);
            }
        }
        __syncthreads();
    }
}

extern "C" __global__ void spread_3d(const float* __restrict__ t, const int* __restrict__ sorted,
                                     const int* __restrict__ sub_bin,
                                     const int* __restrict__ sub_start,
                                     const int* __restrict__ sub_count,
                                     const float2* __restrict__ samples, float2* __restrict__ grid,
                                     int npts, int ncoils, int nx, int ny, int nz, int bx, int by,
                                     int bz, int nbx, int nby, int w, float beta, int kind) {
    DYNAMIC_SHARED(float2, tile);
    const int bin = sub_bin[blockIdx.x];
    const int ox = (bin % nbx) * bx;
    const int oy = ((bin / nbx) % nby) * by;
    const int oz = (bin / (nbx * nby)) * bz;
    const int tx = bx + w - 1;
    const int ty = by + w - 1;
    const int tsize = tx * ty * (bz + w - 1);
    const bool active = (int)threadIdx.x < sub_count[blockIdx.x];

    float wx[GRIDDING_MAX_WIDTH];
    float wy[GRIDDING_MAX_WIDTH];
    float wz[GRIDDING_MAX_WIDTH];
    int j = 0;
    int lx = 0;
    int ly = 0;
    int lz = 0;
    if (active) {
        j = sorted[sub_start[blockIdx.x] + threadIdx.x];
        lx = gridding_wrap(gridding_weights(t[j], w, beta, kind, wx), nx) - ox;
        ly = gridding_wrap(gridding_weights(t[npts + j], w, beta, kind, wy), ny) - oy;
        lz = gridding_wrap(gridding_weights(t[2 * npts + j], w, beta, kind, wz), nz) - oz;
    }
    for (int coil = 0; coil < ncoils; ++coil) {
        for (int i = threadIdx.x; i < tsize; i += blockDim.x) {
            tile[i] = make_float2(0.0f, 0.0f);
        }
        __syncthreads();
        if (active) {
            const float2 v = samples[(size_t)coil * npts + j];
            for (int dz = 0; dz < w; ++dz) {
                for (int dy = 0; dy < w; ++dy) {
                    float2* row = tile + ((lz + dz) * ty + ly + dy) * tx + lx;
                    const float wyz = wz[dz] * wy[dy];
                    const float vx = v.x * wyz;
                    const float vy = v.y * wyz;
                    for (int dx = 0; dx < w; ++dx) {
                        atomicAdd(&row[dx].x, vx * wx[dx]);
                        atomicAdd(&row[dx].y, vy * wx[dx]);
                    }
                }
            }
        }
        __syncthreads();
        float2* g = grid + (size_t)coil * nx * ny * nz;
        for (int i = threadIdx.x; i < tsize; i += blockDim.x) {
            const float2 v = tile[i];
            if (v.x != 0.0f || v.y != 0.0f) {
                const int gx = gridding_wrap(ox + i % tx, nx);
                const int gy = gridding_wrap(oy + (i / tx) % ty, ny);
                const int gz = gridding_wrap(oz + i / (tx * ty), nz);
                const size_t at = ((size_t)gz * ny + gy) * nx + gx;
                atomicAdd(&g[at].x, v.x);
                atomicAdd(&g[at].y, v.y);
            }
        }
        __syncthreads();
    }
}

extern "C" __global__ void interp_2d(const float* __restrict__ t, const int* __restrict__ sorted,
                                     const float2* __restrict__ grid, float2* __restrict__ samples,
                                     int npts, int ncoils, int nx, int ny, int w, float beta,
                                     int kind) {
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= npts) {
        return;
    }
    const int j = sorted[k];
    float wx[GRIDDING_MAX_WIDTH];
    float wy[GRIDDING_MAX_WIDTH];
    int xs[GRIDDING_MAX_WIDTH];
    int ys[GRIDDING_MAX_WIDTH];
    const int ix = gridding_weights(t[j], w, beta, kind, wx);
    const int iy = gridding_weights(t[npts + j], w, beta, kind, wy);
    for (int i = 0; i < w; ++i) {
        xs[i] = gridding_wrap(ix + i, nx);
        ys[i] = gridding_wrap(iy + i, ny) * nx;
    }
    for (int coil = 0; coil < ncoils; ++coil) {
        const float2* g = grid + (size_t)coil * nx * ny;
        float re = 0.0f;
        float im = 0.0f;
        for (int dy = 0; dy < w; ++dy) {
            float rx = 0.0f;
            float ix_ = 0.0f;
            for (int dx = 0; dx < w; ++dx) {
                const float2 v = g[ys[dy] + xs[dx]];
                rx += v.x * wx[dx];
                ix_ += v.y * wx[dx];
            }
            re += rx * wy[dy];
            im += ix_ * wy[dy];
        }
        samples[(size_t)coil * npts + j] = make_float2(re, im);
    }
}

extern "C" __global__ void interp_3d(const float* __restrict__ t, const int* __restrict__ sorted,
                                     const float2* __restrict__ grid, float2* __restrict__ samples,
                                     int npts, int ncoils, int nx, int ny, int nz, int w, float beta,
                                     int kind) {
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= npts) {
        return;
    }
    const int j = sorted[k];
    float wx[GRIDDING_MAX_WIDTH];
    float wy[GRIDDING_MAX_WIDTH];
    float wz[GRIDDING_MAX_WIDTH];
    int xs[GRIDDING_MAX_WIDTH];
    int ys[GRIDDING_MAX_WIDTH];
    size_t zs[GRIDDING_MAX_WIDTH];
    const int ix = gridding_weights(t[j], w, beta, kind, wx);
    const int iy = gridding_weights(t[npts + j], w, beta, kind, wy);
    const int iz = gridding_weights(t[2 * npts + j], w, beta, kind, wz);
    for (int i = 0; i < w; ++i) {
        xs[i] = gridding_wrap(ix + i, nx);
        ys[i] = gridding_wrap(iy + i, ny) * nx;
        zs[i] = (size_t)gridding_wrap(iz + i, nz) * nx * ny;
    }
    for (int coil = 0; coil < ncoils; ++coil) {
        const float2* g = grid + (size_t)coil * nx * ny * nz;
        float re = 0.0f;
        float im = 0.0f;
        for (int dz = 0; dz < w; ++dz) {
            for (int dy = 0; dy < w; ++dy) {
                const float2* row = g + zs[dz] + ys[dy];
                const float wyz = wz[dz] * wy[dy];
                float rx = 0.0f;
                float ix_ = 0.0f;
                for (int dx = 0; dx < w; ++dx) {
                    const float2 v = row[xs[dx]];
                    rx += v.x * wx[dx];
                    ix_ += v.y * wx[dx];
                }
                re += rx * wyz;
                im += ix_ * wyz;
            }
        }
        samples[(size_t)coil * npts + j] = make_float2(re, im);
    }
}
