// CPU emulator of the CUDA execution model, for tests only (see DESIGN.md "Backends and the GPU").
//
// A .cu file compiled by g++ -std=c++20 with this header force-included runs its __global__
// functions on the CPU: each block is executed by blockDim.x * blockDim.y * blockDim.z
// std::threads (one per CUDA thread), blocks run one after another, __syncthreads() is a
// std::barrier over the block's threads, atomicAdd is std::atomic_ref::fetch_add, __shared__
// variables are function-local statics (safe because only one block runs at a time) and dynamic
// shared memory (DYNAMIC_SHARED) is a static buffer of EMU_DYNAMIC_SHARED_BYTES. The launchers
// fill that buffer with 0xFF bytes (NaN as float) before a launch and check afterwards that
// nothing was written past the launch's shared_mem bytes: reading shared memory that was
// never written gives NaNs, writing past the allocation is reported.
// Limitation: a thread must not leave a kernel early when the others still call __syncthreads().
#pragma once

#include <math.h>

#include <atomic>
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <thread>
#include <vector>

#ifndef EMU_DYNAMIC_SHARED_BYTES
#define EMU_DYNAMIC_SHARED_BYTES (48 * 1024)
#endif

struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};

inline thread_local dim3 threadIdx;
inline thread_local dim3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;
inline thread_local std::barrier<>* emu_block_barrier = nullptr;

struct alignas(8) float2 {
    float x, y;
};

inline float2 make_float2(float x, float y) { return float2{x, y}; }

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
alignas(16) inline unsigned char emu_shared_buffer[EMU_DYNAMIC_SHARED_BYTES];
#define DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(emu_shared_buffer)

inline void __syncthreads() { emu_block_barrier->arrive_and_wait(); }

template <class T>
inline T atomicAdd(T* address, T value) {
    return std::atomic_ref<T>(*address).fetch_add(value, std::memory_order_relaxed);
}

inline float cyl_bessel_i0f(float x) { return std::cyl_bessel_if(0.0f, x); }

// Run `body` (one kernel call) for every block of `grid` with one std::thread per CUDA thread.
template <class Body>
void emu_launch(dim3 grid, dim3 block, Body body) {
    const unsigned int nthreads = block.x * block.y * block.z;
    const unsigned int nblocks = grid.x * grid.y * grid.z;
    std::barrier<> barrier(static_cast<std::ptrdiff_t>(nthreads));
    std::vector<std::thread> threads;
    threads.reserve(nthreads);
    for (unsigned int tid = 0; tid < nthreads; ++tid) {
        threads.emplace_back([&, tid] {
            threadIdx = dim3{tid % block.x, (tid / block.x) % block.y, tid / (block.x * block.y)};
            blockDim = block;
            gridDim = grid;
            emu_block_barrier = &barrier;
            for (unsigned int b = 0; b < nblocks; ++b) {
                blockIdx = dim3{b % grid.x, (b / grid.x) % grid.y, b / (grid.x * grid.y)};
                body();
                barrier.arrive_and_wait();  // block b is done before b + 1 reuses shared memory
            }
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
}

// Poison the dynamic shared memory, run the launch, and return 1 when it wrote past shared_mem.
template <class Launch>
int emu_checked(std::size_t shared_mem, Launch launch) {
    std::memset(emu_shared_buffer, 0xFF, sizeof emu_shared_buffer);
    launch();
    for (std::size_t i = shared_mem; i < sizeof emu_shared_buffer; ++i) {
        if (emu_shared_buffer[i] != 0xFF) {
            return 1;
        }
    }
    return 0;
}
