// Single-precision GEMM and the bias steps of GEMM-based layers (linear, im2col convolution).
//
// C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b], row-major, batch index = blockIdx.z.
// One block computes a 64x64 tile of C with 256 threads, each holding a 4x4 micro-tile in
// registers. Both operand tiles live in shared memory k-major (As[k][m], Bs[k][n]) so the inner
// product reads one float4 of each per k step. Global loads are float4 when the host says the
// operand is 16-byte aligned with a leading dimension divisible by 4, scalar and bounds-checked at
// the edges otherwise. The next k-slice is fetched into registers while the current one is used.
//
// Split-K, for grids too small to fill the GPU: the `_split` kernels give each block one slice of
// K and store its partial tile; `splitk_reduce` sums the partials in a fixed order (deterministic,
// no atomics) and applies alpha and beta. The host chooses the split (src/ops/gemm/mod.rs).
#include "common.cuh"

#define GEMM_BM 64
#define GEMM_BN 64
#define GEMM_BK 16
#define GEMM_THREADS 256
// Row padding of the k-major tiles: keeps rows 16-byte aligned for float4 reads and halves the
// bank conflicts of the transposing stores.
#define GEMM_PAD 4

// Four consecutive elements p[0..3], of which `avail` (possibly <= 0) are inside the matrix.
__device__ __forceinline__ float4 gemm_load4(const float* p, int avail, bool vec) {
    if (vec && avail >= 4) {
        return *reinterpret_cast<const float4*>(p);
    }
    float4 r = make_float4(0.f, 0.f, 0.f, 0.f);
    if (avail > 0) r.x = p[0];
    if (avail > 1) r.y = p[1];
    if (avail > 2) r.z = p[2];
    if (avail > 3) r.w = p[3];
    return r;
}

// Where element `i` (0..3) of this thread's share of a 64 x 16 operand slice lies in the slice:
// (row, k) of the 64-row tile axis and the 16-deep k axis. CONTIGUOUS_IN_K means the operand's
// contiguous direction is k (A untransposed, B transposed), otherwise it is the row axis.
// Vectorised operands give each thread 4 consecutive contiguous-direction elements (one float4).
// Scalar ones interleave threads instead (element i is slice element i * 256 + thread), so the 32
// lanes of a warp read consecutive addresses.
template <bool CONTIGUOUS_IN_K>
__device__ __forceinline__ void gemm_slot(int i, bool vec, int& row, int& k) {
    int t = threadIdx.x;
    int e = i * GEMM_THREADS + t;
    if (CONTIGUOUS_IN_K) {
        row = vec ? t / 4 : e / GEMM_BK;
        k = vec ? (t % 4) * 4 + i : e % GEMM_BK;
    } else {
        k = vec ? t / 16 : e / GEMM_BM;
        row = vec ? (t % 16) * 4 + i : e % GEMM_BM;
    }
}

// Loads this thread's share of the slice at (tile_start, k0) into registers, zero outside the
// matrix (extent rows, K deep).
template <bool CONTIGUOUS_IN_K>
__device__ __forceinline__ float4 gemm_fetch(const float* base, int ld, int tile_start, int extent,
                                             int k0, int K, bool vec) {
    int row, k;
    gemm_slot<CONTIGUOUS_IN_K>(0, vec, row, k);
    row += tile_start;
    k += k0;
    if (vec) {
        int avail = CONTIGUOUS_IN_K ? (row < extent ? K - k : 0) : (k < K ? extent - row : 0);
        const float* p = CONTIGUOUS_IN_K ? base + (size_t)row * ld + k : base + (size_t)k * ld + row;
        return gemm_load4(p, avail, true);
    }
    float v[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        gemm_slot<CONTIGUOUS_IN_K>(i, false, row, k);
        row += tile_start;
        k += k0;
        bool inside = row < extent && k < K;
        size_t at = CONTIGUOUS_IN_K ? (size_t)row * ld + k : (size_t)k * ld + row;
        v[i] = inside ? base[at] : 0.f;
    }
    return make_float4(v[0], v[1], v[2], v[3]);
}

// Stores a fetched share into the k-major tile `s` (GEMM_BK rows of GEMM_BM + GEMM_PAD).
template <bool CONTIGUOUS_IN_K>
__device__ __forceinline__ void gemm_stash(float (*s)[GEMM_BM + GEMM_PAD], float4 f, bool vec) {
    if (vec && !CONTIGUOUS_IN_K) {
        *reinterpret_cast<float4*>(&s[threadIdx.x / 16][(threadIdx.x % 16) * 4]) = f;
        return;
    }
    float v[4] = {f.x, f.y, f.z, f.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        int row, k;
        gemm_slot<CONTIGUOUS_IN_K>(i, vec, row, k);
        s[k][row] = v[i];
    }
}

// The block's 64x64 tile of C = alpha * op(A) * op(B) + beta * C for one matrix of the batch
// (A, B and C point at that matrix), summed over k_begin <= k < k_end.
template <bool TRANS_A, bool TRANS_B>
__device__ __forceinline__ void sgemm_tile(const float* __restrict__ A, const float* __restrict__ B,
                                           float* __restrict__ C, int M, int N, int k_begin,
                                           int k_end, int lda, int ldb, int ldc, float alpha,
                                           float beta, int vec_a, int vec_b, int vec_c) {
    __shared__ __align__(16) float As[GEMM_BK][GEMM_BM + GEMM_PAD];
    __shared__ __align__(16) float Bs[GEMM_BK][GEMM_BN + GEMM_PAD];

    int m0 = blockIdx.y * GEMM_BM;
    int n0 = blockIdx.x * GEMM_BN;
    int tx = threadIdx.x % 16;
    int ty = threadIdx.x / 16;

    // A untransposed is m x k (contiguous in k); B untransposed is k x n (contiguous in n).
    const bool a_in_k = !TRANS_A;
    const bool b_in_k = TRANS_B;

    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;

    float4 next_a = gemm_fetch<a_in_k>(A, lda, m0, M, k_begin, k_end, vec_a);
    float4 next_b = gemm_fetch<b_in_k>(B, ldb, n0, N, k_begin, k_end, vec_b);
    for (int k0 = k_begin; k0 < k_end; k0 += GEMM_BK) {
        gemm_stash<a_in_k>(As, next_a, vec_a);
        gemm_stash<b_in_k>(Bs, next_b, vec_b);
        __syncthreads();
        if (k0 + GEMM_BK < k_end) {
            next_a = gemm_fetch<a_in_k>(A, lda, m0, M, k0 + GEMM_BK, k_end, vec_a);
            next_b = gemm_fetch<b_in_k>(B, ldb, n0, N, k0 + GEMM_BK, k_end, vec_b);
        }
#pragma unroll
        for (int kk = 0; kk < GEMM_BK; ++kk) {
            float4 a = *reinterpret_cast<const float4*>(&As[kk][ty * 4]);
            float4 b = *reinterpret_cast<const float4*>(&Bs[kk][tx * 4]);
            float av[4] = {a.x, a.y, a.z, a.w};
            float bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
        }
        __syncthreads();
    }

    int col = n0 + tx * 4;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        int row = m0 + ty * 4 + i;
        if (row >= M) break;
        float* c = C + (size_t)row * ldc + col;
        float v[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) v[j] = alpha * acc[i][j];
        if (vec_c && col + 3 < N) {
            if (beta != 0.f) {
                float4 old = *reinterpret_cast<const float4*>(c);
                v[0] += beta * old.x;
                v[1] += beta * old.y;
                v[2] += beta * old.z;
                v[3] += beta * old.w;
            }
            *reinterpret_cast<float4*>(c) = make_float4(v[0], v[1], v[2], v[3]);
        } else {
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                if (col + j < N) c[j] = beta != 0.f ? v[j] + beta * c[j] : v[j];
            }
        }
    }
}

// Four blocks per SM: caps registers at 64 (ptxas needs no spills for that) to keep 32 warps
// resident for latency hiding. The host's split-K planner (src/ops/gemm/mod.rs,
// GEMM_BLOCKS_PER_SM) counts on this minimum. Batch index = blockIdx.z.
#define FERRO_SGEMM_KERNEL(NAME, TA, TB)                                                          \
    extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 4)                                  \
        NAME(const float* A, const float* B, float* C, int M, int N, int K, int lda, int ldb,     \
             int ldc, long long stride_a, long long stride_b, long long stride_c, float alpha,    \
             float beta, int vec_a, int vec_b, int vec_c) {                                       \
        sgemm_tile<TA, TB>(A + blockIdx.z * stride_a, B + blockIdx.z * stride_b,                  \
                           C + blockIdx.z * stride_c, M, N, 0, K, lda, ldb, ldc, alpha, beta,     \
                           vec_a, vec_b, vec_c);                                                  \
    }

FERRO_SGEMM_KERNEL(sgemm_nn, false, false)
FERRO_SGEMM_KERNEL(sgemm_nt, false, true)
FERRO_SGEMM_KERNEL(sgemm_tn, true, false)
FERRO_SGEMM_KERNEL(sgemm_tt, true, true)

// Split-K, first pass: blockIdx.z = batch * splits + split. Each block sums its tile over one
// K-slice [split * k_per_split, min(K, (split + 1) * k_per_split)) and stores the plain product
// (no alpha, no beta) as partial matrix blockIdx.z of M x N. k_per_split is a multiple of
// GEMM_BK, so a slice starts 16-byte aligned wherever its operand's rows do. Three blocks per SM:
// the slice's bounds need the registers that the 64-register cap of four would spill.
#define FERRO_SGEMM_SPLIT_KERNEL(NAME, TA, TB)                                                    \
    extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 3)                                  \
        NAME(const float* A, const float* B, float* partial, int M, int N, int K, int lda,        \
             int ldb, long long stride_a, long long stride_b, int splits, int k_per_split,       \
             int vec_a, int vec_b, int vec_p) {                                                   \
        int batch = blockIdx.z / splits;                                                          \
        int k_begin = (blockIdx.z - batch * splits) * k_per_split;                                \
        sgemm_tile<TA, TB>(A + batch * stride_a, B + batch * stride_b,                            \
                           partial + (size_t)blockIdx.z * M * N, M, N, k_begin,                   \
                           min(K, k_begin + k_per_split), lda, ldb, N, 1.f, 0.f, vec_a, vec_b,    \
                           vec_p);                                                                \
    }

FERRO_SGEMM_SPLIT_KERNEL(sgemm_nn_split, false, false)
FERRO_SGEMM_SPLIT_KERNEL(sgemm_nt_split, false, true)
FERRO_SGEMM_SPLIT_KERNEL(sgemm_tn_split, true, false)
FERRO_SGEMM_SPLIT_KERNEL(sgemm_tt_split, true, true)

// Split-K, second pass: C[b][e] = alpha * (sum of the splits' partials in split order) +
// beta * C[b][e] (C not read when beta == 0), one thread per element e of the M x N matrices of
// all batches. The fixed order makes the result the same bits on every run.
extern "C" __global__ void splitk_reduce(const float* partial, float* C, int mn, int splits,
                                         int total, long long stride_c, float alpha, float beta) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= total) return;
    int batch = idx / mn;
    int e = idx - batch * mn;
    const float* p = partial + (size_t)batch * splits * mn + e;
    float sum = p[0];
    for (int s = 1; s < splits; ++s) sum += p[(size_t)s * mn];
    float* c = C + batch * stride_c + e;
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
