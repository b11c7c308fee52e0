// Per-channel reductions over channels-last activations: a [rows, C] matrix whose rows are pixels
// (batch norm with channels innermost, channel-broadcast gradients in NHWC). A block of
// CR_THREADS threads takes CR_LANES consecutive channels (fewer in the last chunk, or when C is
// smaller) and a range of rows: thread t takes V consecutive channels from V * (t % L), L the
// chunk's channels / V, and every (CR_THREADS / L)-th row from t / L, so consecutive threads read
// consecutive addresses, and when C < 32 one warp reads several whole rows at once, where one
// thread per channel would leave most lanes idle. V = 4 (C a multiple of 4) reads a thread's
// channels in one access (kernels/stored.cuh's ferro_load4).
#pragma once
#include "common.cuh"
#include "stored.cuh"

#define CR_THREADS 256
#define CR_LANES 32

struct ChannelRows {
    int c;        // this thread's first channel
    int lanes;    // threads per row (the chunk's channels / V); threads t < lanes hold the totals
    int row;      // this thread's first row
    int step;     // rows per pass of the block
    bool active;  // false for the threads past step * lanes
};

// Thread threadIdx.x's share of channel chunk `chunk` of a matrix of C channels, V channels per
// thread, over rows from `begin` (the caller stops at its range's end).
template <int V = 1>
__device__ __forceinline__ ChannelRows channel_rows(int C, int chunk, int begin) {
    ChannelRows cr;
    const int c0 = chunk * CR_LANES;
    cr.lanes = min(CR_LANES, C - c0) / V;
    cr.step = CR_THREADS / cr.lanes;
    cr.c = c0 + V * (threadIdx.x % cr.lanes);
    cr.row = begin + threadIdx.x / cr.lanes;
    cr.active = threadIdx.x < cr.step * cr.lanes;
    return cr;
}

// Sums each of the K values over the threads of the same channel; threads t < cr.lanes get their
// channel's totals. Every thread of the block calls it (it holds a barrier); `scratch` is
// __shared__ float[K][CR_THREADS] and is read after the barrier only, so a block calls it once.
template <int K>
__device__ __forceinline__ void channel_rows_total(float (&v)[K], const ChannelRows& cr,
                                                   float (*scratch)[CR_THREADS]) {
#pragma unroll
    for (int k = 0; k < K; ++k) scratch[k][threadIdx.x] = cr.active ? v[k] : 0.0f;
    __syncthreads();
    if (threadIdx.x >= cr.lanes) return;
#pragma unroll
    for (int k = 0; k < K; ++k) {
        float total = 0.0f;
        for (int j = 0; j < cr.step; ++j) total += scratch[k][threadIdx.x + j * cr.lanes];
        v[k] = total;
    }
}

// The thread's V channels at element i (its first channel's) of a [rows, C] matrix in p's stored
// format, in one access at V = 4.
template <int V>
__device__ __forceinline__ void channel_rows_load(const void* __restrict__ p, long long i, int format, float (&v)[V]) {
    if constexpr (V == 4) {
        const float4 q = ferro_load4(p, i, format);
        v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
    } else {
        v[0] = ferro_load(p, i, format);
    }
}

template <int V>
__device__ __forceinline__ void channel_rows_store(void* __restrict__ p, long long i, int format, const float (&v)[V]) {
    if constexpr (V == 4) {
        ferro_store4(p, i, make_float4(v[0], v[1], v[2], v[3]), format);
    } else {
        ferro_store(p, i, v[0], format);
    }
}
