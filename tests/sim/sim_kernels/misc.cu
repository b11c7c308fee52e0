// Kernels exercising warp primitives, atomics, dynamic shared memory, local arrays and halves.
#include "cuda_fp16.h"

// out[0] += sum(exp(x)) over the block (warp shuffles, then one atomic per block);
// out[1 + blockIdx.x] = number of warps whose partial sum is positive (ballot + popc).
extern "C" __global__ void exp_sum(const float* x, float* out, int n) {
    extern __shared__ float partial[];
    float v = 0.f;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) v += expf(x[i]);
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x < 32) {
        unsigned warps = blockDim.x >> 5;
        float p = threadIdx.x < warps ? partial[threadIdx.x] : 0.f;
        unsigned positive = __ballot_sync(0xffffffffu, p > 0.f && threadIdx.x < warps);
        for (int o = 16; o > 0; o >>= 1) p += __shfl_xor_sync(0xffffffffu, p, o);
        if (threadIdx.x == 0) {
            atomicAdd(out, p);
            out[1 + blockIdx.x] = (float)__popc(positive);
        }
    }
}

// Per lane: up-shuffle within segments of 8, broadcast of lane 5, any/all votes.
extern "C" __global__ void warp_ops(const int* x, int* up8, int* bcast, int* votes) {
    int t = threadIdx.x;
    int v = x[t];
    up8[t] = __shfl_up_sync(0xffffffffu, v, 1, 8);
    bcast[t] = __shfl_sync(0xffffffffu, v, 5);
    int any = __any_sync(0xffffffffu, v > 30);
    int all = __all_sync(0xffffffffu, v >= 0);
    votes[t] = any * 2 + all;
}

// Integer atomics from every thread: a CAS-based counter, max, exchange and a double sum.
extern "C" __global__ void atomics(int* counter, int* maxv, unsigned* last, double* dsum, const int* x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int old = *counter, assumed;
    do {
        assumed = old;
        old = atomicCAS(counter, assumed, assumed + 1);
    } while (old != assumed);
    atomicMax(maxv, x[i]);
    atomicExch(last, 7u);
    atomicAdd(dsum, (double)x[i] * 0.5);
}

// A local array indexed dynamically (ld/st.local) and a half-precision output.
extern "C" __global__ void local_half(const float* x, __half* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float window[8];
    for (int j = 0; j < 8; j++) window[j] = x[(i + j) % n];
    y[i] = __float2half(window[i % 8] * 2.f);
}

// Reverses each block's chunk through shared memory: the race-free twin used for block-order
// determinism (every block also accumulates into a per-block slot with atomics).
extern "C" __global__ void reverse_blocks(const float* x, float* y, float* block_sums, int n) {
    __shared__ float s[128];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    s[threadIdx.x] = i < n ? x[i] : 0.f;
    __syncthreads();
    int j = blockIdx.x * blockDim.x + (blockDim.x - 1 - threadIdx.x);
    if (j < n) y[j] = s[threadIdx.x];
    if (i < n) atomicAdd(&block_sums[blockIdx.x], x[i] > 0.f ? 1.f : 0.f);
}

// Strided copy for coalescing counters: y[i] = x[i * stride].
extern "C" __global__ void strided_copy(const float* x, float* y, int stride, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i * stride];
}

// Column read of a 32x32 shared tile: each lane reads a different row of one column (32-way bank
// conflict) when pad == 0; padded rows (pad == 1) are conflict-free.
extern "C" __global__ void column_read(const float* x, float* y, int pad) {
    __shared__ float tile[32 * 33];
    int t = threadIdx.x;
    for (int r = 0; r < 32; r++) tile[r * (32 + pad) + t] = x[r * 32 + t];
    __syncwarp();
    float acc = 0.f;
    for (int c = 0; c < 32; c++) acc += tile[t * (32 + pad) + c];
    y[t] = acc;
}

// Odd threads write through a pointer into shared memory, even threads into global memory: the
// compiler cannot tell which, so the store uses a generic address (cvta.shared + st).
extern "C" __global__ void generic_store(float* out) {
    __shared__ float s[64];
    __shared__ unsigned count;
    int t = threadIdx.x;
    if (t == 0) count = 0;
    s[t] = 0.f;
    __syncthreads();
    float* p = (t & 1) ? &s[t] : &out[t];
    *p = (float)t;
    atomicAdd(&count, 1u);
    __syncthreads();
    if (t & 1) out[t] = s[t] * 10.f;
    if (t == 0) out[64] = (float)count;
}

// Threads past the end return before a barrier that the others reach: allowed, since exited
// threads do not take part in later barriers.
extern "C" __global__ void early_exit_then_barrier(const float* x, float* y, int n) {
    __shared__ float s[128];
    int t = threadIdx.x;
    if (t >= n) return;
    s[t] = x[t];
    __syncthreads();
    y[t] = s[n - 1 - t];
}

// Module variables: a constant table with initialisers and a zero-initialised device counter
// that keeps its value between launches.
__constant__ float kTable[4] = {1.5f, -2.0f, 0.25f, 8.0f};
__device__ unsigned gCount;

extern "C" __global__ void table_lookup(const int* idx, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = kTable[idx[i] & 3];
        atomicAdd(&gCount, 1u);
    }
}

extern "C" __global__ void read_count(unsigned* out) { *out = gCount; }
