// Single-precision GEMM and the bias steps of GEMM-based layers (linear, convolution).
//
// C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b], row-major, batch index = blockIdx.z, on the
// 64x64 or 128x128 tiles of gemm_tile.cuh (the host picks, src/ops/gemm/mod.rs).
//
// Split-K, for grids too small to fill the GPU: the `_split` kernels give each block one slice of
// K and store its partial tile (gemm_kernels.cuh); `splitk_reduce` sums the partials in a fixed order (deterministic,
// no atomics) and applies alpha and beta. The host chooses the split (src/ops/gemm/mod.rs).
#include "gemm_kernels.cuh"
#include "stored.cuh"

// The 64x64 kernels promise four blocks per SM: that caps registers at 64 (ptxas needs no spills
// for that) to keep 32 warps resident for latency hiding; the host's split-K planner
// (src/ops/gemm/mod.rs, GemmTile::blocks_per_sm) counts on these minimums. The 128x128 ones
// (suffix _128) promise one: their 8x8 micro-tile and its operand addresses need 130-160
// registers (more than the 128 of two), so one block of 8 warps runs per SM
// and the 64 independent accumulators of each thread hide the latency instead. The 64x128 ones
// (suffix _64x128, 4x8 per thread) promise two. The 64x64 split kernels promise three: the
// slice's bounds need the registers that the 64-register cap of four would spill.
#define FERRO_SGEMM_KERNELS(TRANSPOSES, TA, TB)                                                   \
    GEMM_KERNEL(sgemm_##TRANSPOSES, gemm_body, FERRO_GEMM_PARAMS, FERRO_GEMM_ARGS, 4,              \
                SgemmTile<64, 64>, TA, TB)                                                        \
    GEMM_KERNEL(sgemm_##TRANSPOSES##_64x128, gemm_body, FERRO_GEMM_PARAMS, FERRO_GEMM_ARGS, 2,     \
                SgemmTile<64, 128>, TA, TB)                                                       \
    GEMM_KERNEL(sgemm_##TRANSPOSES##_128, gemm_body, FERRO_GEMM_PARAMS, FERRO_GEMM_ARGS, 1,        \
                SgemmTile<128, 128>, TA, TB)                                                      \
    GEMM_KERNEL(sgemm_##TRANSPOSES##_split, gemm_split_body, FERRO_GEMM_SPLIT_PARAMS,              \
                FERRO_GEMM_SPLIT_ARGS, 3, SgemmTile<64, 64>, TA, TB)                              \
    GEMM_KERNEL(sgemm_##TRANSPOSES##_64x128_split, gemm_split_body, FERRO_GEMM_SPLIT_PARAMS,       \
                FERRO_GEMM_SPLIT_ARGS, 2, SgemmTile<64, 128>, TA, TB)                             \
    GEMM_KERNEL(sgemm_##TRANSPOSES##_128_split, gemm_split_body, FERRO_GEMM_SPLIT_PARAMS,          \
                FERRO_GEMM_SPLIT_ARGS, 1, SgemmTile<128, 128>, TA, TB)

FERRO_SGEMM_KERNELS(nn, false, false)
FERRO_SGEMM_KERNELS(nt, false, true)
FERRO_SGEMM_KERNELS(tn, true, false)
FERRO_SGEMM_KERNELS(tt, true, true)

// Split-K, second pass: C[b] = alpha * (sum of the splits' partial M x N products, in split order)
// + bias[b * N + c] (bias_rows: bias[b * M + r]) + beta * C[b] (C not read when beta == 0; bias
// may be null: a bias per column, or per row, of each batch matrix, a grouped convolution's per
// group; an NCHW convolution output's rows are its channels), stored as c_format
// (stored.cuh: a 16-bit run's layer outputs round once, here), one thread per element of the
// M x N matrices of all batches; partial matrix b * splits + s holds split s of batch b. Element
// (r, c) of C[b] is element b * stride_c + r * plane + (c / plane) * image_stride + c % plane of C:
// a row-major C is plane = N, image_stride = 0; an NCHW convolution output is plane = OH * OW,
// image_stride = channels * plane. The fixed order makes the result the same bits on every run.
extern "C" __global__ void splitk_reduce(const float* partial, void* C, int c_format, const float* bias, int bias_rows,
                                         int N, int mn, int splits, int total, long long stride_c, int plane,
                                         long long image_stride, float alpha, float beta) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= total) return;
    int batch = idx / mn;
    int e = idx - batch * mn;
    const float* p = partial + (size_t)batch * splits * mn + e;
    float sum = p[0];
    for (int s = 1; s < splits; ++s) sum += p[(size_t)s * mn];
    int row = e / N;
    int col = e - row * N;
    int image = col / plane;
    long long i = batch * stride_c + image * image_stride + (long long)row * plane + (col - image * plane);
    float v = alpha * sum;
    if (bias) v += bias_rows ? bias[(long long)batch * (mn / N) + row] : bias[(long long)batch * N + col];
    if (beta != 0.f) v += beta * ferro_load(C, i, c_format);
    ferro_store(C, i, v, c_format);
}

// y[(o * channels + c) * inner + i] += bias[c], one thread per element of y.
extern "C" __global__ void add_bias(float* y, const float* bias, int channels, int inner, int total) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= total) return;
    y[idx] += bias[(idx / inner) % channels];
}

// db[c] = sum over o < outer, i < inner of dy[(o * channels + c) * inner + i], dy stored as
// dy_format; one block of up to 256 threads per channel.
extern "C" __global__ void __launch_bounds__(256)
    bias_grad(const void* dy, int dy_format, float* db, int outer, int channels, int inner) {
    __shared__ float scratch[33];
    int c = blockIdx.x;
    int count = outer * inner;
    float sum = 0.f;
    for (int idx = threadIdx.x; idx < count; idx += blockDim.x) {
        int o = idx / inner;
        int i = idx - o * inner;
        sum += ferro_load(dy, ((long long)o * channels + c) * inner + i, dy_format);
    }
    float total = ferro_block_sum(sum, scratch);
    if (threadIdx.x == 0) db[c] = total;
}
