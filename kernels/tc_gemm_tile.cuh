// The tensor-core counterpart of gemm_tile.cuh's SGEMM tile, compute capability 8.0 and newer:
// one block computes a BM x BN tile of C = op(A) op(B) (64x64, 64x128 or 128x128, as gemm_tile)
// with mma.sync on bf16/f16 (m16n8k16) or tf32 (m16n8k8) operands, accumulated in f32, from
// operands read through gemm_tile's policy structs (a row-major matrix, NCHW activations in place,
// an im2col matrix gathered on the fly, ...). Nothing is packed or padded beforehand: elements
// past the matrix edges are zeros in shared memory, so M, N and K are free.
//
// Operands hold values already rounded to the format (the run stores them so: activations,
// activation gradients and the weights' rounded copies, src/exec/precision.rs), so converting
// them to the 16-bit format, or tf32's cvt.rna, is exact, and the only rounding left is f32
// accumulation's.
//
// Both shared tiles are k-contiguous (As[m][k], Bs[n][k]) in rows of 64 bytes (32 bf16/f16 or 16
// f32 values: one stage of K), XOR-swizzled in 16-byte chunks as tensor_core.cuh's tc_swizzled,
// so both are read with plain ldmatrix. Eight warps (2 along M x 4 along N) each own a
// (BM/2) x (BN/4) tile of 16x8 mma tiles whose accumulators stay in registers. The next stage's
// elements are gathered into registers while the tensor cores multiply the current one out of
// the other of two shared buffers (tensor_core.cuh's tc_staged_pipeline: one barrier per stage).
//
// How a thread gathers its share of a ROWS x BK operand slice, so that a warp's global reads are
// coalesced whichever way the operand is contiguous:
// - contiguous in k and vectorisable (the host vouches for 16-byte alignment): float4s, eight
//   lanes per 128-byte row segment;
// - contiguous in k, scalar: lanes along k (a warp reads one row's 32 consecutive elements);
// - contiguous along the rows and vectorisable (a channels-last operand read as K x rows: the
//   weight gradient's dy and im2col(x)): 4 consecutive rows of one k per load (8 bytes of 16-bit
//   values, 16 of f32; gathered one by one when the host cannot vouch for the alignment), a few
//   consecutive k per thread, stored as each row's piece of a chunk;
// - contiguous along the rows, not vectorisable (an im2col matrix's pixels): lanes along the
//   rows, each gathering one 16-byte chunk of k for its row and storing it at once.
#pragma once
#include "gemm_tile.cuh"
#include "tensor_core.cuh"

// Columns col and (when `second`) col + 1 of row `row` of C, alpha already applied: beta times
// the old values added when beta != 0, paired stores when vec allows: a stored Out's through
// gemm_store_stored, else any GemmOut-like `out` whose ptr(r, c) is the f32 element's address.
template <class Out>
__device__ __forceinline__ void tc_store_pair(const Out& out, int row, int col, float v0, float v1, bool second, int vec,
                                              float beta) {
    if constexpr (Out::stored) {
        float v[2] = {v0, v1};
        gemm_store_stored(out, row, col, v, second ? 2 : 1, vec && second, beta);
    } else if (vec && second) {
        float* dst = out.ptr(row, col);
        if (beta != 0.f) {
            const float2 old = *reinterpret_cast<const float2*>(dst);
            v0 += beta * old.x;
            v1 += beta * old.y;
        }
        *reinterpret_cast<float2*>(dst) = make_float2(v0, v1);
    } else {
        float* dst = out.ptr(row, col);
        *dst = beta != 0.f ? v0 + beta * *dst : v0;
        if (second) {
            float* next = out.ptr(row, col + 1);
            *next = beta != 0.f ? v1 + beta * *next : v1;
        }
    }
}

template <TcIn IN>
struct TcStage {
    static constexpr int ELEM = IN == TC_TF32 ? 4 : 2;  // bytes of a stored element
    static constexpr int BK = TC_ROW_BYTES / ELEM;     // k per stage
    static constexpr int PER_CHUNK = 16 / ELEM;        // k per 16-byte chunk
    // The shared byte offset of element (row, k) of a stage's tile.
    static __device__ __forceinline__ int offset(int row, int k) {
        return tc_swizzled(row, k / PER_CHUNK) + (k % PER_CHUNK) * ELEM;
    }
};

// `count` consecutive values as stored elements at shared address `dst`: 16-bit patterns two per
// word, or the f32 bits themselves for tf32 (the mma's operand conversion rounds them).
template <TcIn IN, int COUNT>
__device__ __forceinline__ void tc_store_elements(unsigned char* dst, const float* v) {
    if constexpr (IN == TC_TF32) {
        if constexpr (COUNT == 4) {
            *reinterpret_cast<float4*>(dst) = make_float4(v[0], v[1], v[2], v[3]);
        } else {
#pragma unroll
            for (int e = 0; e < COUNT; ++e) reinterpret_cast<float*>(dst)[e] = v[e];
        }
    } else if constexpr (COUNT == 1) {
        *reinterpret_cast<unsigned short*>(dst) = tc_to_16bit(v[0], IN);
    } else {
        unsigned words[COUNT / 2];
#pragma unroll
        for (int e = 0; e < COUNT / 2; ++e)
            words[e] = (unsigned)tc_to_16bit(v[2 * e], IN) | ((unsigned)tc_to_16bit(v[2 * e + 1], IN) << 16);
        if constexpr (COUNT == 8) {
            *reinterpret_cast<uint4*>(dst) = make_uint4(words[0], words[1], words[2], words[3]);
        } else if constexpr (COUNT == 4) {
            *reinterpret_cast<uint2*>(dst) = make_uint2(words[0], words[1]);
        } else {
#pragma unroll
            for (int e = 0; e < COUNT / 2; ++e) reinterpret_cast<unsigned*>(dst)[e] = words[e];
        }
    }
}

// This thread's share of one stage's ROWS x BK slice of an operand, in registers between its
// gather (`fetch`) and its store into shared memory (`stash`). IN_K: the operand's storage is
// ROWS x K (contiguous in k), else K x ROWS.
template <TcIn IN, int ROWS, bool IN_K, class Operand>
struct TcSlice {
    using S = TcStage<IN>;
    static constexpr int ELEMS = ROWS * S::BK / GEMM_THREADS;
    static constexpr int QUADS = ELEMS / 4;
    static constexpr int CHUNKS = ELEMS / S::PER_CHUNK;
    static_assert(QUADS * 4 == ELEMS && CHUNKS * S::PER_CHUNK == ELEMS, "whole quads and chunks per thread");
    float v[ELEMS];

    // Which element of the slice v[i] (or quad q, or chunk c) holds, per gathering scheme.
    static __device__ __forceinline__ void quad_at(int q, int& row, int& k) {
        const int f = q * GEMM_THREADS + threadIdx.x;
        row = f / (S::BK / 4);
        k = (f % (S::BK / 4)) * 4;
    }
    static __device__ __forceinline__ void scalar_at(int i, int& row, int& k) {
        const int e = i * GEMM_THREADS + threadIdx.x;
        row = e / S::BK;
        k = e % S::BK;
    }
    static __device__ __forceinline__ void chunk_at(int c, int& row, int& k) {
        const int idx = c * GEMM_THREADS + threadIdx.x;
        row = idx % ROWS;
        k = (idx / ROWS) * S::PER_CHUNK;
    }
    // A vectorisable operand contiguous along the rows: 4 consecutive rows (from `row`) of
    // ROWS4_K consecutive k (from `k`) per thread. A warp takes 8 k groups of 4 row groups, so
    // each k's loads cover 16 consecutive rows (32 bytes at 16 bits: whole sectors); the warps
    // take the remaining k groups, then rows.
    static constexpr int ROWS4_K = ELEMS / 4;
    static constexpr int K_GROUPS = S::BK / ROWS4_K;
    static_assert(K_GROUPS % 8 == 0, "whole warps of 8 k groups");
    static __device__ __forceinline__ void rows4_at(int& row, int& k) {
        const int t = threadIdx.x, warp = t / 32, k_warps = K_GROUPS / 8;
        k = (t % 8 + 8 * (warp % k_warps)) * ROWS4_K;
        row = ((t / 8) % 4 + 4 * (warp / k_warps)) * 4;
    }

    __device__ __forceinline__ void fetch(const Operand& op, int row0, int rows, int k0, int k_end, bool vec) {
        if constexpr (!IN_K && Operand::vectorizable) {
            int row, k;
            rows4_at(row, k);
            row += row0;
            k += k0;
#pragma unroll
            for (int e = 0; e < ROWS4_K; ++e) {
                const float4 f = gemm_quad(op, k + e, row, k + e < k_end ? rows - row : 0, vec);
                v[4 * e] = f.x;
                v[4 * e + 1] = f.y;
                v[4 * e + 2] = f.z;
                v[4 * e + 3] = f.w;
            }
            return;
        }
        if constexpr (IN_K && Operand::vectorizable) {
            if (vec) {
#pragma unroll
                for (int q = 0; q < QUADS; ++q) {
                    int row, k;
                    quad_at(q, row, k);
                    row += row0;
                    k += k0;
                    const float4 f = gemm_quad(op, row, k, row < rows ? k_end - k : 0, true);
                    v[4 * q] = f.x;
                    v[4 * q + 1] = f.y;
                    v[4 * q + 2] = f.z;
                    v[4 * q + 3] = f.w;
                }
                return;
            }
        }
        if (IN_K) {
#pragma unroll
            for (int i = 0; i < ELEMS; ++i) {
                int row, k;
                scalar_at(i, row, k);
                row += row0;
                k += k0;
                v[i] = row < rows && k < k_end ? op.at(row, k) : 0.f;
            }
            return;
        }
#pragma unroll
        for (int c = 0; c < CHUNKS; ++c) {
            int row, k;
            chunk_at(c, row, k);
            row += row0;
            k += k0;
#pragma unroll
            for (int e = 0; e < S::PER_CHUNK; ++e)
                v[c * S::PER_CHUNK + e] = row < rows && k + e < k_end ? op.at(k + e, row) : 0.f;
        }
    }

    __device__ __forceinline__ void stash(unsigned char* tile, bool vec) const {
        int row, k;
        if constexpr (!IN_K && Operand::vectorizable) {
            // Row j of the 4 goes to its k-contiguous row of the tile. A row group whose two
            // lowest bits differ stores its rows rotated by one: then each store's lanes hold rows
            // of both parities (the two halves of the banks, 64-byte rows) and of both swizzle
            // pairs, and with the k groups' chunks cover every bank equally (the fewest
            // wavefronts at 16-bit and tf32, 64- and 128-row tiles).
            rows4_at(row, k);
            const bool odd = ((row / 4) ^ (row / 8)) & 1;
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const int rotated = (j + 1) & 3;
                float w[ROWS4_K];
#pragma unroll
                for (int e = 0; e < ROWS4_K; ++e) w[e] = odd ? v[4 * e + rotated] : v[4 * e + j];
                tc_store_elements<IN, ROWS4_K>(tile + S::offset(row + (odd ? rotated : j), k), w);
            }
            return;
        }
        if (IN_K && Operand::vectorizable && vec) {
#pragma unroll
            for (int q = 0; q < QUADS; ++q) {
                quad_at(q, row, k);
                tc_store_elements<IN, 4>(tile + S::offset(row, k), &v[4 * q]);
            }
        } else if (IN_K) {
#pragma unroll
            for (int i = 0; i < ELEMS; ++i) {
                scalar_at(i, row, k);
                tc_store_elements<IN, 1>(tile + S::offset(row, k), &v[i]);
            }
        } else {
#pragma unroll
            for (int c = 0; c < CHUNKS; ++c) {
                chunk_at(c, row, k);
                tc_store_elements<IN, S::PER_CHUNK>(tile + S::offset(row, k), &v[c * S::PER_CHUNK]);
            }
        }
    }
};

// The block's BM x BN tile (blockIdx.y, blockIdx.x) of C = alpha * op(A) op(B) + beta * C summed
// over k_begin <= k < k_end (C not read when beta == 0), with gemm_tile's conventions: A_IN_K:
// A's storage is M x K, else K x M; B_IN_K: B's storage is N x K, else K x N; vec_a / vec_b
// allow float4 loads of a vectorisable operand contiguous in k; vec_c float2 stores of two
// consecutive columns of C (the host's float4 promise covers them); `out` says where (r, c) of C
// lies.
template <TcIn IN, int BM, int BN, bool A_IN_K, bool B_IN_K, class OperandA, class OperandB, class Out>
__device__ __forceinline__ void tc_gemm_tile(const OperandA& a, const OperandB& b, const Out& out, int M, int N,
                                             int k_begin, int k_end, float alpha, float beta, int vec_a, int vec_b,
                                             int vec_c) {
    using S = TcStage<IN>;
    constexpr int WARPS_M = 2, WARPS_N = 4;
    constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N, MT = WM / 16, NT = WN / 8;
    static_assert(WARPS_M * WARPS_N * 32 == GEMM_THREADS && MT * 16 == WM && NT % 2 == 0, "8 warps of whole mma tiles");
    constexpr int A_BYTES = BM * TC_ROW_BYTES, STAGE_BYTES = (BM + BN) * TC_ROW_BYTES;

    __shared__ __align__(128) unsigned char smem[2 * STAGE_BYTES];
    const unsigned smem_base = static_cast<unsigned>(__cvta_generic_to_shared(smem));
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int wm = warp / WARPS_N, wn = warp % WARPS_N;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    const bool va = OperandA::vectorizable && vec_a, vb = OperandB::vectorizable && vec_b;

    TcSlice<IN, BM, A_IN_K, OperandA> slice_a;
    TcSlice<IN, BN, B_IN_K, OperandB> slice_b;
    float acc[MT][NT][4];
    tc_zero(acc);

    auto compute = [&](int stage) {
        const unsigned a_base = smem_base + stage * STAGE_BYTES, b_base = a_base + A_BYTES;
        auto load_b = [&](int ks, unsigned (&bf)[NT][2]) { tc_load_b_k_contiguous<IN>(bf, b_base, wn * WN, ks, lane); };
        tc_mma_stage<IN>(acc, a_base, wm * WM, lane, load_b);
    };

    // The next stage's gathers are in flight while the tensor cores work on this one.
    auto fetch = [&](int k0) {
        slice_a.fetch(a, m0, M, k0, k_end, va);
        slice_b.fetch(b, n0, N, k0, k_end, vb);
    };
    auto stash = [&](int buffer) {
        unsigned char* tile = smem + buffer * STAGE_BYTES;
        slice_a.stash(tile, va);
        slice_b.stash(tile + A_BYTES, vb);
    };
    tc_staged_pipeline(k_begin, k_end, S::BK, fetch, stash, compute);

    auto store = [&](int row, int col, float v0, float v1) {
        tc_store_pair(out, row, col, alpha * v0, alpha * v1, col + 1 < N, vec_c, beta);
    };
    tc_store_tiles(acc, m0 + wm * WM, n0 + wn * WN, lane, M, N, store);
}

// tc_gemm_tile as a tile engine of the GEMM bodies (gemm_kernels.cuh, conv_gemm.cuh), with
// SgemmTile's interface.
template <TcIn IN, int BM, int BN>
struct TensorCoreTile {
    template <bool A_IN_K, bool B_IN_K, class OperandA, class OperandB, class Out>
    static __device__ __forceinline__ void run(const OperandA& a, const OperandB& b, const Out& out, int M, int N,
                                               int k_begin, int k_end, float alpha, float beta, int vec_a, int vec_b,
                                               int vec_out) {
        tc_gemm_tile<IN, BM, BN, A_IN_K, B_IN_K>(a, b, out, M, N, k_begin, k_end, alpha, beta, vec_a, vec_b, vec_out);
    }
};
