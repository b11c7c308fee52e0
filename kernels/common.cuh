// Definitions shared by every kernel file. build.rs inlines this header into each .cu, so the
// embedded sources compile at run time without any include path. NVRTC ships no system headers,
// hence the constants below.
#pragma once

#define FERRO_INF __int_as_float(0x7f800000)
#define FERRO_FLT_MAX 3.402823466e+38f
#define FERRO_WARP 32

// A full-warp mask for shuffles and votes.
#define FERRO_FULL_MASK 0xffffffffu

// Block-wide reductions. Contract: blockDim.x is a multiple of 32 (full-warp shuffles), every
// thread of the block calls them (they hold barriers), and `scratch` is __shared__ float[33].
// Every thread gets the result. Two barriers make back-to-back calls on one scratch race-free:
// the next call's writes to scratch[warp] happen after this call's reads of scratch[lane] (those
// precede the second barrier), and its write of scratch[32] after every thread passed the first
// barrier of the next call, i.e. after every thread read this call's scratch[32].
struct FerroSum {
    __device__ static float identity() { return 0.0f; }
    __device__ static float apply(float a, float b) { return a + b; }
};
struct FerroMax {
    __device__ static float identity() { return -FERRO_INF; }
    __device__ static float apply(float a, float b) { return fmaxf(a, b); }
};

// Over each aligned run of `lanes` lanes (a power of two up to 32; every lane of the warp calls
// it), every lane of the run gets the run's result.
template <typename Op>
__device__ __forceinline__ float ferro_warp_reduce(float v, int lanes = FERRO_WARP) {
    for (int offset = lanes / 2; offset > 0; offset >>= 1)
        v = Op::apply(v, __shfl_xor_sync(FERRO_FULL_MASK, v, offset));
    return v;
}

template <typename Op>
__device__ __forceinline__ float ferro_block_reduce(float v, float* scratch) {
    const int lane = threadIdx.x % FERRO_WARP;
    const int warp = threadIdx.x / FERRO_WARP;
    const int warps = blockDim.x / FERRO_WARP;
    v = ferro_warp_reduce<Op>(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float w = lane < warps ? scratch[lane] : Op::identity();
        w = ferro_warp_reduce<Op>(w);
        if (lane == 0) scratch[32] = w;
    }
    __syncthreads();
    return scratch[32];
}

__device__ __forceinline__ float ferro_block_sum(float v, float* scratch) {
    return ferro_block_reduce<FerroSum>(v, scratch);
}

// Thread t's share, among `threads` threads striding over x[0, n), of the sum of x (of x^2 when
// `square`, each square fused into the sum): with `vec` (x 16-byte aligned), the 4-value pieces
// t, t + threads, ... in one 16-byte load each, then the last n % 4 values; otherwise values t,
// t + threads, ... one at a time. The one partition of kernels/reduce.cu's passes and of the
// optimiser's gradient norm (kernels/optim.cu), which must agree bit for bit.
__device__ __forceinline__ float ferro_share_sum(const float* __restrict__ x, int n, int t, int threads, bool square,
                                                 bool vec) {
    float acc = 0.0f;
    int scalar_from = 0;
    if (vec) {
        const int pieces = n / 4;
        for (int q = t; q < pieces; q += threads) {
            const float4 v = reinterpret_cast<const float4*>(x)[q];
            acc = square ? fmaf(v.x, v.x, acc) : acc + v.x;
            acc = square ? fmaf(v.y, v.y, acc) : acc + v.y;
            acc = square ? fmaf(v.z, v.z, acc) : acc + v.z;
            acc = square ? fmaf(v.w, v.w, acc) : acc + v.w;
        }
        scalar_from = 4 * pieces;
    }
    for (int i = scalar_from + t; i < n; i += threads) acc = square ? fmaf(x[i], x[i], acc) : acc + x[i];
    return acc;
}
__device__ __forceinline__ float ferro_block_max(float v, float* scratch) {
    return ferro_block_reduce<FerroMax>(v, scratch);
}
