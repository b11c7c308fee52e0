// ferronet: compute_75 compute_80
// The standalone tensor-core GEMM below (cp.async pipeline, operands as 16-bit patterns or f32
// for tf32; benchmarks and tests), and at the end of the file the linear layers' GEMMs of training
// on tc_gemm_tile.cuh's tiles. The compute_75 module (Turing) has the f16 kernels only, on
// tensor_core.cuh's Turing branches (two m16n8k8 per m16n8k16, copies without cp.async: the
// next stage's read into registers while the current one is multiplied, two shared buffers).
//
// Tensor-core GEMM: C[M,N] (f32) = A[M,K] B[K,N], all row-major, with bf16 or f16 inputs
// (mma.sync m16n8k16) or f32 inputs rounded to tf32 (m16n8k8), accumulated in f32.
//
// A block computes a 128x128 tile of C (or 64x128, for products with few tiles or M <= 64) with 8
// warps (2 along M x 4 along N), each a 64x32 (32x32) tile: 4 (2) x 4 mma tiles of 16x8 whose fp32
// accumulators stay in registers. The k dimension goes in
// steps of one stage: 64 bytes of k per row of A (32 bf16/f16 or 16 f32 values) and as many rows
// of B. Stages are filled by cp.async (16 bytes per copy, zero-filled past the matrix edges) in a
// three-stage pipeline: while the warps multiply stage s, the copies of the next two are in flight.
// One barrier per stage: it follows the wait for stage s's copies, so every warp sees all of
// stage s, and precedes the refill of stage s - 1, which every warp has finished reading.
//
// Shared tiles are XOR-swizzled in 16-byte chunks so that neither the cp.async writes nor the
// ldmatrix reads (eight 16-byte rows at once, one per lane of a quarter warp) hit a bank twice:
// - A (128 or 64 rows of 64 bytes = 4 chunks): chunk c of row r is stored at chunk c ^ ((r >> 1) & 3);
//   ldmatrix reads rows r..r+7 at one logical chunk, and rows 2 apart share banks unswizzled.
// - B (rows of 128 values: 16 chunks for bf16/f16, 32 for f32): chunk c of row k is stored at
//   c ^ (k & 7) (16-bit) or c ^ ((k & 7) << 1) (f32); ldmatrix.trans reads rows k..k+7 of one
//   chunk (16-bit), and the tf32 path's scalar loads read rows t and t + 4 (t = lane % 4) of
//   columns g (lane / 4), which land in 32 different banks.
//
// Requirements (checked by the launcher, src/ops/gemm/tc.rs): K and N multiples of 8 (16-bit
// inputs) or 4 (f32), so every 16-byte chunk is wholly inside or outside the matrix; 16-byte
// aligned A and B, 8-byte aligned C. M, N and K need not be multiples of the tile.

#include "gemm_kernels.cuh"
#include "tc_gemm_tile.cuh"
#include "tensor_core.cuh"

namespace {

constexpr int BN = 128, THREADS = 256, STAGES = 3;
constexpr int CHUNK = 16;
constexpr int A_ROW_BYTES = TC_ROW_BYTES;
// BK rows of BN values: 32 x 128 x 2 bytes or 16 x 128 x 4 bytes.
constexpr int B_STAGE_BYTES = 8192;
constexpr int WN = 32, NT = WN / 8;

// MT: mma tiles of 16 rows per warp, so the block tile has BM = 32 MT rows.
template <TcIn IN, int MT>
__device__ __forceinline__ void gemm_tc(const void* a, const void* b, float* c, int m, int n, int k) {
    constexpr int WM = MT * 16, BM = 2 * WM;
    constexpr int A_STAGE_BYTES = BM * A_ROW_BYTES;
    constexpr int STAGE_BYTES = A_STAGE_BYTES + B_STAGE_BYTES;
    constexpr int ELEM = IN == TC_TF32 ? 4 : 2;
    constexpr int BK = A_ROW_BYTES / ELEM;
    constexpr int PER_CHUNK = CHUNK / ELEM;
    constexpr int B_ROW_BYTES = BN * ELEM;
    constexpr int B_ROW_CHUNKS = B_ROW_BYTES / CHUNK;
    constexpr int B_SWIZZLE_SHIFT = IN == TC_TF32 ? 1 : 0;
    // Each thread copies A_COPIES chunks of A and two of B per stage.
    constexpr int A_COPIES = BM * (A_ROW_BYTES / CHUNK) / THREADS, COPIES = A_COPIES + 2;
    static_assert(A_COPIES * THREADS == BM * (A_ROW_BYTES / CHUNK) && BK * B_ROW_CHUNKS == 2 * THREADS, "whole copies per thread");

    __shared__ __align__(128) unsigned char smem[tc_pipeline_buffers<STAGES> * STAGE_BYTES];
    const unsigned smem_base = static_cast<unsigned>(__cvta_generic_to_shared(smem));
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp >> 2, wn = warp & 3;
    const int bm = blockIdx.y * BM, bn = blockIdx.x * BN;
    const char* ga = static_cast<const char*>(a);
    const char* gb = static_cast<const char*>(b);
    const int ktiles = (k + BK - 1) / BK;

    auto load_stage = [&](int kt, TcCopies<COPIES>& copies) {
        const int k0 = kt * BK;
#pragma unroll
        for (int r = 0; r < A_COPIES; ++r) {
            const int idx = tid + r * THREADS;
            const int row = idx >> 2, chunk = idx & 3;
            const int gm = bm + row, gk = k0 + chunk * PER_CHUNK;
            const bool inside = gm < m && gk < k;
            const char* src = inside ? ga + ((size_t)gm * k + gk) * ELEM : ga;
            copies.issue(r, tc_swizzled(row, chunk), src, inside);
        }
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int idx = tid + r * THREADS;
            const int row = idx / B_ROW_CHUNKS, chunk = idx % B_ROW_CHUNKS;
            const int gk = k0 + row, gn = bn + chunk * PER_CHUNK;
            const bool inside = gk < k && gn < n;
            const char* src = inside ? gb + ((size_t)gk * n + gn) * ELEM : gb;
            copies.issue(A_COPIES + r, A_STAGE_BYTES + row * B_ROW_BYTES + ((chunk ^ ((row & 7) << B_SWIZZLE_SHIFT)) << 4), src, inside);
        }
    };

    float acc[MT][NT][4];
    tc_zero(acc);

    // The lane's ldmatrix row and chunk half for B (16-bit): lanes 0-15 give rows 0-15 of the
    // first 16-byte half of a 16x16 (k) block, lanes 16-31 those of the second.
    const int lrow = lane & 15, lhalf = lane >> 4;
    const int g = lane >> 2, t = lane & 3;

    auto compute_stage = [&](int stage) {
        const unsigned a_base = smem_base + stage * STAGE_BYTES;
        const unsigned b_base = a_base + A_STAGE_BYTES;
        auto load_b = [&](int ks, unsigned (&bf)[NT][2]) {
            if (IN == TC_TF32) {
#pragma unroll
                for (int j = 0; j < NT; ++j) {
                    const int col = wn * WN + j * 8 + g;
#pragma unroll
                    for (int h = 0; h < 2; ++h) {
                        const int row = ks * 8 + t + 4 * h;
                        const int offset = A_STAGE_BYTES + row * B_ROW_BYTES + (((col >> 2) ^ ((row & 7) << 1)) << 4) + (col & 3) * 4;
                        const unsigned bits = *reinterpret_cast<const unsigned*>(smem + stage * STAGE_BYTES + offset);
                        bf[j][h] = tc_to_tf32(bits);
                    }
                }
            } else {
#pragma unroll
                for (int j = 0; j < NT / 2; ++j) {
                    const int row = ks * 16 + lrow;
                    const int chunk = (wn * WN + j * 16) / 8 + lhalf;
                    unsigned r[4];
                    tc_ldmatrix_x4_trans(r, b_base + row * B_ROW_BYTES + ((chunk ^ (row & 7)) << 4));
                    tc_b_fragment_pair(bf, j, r);
                }
            }
        };
        tc_mma_stage<IN>(acc, a_base, wm * WM, lane, load_b);
    };
    tc_pipeline<STAGES, COPIES>(ktiles, smem_base, STAGE_BYTES, load_stage, compute_stage);

#pragma unroll
    for (int i = 0; i < MT; ++i) {
#pragma unroll
        for (int j = 0; j < NT; ++j) {
            const int row = bm + wm * WM + i * 16 + g;
            const int col = bn + wn * WN + j * 8 + 2 * t;
            if (col >= n) continue;
            if (row < m) *reinterpret_cast<float2*>(c + (size_t)row * n + col) = make_float2(acc[i][j][0], acc[i][j][1]);
            if (row + 8 < m) *reinterpret_cast<float2*>(c + (size_t)(row + 8) * n + col) = make_float2(acc[i][j][2], acc[i][j][3]);
        }
    }
}

}  // namespace

// Pointers to bf16/f16 are raw 16-bit patterns (no cuda_bf16.h needed). The `_64` kernels take
// 64-row block tiles.
#define GEMM_TC_KERNEL(NAME, IN, MT, T)                                                                                 \
    extern "C" __global__ void __launch_bounds__(THREADS) NAME(const T* a, const T* b, float* c, int m, int n, int k) { \
        gemm_tc<IN, MT>(a, b, c, m, n, k);                                                                              \
    }

GEMM_TC_KERNEL(gemm_tc_f16, TC_F16, 4, unsigned short)
GEMM_TC_KERNEL(gemm_tc_f16_64, TC_F16, 2, unsigned short)
#if TC_AMPERE
GEMM_TC_KERNEL(gemm_tc_bf16, TC_BF16, 4, unsigned short)
GEMM_TC_KERNEL(gemm_tc_tf32, TC_TF32, 4, float)
GEMM_TC_KERNEL(gemm_tc_bf16_64, TC_BF16, 2, unsigned short)
GEMM_TC_KERNEL(gemm_tc_tf32_64, TC_TF32, 2, float)
#endif

// ---- The linear layers' GEMMs of training on the tensor cores: tc_gemm_tile.cuh's 64x64 tiles
// with the SGEMM kernels' arguments, except that A, B and C are each stored as f32, bf16 or fp16
// (a format code after each pointer: a 16-bit run's activations and gradients are read and
// written in place, 8 bytes per 4 values where vectorised) and C takes an optional f32 bias per
// column, added before its one rounding store. sgemm_TRANSPOSES_tc_FORMAT and its _split twin
// (src/ops/gemm/tc_train.rs picks them at bf16/fp16/tf32 on compute capability 8.0+, fp16 on 7.5; the split
// one stores f32 partial products for splitk_reduce, which adds the bias and stores C). No pack,
// no padding: any M, N and K. The transposes a linear layer uses: nn (data gradient), nt
// (forward) and tn (weight gradient).
#define FERRO_TC_GEMM_PARAMS                                                                      \
    const void *A, int a_format, const void *B, int b_format, void *C, int c_format,             \
        const float *bias, int M, int N, int K, int lda, int ldb, int ldc, long long stride_a,     \
        long long stride_b, long long stride_c, float alpha, float beta, int vec_a, int vec_b,     \
        int vec_c
#define FERRO_TC_GEMM_ARGS                                                                        \
    A, a_format, B, b_format, C, c_format, bias, M, N, K, lda, ldb, ldc, stride_a, stride_b,       \
        stride_c, alpha, beta, vec_a, vec_b, vec_c
template <class Tile, bool TA, bool TB>
__device__ __forceinline__ void tc_gemm_body(FERRO_TC_GEMM_PARAMS) {
    const long long z = blockIdx.z;
    GemmDenseStored a{gemm_stored_at(A, z * stride_a, a_format), lda, a_format};
    GemmDenseStored b{gemm_stored_at(B, z * stride_b, b_format), ldb, b_format};
    GemmOutStored c{const_cast<void*>(gemm_stored_at(C, z * stride_c, c_format)), ldc, 0, c_format, bias, 0};
    Tile::template run<!TA, TB>(a, b, c, M, N, 0, K, alpha, beta, vec_a, vec_b, vec_c);
}

#define FERRO_TC_GEMM_SPLIT_PARAMS                                                                \
    const void *A, int a_format, const void *B, int b_format, float *partial, int M, int N, int K, \
        int lda, int ldb, long long stride_a, long long stride_b, int splits, int k_per_split,     \
        int vec_a, int vec_b, int vec_p
#define FERRO_TC_GEMM_SPLIT_ARGS                                                                  \
    A, a_format, B, b_format, partial, M, N, K, lda, ldb, stride_a, stride_b, splits, k_per_split, \
        vec_a, vec_b, vec_p
template <class Tile, bool TA, bool TB>
__device__ __forceinline__ void tc_gemm_split_body(FERRO_TC_GEMM_SPLIT_PARAMS) {
    const int batch = blockIdx.z / splits;
    const int k_begin = (blockIdx.z - batch * splits) * k_per_split;
    GemmDenseStored a{gemm_stored_at(A, (long long)batch * stride_a, a_format), lda, a_format};
    GemmDenseStored b{gemm_stored_at(B, (long long)batch * stride_b, b_format), ldb, b_format};
    GemmOut p{partial + (size_t)blockIdx.z * M * N, N, 0};
    Tile::template run<!TA, TB>(a, b, p, M, N, k_begin, min(K, k_begin + k_per_split), 1.f, 0.f, vec_a, vec_b, vec_p);
}

#define FERRO_TC_GEMM_KERNELS(TRANSPOSES, TA, TB, FORMAT, IN)                                     \
    GEMM_KERNEL(sgemm_##TRANSPOSES##_tc_##FORMAT, tc_gemm_body, FERRO_TC_GEMM_PARAMS,              \
                FERRO_TC_GEMM_ARGS, 2, TensorCoreTile<IN, 64, 64>, TA, TB)                        \
    GEMM_KERNEL(sgemm_##TRANSPOSES##_tc_##FORMAT##_split, tc_gemm_split_body,                     \
                FERRO_TC_GEMM_SPLIT_PARAMS, FERRO_TC_GEMM_SPLIT_ARGS, 2, TensorCoreTile<IN, 64, 64>, \
                TA, TB)
#define FERRO_TC_GEMM_FORMAT(FORMAT, IN)                                                          \
    FERRO_TC_GEMM_KERNELS(nn, false, false, FORMAT, IN)                                           \
    FERRO_TC_GEMM_KERNELS(nt, false, true, FORMAT, IN)                                            \
    FERRO_TC_GEMM_KERNELS(tn, true, false, FORMAT, IN)
FERRO_TC_GEMM_FORMAT(f16, TC_F16)
#if TC_AMPERE
FERRO_TC_GEMM_FORMAT(bf16, TC_BF16)
FERRO_TC_GEMM_FORMAT(tf32, TC_TF32)
#endif
