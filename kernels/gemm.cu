// Single-precision GEMM and the bias steps of GEMM-based layers (linear, convolution).
//
// C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b], row-major, batch index = blockIdx.z, on the
// 64x64 or 128x128 tiles of gemm_tile.cuh (the host picks, src/ops/gemm/mod.rs).
//
// Split-K, for grids too small to fill the GPU: the `_split` kernels give each block one slice of
// K and store its partial tile; `splitk_reduce` sums the partials in a fixed order (deterministic,
// no atomics) and applies alpha and beta. The host chooses the split (src/ops/gemm/mod.rs).
#include "gemm_tile.cuh"

// Batch index = blockIdx.z. The 64x64 kernels promise four blocks per SM: that caps registers
// at 64 (ptxas needs no spills for that) to keep 32 warps resident for latency hiding; the host's
// split-K planner (src/ops/gemm/mod.rs, GemmTile::blocks_per_sm) counts on these minimums. The
// 128x128 ones (suffix _128) promise one: their 8x8 micro-tile and its operand addresses need
// about 200 registers (ptxas spills 350-530 bytes at the 128 of two), so one block of 8 warps
// runs per SM and the 64 independent accumulators of each thread hide the latency instead. The
// 64x128 ones (suffix _64x128, 4x8 per thread) promise two.
#define FERRO_SGEMM_KERNEL(NAME, TA, TB, BM, BN, MIN_BLOCKS)                                      \
    extern "C" __global__ void __launch_bounds__(GEMM_THREADS, MIN_BLOCKS)                         \
        NAME(const float* A, const float* B, float* C, int M, int N, int K, int lda, int ldb,     \
             int ldc, long long stride_a, long long stride_b, long long stride_c, float alpha,    \
             float beta, int vec_a, int vec_b, int vec_c) {                                       \
        GemmDense a{A + blockIdx.z * stride_a, lda};                                              \
        GemmDense b{B + blockIdx.z * stride_b, ldb};                                              \
        GemmOut c{C + blockIdx.z * stride_c, ldc, 0};                                             \
        gemm_tile<BM, BN, !TA, TB>(a, b, c, M, N, 0, K, alpha, beta, vec_a, vec_b, vec_c);        \
    }

// Split-K, first pass: blockIdx.z = batch * splits + split. Each block sums its tile over one
// K-slice [split * k_per_split, min(K, (split + 1) * k_per_split)) and stores the plain product
// (no alpha, no beta) as partial matrix blockIdx.z of M x N. k_per_split is a multiple of
// GEMM_BK, so a slice starts 16-byte aligned wherever its operand's rows do. The 64x64 kernels
// promise three blocks per SM: the slice's bounds need the registers that the 64-register cap of
// four would spill.
#define FERRO_SGEMM_SPLIT_KERNEL(NAME, TA, TB, BM, BN, MIN_BLOCKS)                                \
    extern "C" __global__ void __launch_bounds__(GEMM_THREADS, MIN_BLOCKS)                         \
        NAME(const float* A, const float* B, float* partial, int M, int N, int K, int lda,        \
             int ldb, long long stride_a, long long stride_b, int splits, int k_per_split,       \
             int vec_a, int vec_b, int vec_p) {                                                   \
        int batch = blockIdx.z / splits;                                                          \
        int k_begin = (blockIdx.z - batch * splits) * k_per_split;                                \
        GemmDense a{A + batch * stride_a, lda};                                                   \
        GemmDense b{B + batch * stride_b, ldb};                                                   \
        GemmOut p{partial + (size_t)blockIdx.z * M * N, N, 0};                                    \
        gemm_tile<BM, BN, !TA, TB>(a, b, p, M, N, k_begin, min(K, k_begin + k_per_split),         \
                                       1.f, 0.f, vec_a, vec_b, vec_p);                            \
    }

#define FERRO_SGEMM_KERNELS(TRANSPOSES, TA, TB)                                                   \
    FERRO_SGEMM_KERNEL(sgemm_##TRANSPOSES, TA, TB, 64, 64, 4)                                     \
    FERRO_SGEMM_KERNEL(sgemm_##TRANSPOSES##_64x128, TA, TB, 64, 128, 2)                           \
    FERRO_SGEMM_KERNEL(sgemm_##TRANSPOSES##_128, TA, TB, 128, 128, 1)                             \
    FERRO_SGEMM_SPLIT_KERNEL(sgemm_##TRANSPOSES##_split, TA, TB, 64, 64, 3)                       \
    FERRO_SGEMM_SPLIT_KERNEL(sgemm_##TRANSPOSES##_64x128_split, TA, TB, 64, 128, 2)               \
    FERRO_SGEMM_SPLIT_KERNEL(sgemm_##TRANSPOSES##_128_split, TA, TB, 128, 128, 1)

FERRO_SGEMM_KERNELS(nn, false, false)
FERRO_SGEMM_KERNELS(nt, false, true)
FERRO_SGEMM_KERNELS(tn, true, false)
FERRO_SGEMM_KERNELS(tt, true, true)

// Split-K, second pass: C[b] = alpha * (sum of the splits' partial M x N products, in split order)
// + beta * C[b] (C not read when beta == 0), one thread per element of the M x N matrices of all
// batches; partial matrix b * splits + s holds split s of batch b. Element (r, c) of C[b] lies at
// C + b * stride_c + r * plane + (c / plane) * image_stride + c % plane: a row-major C is
// plane = N, image_stride = 0; an NCHW convolution output is plane = OH * OW, image_stride =
// channels * plane. The fixed order makes the result the same bits on every run.
extern "C" __global__ void splitk_reduce(const float* partial, float* C, int N, int mn, int splits,
                                         int total, long long stride_c, int plane,
                                         long long image_stride, float alpha, float beta) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= total) return;
    int batch = idx / mn;
    int e = idx - batch * mn;
    const float* p = partial + (size_t)batch * splits * mn + e;
    float sum = p[0];
    for (int s = 1; s < splits; ++s) sum += p[(size_t)s * mn];
    int row = e / N;
    GemmOut out{C + batch * stride_c, plane, image_stride};
    float* c = out.ptr(row, e - row * N);
    float v = alpha * sum;
    *c = beta != 0.f ? v + beta * *c : v;
}

// y[(o * channels + c) * inner + i] += bias[c], one thread per element of y.
extern "C" __global__ void add_bias(float* y, const float* bias, int channels, int inner, int total) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= total) return;
    y[idx] += bias[(idx / inner) % channels];
}

// db[c] = sum over o < outer, i < inner of dy[(o * channels + c) * inner + i]; one block of
// up to 256 threads per channel.
extern "C" __global__ void __launch_bounds__(256)
    bias_grad(const float* dy, float* db, int outer, int channels, int inner) {
    __shared__ float scratch[33];
    int c = blockIdx.x;
    int count = outer * inner;
    float sum = 0.f;
    for (int idx = threadIdx.x; idx < count; idx += blockDim.x) {
        int o = idx / inner;
        int i = idx - o * inner;
        sum += dy[((size_t)o * channels + c) * inner + i];
    }
    float total = ferro_block_sum(sum, scratch);
    if (threadIdx.x == 0) db[c] = total;
}

// dst [rows, dst_cols] = the first dst_cols columns of src [rows, src_cols]: a product computed
// on N padded to the tensor-core kernel's multiple (src/ops/gemm/tc_train.rs) copied out. One
// thread per element of dst, `total` = rows * dst_cols.
extern "C" __global__ void copy_columns(const float* __restrict__ src, float* __restrict__ dst, int total, int src_cols,
                                        int dst_cols) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) dst[i] = src[i / dst_cols * src_cols + i % dst_cols];
}
