// The bodies of the plain GEMM kernels, written once over a tile engine (gemm_tile.cuh's
// SgemmTile for gemm.cu, tc_gemm_tile.cuh's TensorCoreTile for gemm_tc.cu):
// C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b], row-major, batch index = blockIdx.z; TA / TB:
// A / B stored transposed.
#pragma once
#include "gemm_tile.cuh"

#define FERRO_GEMM_PARAMS                                                                         \
    const float *A, const float *B, float *C, int M, int N, int K, int lda, int ldb, int ldc,     \
        long long stride_a, long long stride_b, long long stride_c, float alpha, float beta,      \
        int vec_a, int vec_b, int vec_c
#define FERRO_GEMM_ARGS                                                                           \
    A, B, C, M, N, K, lda, ldb, ldc, stride_a, stride_b, stride_c, alpha, beta, vec_a, vec_b, vec_c
template <class Tile, bool TA, bool TB>
__device__ __forceinline__ void gemm_body(FERRO_GEMM_PARAMS) {
    GemmDense a{A + blockIdx.z * stride_a, lda};
    GemmDense b{B + blockIdx.z * stride_b, ldb};
    GemmOut c{C + blockIdx.z * stride_c, ldc, 0};
    Tile::template run<!TA, TB>(a, b, c, M, N, 0, K, alpha, beta, vec_a, vec_b, vec_c);
}

// Split-K, first pass: blockIdx.z = batch * splits + split. Each block sums its tile over one
// K-slice [split * k_per_split, min(K, (split + 1) * k_per_split)) and stores the plain product
// (no alpha, no beta) as partial matrix blockIdx.z of M x N, which gemm.cu's splitk_reduce sums.
// k_per_split is a multiple of GEMM_BK, so a slice starts 16-byte aligned wherever its operand's
// rows do.
#define FERRO_GEMM_SPLIT_PARAMS                                                                   \
    const float *A, const float *B, float *partial, int M, int N, int K, int lda, int ldb,        \
        long long stride_a, long long stride_b, int splits, int k_per_split, int vec_a, int vec_b, \
        int vec_p
#define FERRO_GEMM_SPLIT_ARGS                                                                     \
    A, B, partial, M, N, K, lda, ldb, stride_a, stride_b, splits, k_per_split, vec_a, vec_b, vec_p
template <class Tile, bool TA, bool TB>
__device__ __forceinline__ void gemm_split_body(FERRO_GEMM_SPLIT_PARAMS) {
    int batch = blockIdx.z / splits;
    int k_begin = (blockIdx.z - batch * splits) * k_per_split;
    GemmDense a{A + batch * stride_a, lda};
    GemmDense b{B + batch * stride_b, ldb};
    GemmOut p{partial + (size_t)blockIdx.z * M * N, N, 0};
    Tile::template run<!TA, TB>(a, b, p, M, N, k_begin, min(K, k_begin + k_per_split), 1.f, 0.f, vec_a, vec_b, vec_p);
}
