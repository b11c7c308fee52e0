// The tiled SGEMM core shared by the GEMM kernels (gemm.cu) and the implicit-im2col convolution
// GEMMs (conv.cu).
//
// One block computes a BM x BN tile of C = alpha * op(A) * op(B) + beta * C (64x64 or 128x128)
// with 256 threads in a 16x16 grid, each holding a (BM/16) x (BN/16) micro-tile in registers as
// 4x4 blocks 64 rows or columns apart. Both operand tiles live in shared memory k-major
// (As[k][m], Bs[k][n]) so the inner product reads float4s of each per k step, conflict-free. The
// next k-slice is fetched into registers while the current one is used. The larger tile reads
// each operand half as often from memory for the same work (32 instead of 16 FLOP per byte).
//
// Operands are read through small policy structs that say where element (r, c) of their storage
// matrix lies: a plain row-major matrix (`GemmDense`), an image-major view of NCHW activations
// (`GemmImageMajor`: the [channels, images * plane] matrix the convolution GEMMs work on, read in
// place instead of rearranged), or the im2col matrix of an input gathered on the fly
// (`GemmIm2col`: no column buffer in memory). Global loads are float4 when the policy allows it
// (`vectorizable`, and `load4` reads elements (r, c..c+3)) and the host says the operand is
// 16-byte aligned with rows of a multiple of 4 floats; scalar and bounds-checked at the edges
// otherwise. A vectorizable operand keeps its float4 layout when the host cannot vouch for the
// alignment and gathers the same 4 elements one at a time: a main loop that could take either
// layout at run time held both layouts' addresses (about 90 more registers in the 128x128 tile,
// spills on sm_90).
#pragma once
#include "common.cuh"
#include "stored.cuh"

#define GEMM_BK 16
#define GEMM_THREADS 256
// Row padding of the k-major tiles: keeps rows 16-byte aligned for float4 reads and halves the
// bank conflicts of the transposing stores.
#define GEMM_PAD 4

// A row-major matrix: (r, c) at base + r * ld + c.
struct GemmDense {
    static constexpr bool vectorizable = true;
    const float* base;
    int ld;
    __device__ __forceinline__ const float* ptr(int r, int c) const { return base + (size_t)r * ld + c; }
    __device__ __forceinline__ float at(int r, int c) const { return *ptr(r, c); }
    __device__ __forceinline__ float4 load4(int r, int c, int avail) const;
};

// The [rows, images * plane] matrix whose row r of image i is the plane at
// base + i * image_stride + r * plane (an NCHW tensor's channels as rows), stored as `format`
// (f32, or a 16-bit run's bf16/fp16 activations read in place: 8 bytes per 4 values). Four
// consecutive columns stay in one image when plane is a multiple of 4, which the host requires
// for vectorised loads.
struct GemmImageMajor {
    static constexpr bool vectorizable = true;
    const void* base;
    int format;
    int plane;
    long long image_stride;
    __device__ __forceinline__ long long index(int r, int c) const {
        int image = c / plane;
        return image * image_stride + (long long)r * plane + (c - image * plane);
    }
    __device__ __forceinline__ float at(int r, int c) const { return ferro_load(base, index(r, c), format); }
    __device__ __forceinline__ float4 load4(int r, int c, int avail) const;
};

// The input position (image, ih, iw) that output pixel `c` (image * OH * OW + oh * OW + ow, plane
// = OH * OW) reads through tap (ki, kj) of a window: ih = oh * sh - ph + ki * dh, iw = ow * sw -
// pw + kj * dw; false in the padding. The im2col gathers of either layout (GemmIm2col here,
// conv_gemm.cuh's channels-last one) share it.
__device__ __forceinline__ bool conv_tap_input(int c, int ki, int kj, int H, int W, int sh, int sw, int ph, int pw,
                                               int dh, int dw, int OW, int plane, int& image, int& ih, int& iw) {
    image = c / plane;
    int q = c - image * plane;
    int oh = q / OW;
    ih = oh * sh - ph + ki * dh;
    iw = (q - oh * OW) * sw - pw + kj * dw;
    return ih >= 0 && ih < H && iw >= 0 && iw < W;
}

// The im2col matrix of NCHW input `x` (src/ops/conv/mod.rs fixes its layout): row
// (ch * KH + ki) * KW + kj, column image * OH * OW + oh * OW + ow holds x[image][ch][ih][iw] with
// ih = oh * sh - ph + ki * dh, iw = ow * sw - pw + kj * dw, or 0 in the padding. x is stored as
// `format` (a 16-bit run's activations read in place). Gathered one element at a time, never
// stored.
struct GemmIm2col {
    static constexpr bool vectorizable = false;
    const void* x;
    int format;
    int H, W, KH, KW, sh, sw, ph, pw, dh, dw, OW, plane;
    long long image_stride;
    __device__ __forceinline__ float at(int r, int c) const {
        int taps = KH * KW;
        int ch = r / taps;
        int tap = r - ch * taps;
        int ki = tap / KW;
        int image, ih, iw;
        if (!conv_tap_input(c, ki, tap - ki * KW, H, W, sh, sw, ph, pw, dh, dw, OW, plane, image, ih, iw)) return 0.f;
        return ferro_load(x, image * image_stride + ((long long)ch * H + ih) * W + iw, format);
    }
};

// Where the tile writes C: (r, c) at base + r * plane + (c / plane) * image_stride + c % plane.
// A plain row-major matrix is plane = its column count, image_stride = 0; an NCHW output is
// plane = OH * OW, image_stride = channels * plane.
struct GemmOut {
    static constexpr bool stored = false;
    float* base;
    int plane;
    long long image_stride;
    __device__ __forceinline__ float* ptr(int r, int c) const {
        int image = c / plane;
        return base + image * image_stride + (size_t)r * plane + (c - image * plane);
    }
};

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

__device__ __forceinline__ float4 GemmDense::load4(int r, int c, int avail) const { return gemm_load4(ptr(r, c), avail, true); }

// Element i of a buffer stored as `format` (stored.cuh's codes): where a matrix of it starts.
__device__ __forceinline__ const void* gemm_stored_at(const void* p, long long i, int format) {
    return static_cast<const char*>(p) + i * (format == FERRO_F32 ? 4 : 2);
}

// GemmOut over a buffer stored as f32, bf16 or fp16 (a 16-bit run's activations and their
// gradients), with an optional f32 bias per column (or, bias_rows, per row: an NCHW convolution
// output's rows are its channels) added before the one rounding store (a biased layer output
// rounds once, as the CPU's emulation does). The tiles store through gemm_store_stored for every
// Out whose `stored` is true.
struct GemmOutStored {
    static constexpr bool stored = true;
    void* base;
    int plane;
    long long image_stride;
    int format;
    const float* bias;
    int bias_rows;
    __device__ __forceinline__ long long index(int r, int c) const {
        int image = c / plane;
        return image * image_stride + (long long)r * plane + (c - image * plane);
    }
};

// `count` (1 to 4) consecutive columns col.. of row `row` of a stored Out, alpha already applied
// to v: beta times the old values and the bias added, then one rounding store each; `vec`: the
// values are one aligned run (count 4: ferro_store4; count 2: one 8-byte or 4-byte store), as
// the host's vec_c promises.
template <class Out>
__device__ __forceinline__ void gemm_store_stored(const Out& out, int row, int col, float* v, int count, bool vec,
                                                  float beta) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        if (j >= count) break;
        if (beta != 0.f) v[j] += beta * ferro_load(out.base, out.index(row, col + j), out.format);
        if (out.bias) v[j] += out.bias[out.bias_rows ? row : col + j];
    }
    const long long i = out.index(row, col);
    if (vec && count == 4) {
        ferro_store4(out.base, i, make_float4(v[0], v[1], v[2], v[3]), out.format);
    } else if (vec && count == 2) {
        if (out.format == FERRO_F32) {
            *reinterpret_cast<float2*>(static_cast<float*>(out.base) + i) = make_float2(v[0], v[1]);
        } else {
            *reinterpret_cast<unsigned*>(static_cast<unsigned short*>(out.base) + i) =
                static_cast<unsigned>(ferro_narrow16(v[0], out.format)) | (static_cast<unsigned>(ferro_narrow16(v[1], out.format)) << 16);
        }
    } else {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            if (j >= count) break;
            ferro_store(out.base, out.index(row, col + j), v[j], out.format);
        }
    }
}

// Elements (r, c..c+3) of an operand gathered one at a time, of which `avail` (possibly <= 0)
// are inside the matrix: a vectorised gather's load4 at a matrix edge.
template <class Operand>
__device__ __forceinline__ float4 gemm_gather4(const Operand& op, int r, int c, int avail) {
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    if (avail > 0) v.x = op.at(r, c);
    if (avail > 1) v.y = op.at(r, c + 1);
    if (avail > 2) v.z = op.at(r, c + 2);
    if (avail > 3) v.w = op.at(r, c + 3);
    return v;
}

// Elements (r, c..c+3) of a vectorizable operand, of which `avail` (possibly <= 0) are inside
// the matrix: one load4 where the host vouched for the alignment (`vec`), else gathered.
template <class Operand>
__device__ __forceinline__ float4 gemm_quad(const Operand& op, int r, int c, int avail, bool vec) {
    if (avail <= 0) return make_float4(0.f, 0.f, 0.f, 0.f);
    return vec ? op.load4(r, c, avail) : gemm_gather4(op, r, c, avail);
}

// A row-major matrix stored as f32, bf16 or fp16: a 16-bit run's activations and activation
// gradients read in place. Vectorised, load4 reads 4 values in one 16-byte (f32) or 8-byte
// (16-bit) load; the host vouches for the alignment as GemmDense's.
struct GemmDenseStored {
    static constexpr bool vectorizable = true;
    const void* base;
    int ld;
    int format;
    __device__ __forceinline__ float at(int r, int c) const { return ferro_load(base, (long long)r * ld + c, format); }
    __device__ __forceinline__ float4 load4(int r, int c, int avail) const {
        return avail >= 4 ? ferro_load4(base, (long long)r * ld + c, format) : gemm_gather4(*this, r, c, avail);
    }
};

__device__ __forceinline__ float4 GemmImageMajor::load4(int r, int c, int avail) const {
    return avail >= 4 ? ferro_load4(base, index(r, c), format) : gemm_gather4(*this, r, c, avail);
}

__device__ __forceinline__ float gemm_lane(const float4& f, int j) {
    return j == 0 ? f.x : j == 1 ? f.y : j == 2 ? f.z : f.w;
}

// One thread's share of a ROWS x 16 operand slice: ROWS / 16 elements as ROWS / 64 float4s.
template <int ROWS>
struct GemmFrag {
    float4 v[ROWS / 64];
};

// Where element `i` (0 .. ROWS/16 - 1) of this thread's share of a ROWS x 16 operand slice lies
// in the slice: (row, k) of the ROWS-row tile axis and the 16-deep k axis. CONTIGUOUS_IN_K means
// the operand's contiguous direction is k (A untransposed, B transposed), otherwise it is the
// row axis. Vectorised operands give each thread float4s of 4 consecutive contiguous-direction
// elements (element i is lane i % 4 of float4 i / 4). Scalar ones interleave threads instead
// (element i is slice element i * 256 + thread), so the 32 lanes of a warp read consecutive
// addresses.
template <bool CONTIGUOUS_IN_K, int ROWS>
__device__ __forceinline__ void gemm_slot(int i, bool vec, int& row, int& k) {
    int t = threadIdx.x;
    if (vec) {
        int f = (i / 4) * GEMM_THREADS + t;
        if (CONTIGUOUS_IN_K) {
            row = f / 4;
            k = (f % 4) * 4 + i % 4;
        } else {
            k = f / (ROWS / 4);
            row = (f % (ROWS / 4)) * 4 + i % 4;
        }
        return;
    }
    int e = i * GEMM_THREADS + t;
    if (CONTIGUOUS_IN_K) {
        row = e / GEMM_BK;
        k = e % GEMM_BK;
    } else {
        k = e / ROWS;
        row = e % ROWS;
    }
}

// Loads this thread's share of the slice at (tile_start, k0) into registers, zero outside the
// matrix (extent rows, K deep). The storage element of (row, k) is (row, k) when
// CONTIGUOUS_IN_K, else (k, row). A vectorizable operand's float4s are single loads when `vec`
// (the host's alignment flag), else gathered.
template <bool CONTIGUOUS_IN_K, int ROWS, class Operand>
__device__ __forceinline__ GemmFrag<ROWS> gemm_fetch(const Operand& op, int tile_start, int extent, int k0,
                                                     int K, bool vec) {
    GemmFrag<ROWS> frag;
    int row, k;
    if constexpr (Operand::vectorizable) {
#pragma unroll
        for (int q = 0; q < ROWS / 64; ++q) {
            gemm_slot<CONTIGUOUS_IN_K, ROWS>(q * 4, true, row, k);
            row += tile_start;
            k += k0;
            int avail = CONTIGUOUS_IN_K ? (row < extent ? K - k : 0) : (k < K ? extent - row : 0);
            frag.v[q] = CONTIGUOUS_IN_K ? gemm_quad(op, row, k, avail, vec) : gemm_quad(op, k, row, avail, vec);
        }
        return frag;
    }
#pragma unroll
    for (int q = 0; q < ROWS / 64; ++q) {
        float v[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            gemm_slot<CONTIGUOUS_IN_K, ROWS>(q * 4 + j, false, row, k);
            row += tile_start;
            k += k0;
            bool inside = row < extent && k < K;
            v[j] = inside ? (CONTIGUOUS_IN_K ? op.at(row, k) : op.at(k, row)) : 0.f;
        }
        frag.v[q] = make_float4(v[0], v[1], v[2], v[3]);
    }
    return frag;
}

// Stores a fetched share into the k-major tile `s` (GEMM_BK rows of ROWS + GEMM_PAD); `vec`: the
// share is in the float4 layout (a vectorizable operand's, aligned or gathered).
template <bool CONTIGUOUS_IN_K, int ROWS>
__device__ __forceinline__ void gemm_stash(float (*s)[ROWS + GEMM_PAD], const GemmFrag<ROWS>& frag, bool vec) {
#pragma unroll
    for (int q = 0; q < ROWS / 64; ++q) {
        int row, k;
        if (vec && !CONTIGUOUS_IN_K) {
            gemm_slot<CONTIGUOUS_IN_K, ROWS>(q * 4, true, row, k);
            *reinterpret_cast<float4*>(&s[k][row]) = frag.v[q];
            continue;
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            gemm_slot<CONTIGUOUS_IN_K, ROWS>(q * 4 + j, vec, row, k);
            s[k][row] = gemm_lane(frag.v[q], j);
        }
    }
}

// This thread's STRIPS float4s of one k-row of a shared tile, at `first` and every 64 after.
template <int STRIPS>
__device__ __forceinline__ void gemm_row(const float* row, int first, float* v) {
#pragma unroll
    for (int s = 0; s < STRIPS; ++s) {
        float4 f = *reinterpret_cast<const float4*>(&row[s * 64 + first]);
        v[4 * s] = f.x;
        v[4 * s + 1] = f.y;
        v[4 * s + 2] = f.z;
        v[4 * s + 3] = f.w;
    }
}

// The block's BM x BN tile (blockIdx.y, blockIdx.x) of C = alpha * op(A) * op(B) + beta * C,
// op(A) M x K and op(B) K x N, summed over k_begin <= k < k_end. A_IN_K: A's storage is M x K
// (contiguous in k), else K x M; B_IN_K: B's storage is N x K, else K x N. vec_a / vec_b allow
// float4 loads of a vectorizable operand, vec_c float4 stores of 4 consecutive columns of C.
// `out` says where (r, c) of C lies: a GemmOut, or any struct with the same `ptr(r, c)`.
template <int BM, int BN, bool A_IN_K, bool B_IN_K, class OperandA, class OperandB, class Out>
__device__ __forceinline__ void gemm_tile(const OperandA& a, const OperandB& b, const Out& out, int M,
                                          int N, int k_begin, int k_end, float alpha, float beta,
                                          int vec_a, int vec_b, int vec_c) {
    constexpr int SM = BM / 64;  // 4-row strips of a thread's micro-tile, 64 rows apart
    constexpr int SN = BN / 64;
    __shared__ __align__(16) float As[GEMM_BK][BM + GEMM_PAD];
    __shared__ __align__(16) float Bs[GEMM_BK][BN + GEMM_PAD];

    int m0 = blockIdx.y * BM;
    int n0 = blockIdx.x * BN;
    int tx = threadIdx.x % 16;
    int ty = threadIdx.x / 16;
    constexpr bool va = OperandA::vectorizable, vb = OperandB::vectorizable;

    float acc[4 * SM][4 * SN];
#pragma unroll
    for (int i = 0; i < 4 * SM; ++i)
#pragma unroll
        for (int j = 0; j < 4 * SN; ++j) acc[i][j] = 0.f;

    GemmFrag<BM> next_a = gemm_fetch<A_IN_K, BM>(a, m0, M, k_begin, k_end, vec_a);
    GemmFrag<BN> next_b = gemm_fetch<B_IN_K, BN>(b, n0, N, k_begin, k_end, vec_b);
    for (int k0 = k_begin; k0 < k_end; k0 += GEMM_BK) {
        gemm_stash<A_IN_K, BM>(As, next_a, va);
        gemm_stash<B_IN_K, BN>(Bs, next_b, vb);
        __syncthreads();
        if (k0 + GEMM_BK < k_end) {
            next_a = gemm_fetch<A_IN_K, BM>(a, m0, M, k0 + GEMM_BK, k_end, vec_a);
            next_b = gemm_fetch<B_IN_K, BN>(b, n0, N, k0 + GEMM_BK, k_end, vec_b);
        }
#pragma unroll
        for (int kk = 0; kk < GEMM_BK; ++kk) {
            float av[4 * SM], bv[4 * SN];
            gemm_row<SM>(As[kk], ty * 4, av);
            gemm_row<SN>(Bs[kk], tx * 4, bv);
#pragma unroll
            for (int i = 0; i < 4 * SM; ++i)
#pragma unroll
                for (int j = 0; j < 4 * SN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
        }
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < 4 * SM; ++i) {
        int row = m0 + (i / 4) * 64 + ty * 4 + i % 4;
        if (row >= M) break;
#pragma unroll
        for (int s = 0; s < SN; ++s) {
            int col = n0 + s * 64 + tx * 4;
            float v[4];
#pragma unroll
            for (int j = 0; j < 4; ++j) v[j] = alpha * acc[i][4 * s + j];
            if constexpr (Out::stored) {
                if (col < N) gemm_store_stored(out, row, col, v, min(4, N - col), vec_c && col + 3 < N, beta);
            } else if (vec_c && col + 3 < N) {
                float* c = out.ptr(row, col);
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
                    if (col + j < N) {
                        float* c = out.ptr(row, col + j);
                        *c = beta != 0.f ? v[j] + beta * *c : v[j];
                    }
                }
            }
        }
    }
}

// gemm_tile as a tile engine of the GEMM bodies written once for it and for the tensor-core tiles
// (gemm_kernels.cuh, conv_gemm.cuh): Tile::template run<A_IN_K, B_IN_K>(...) computes blockIdx's
// tile with gemm_tile's arguments.
template <int BM, int BN>
struct SgemmTile {
    template <bool A_IN_K, bool B_IN_K, class OperandA, class OperandB, class Out>
    static __device__ __forceinline__ void run(const OperandA& a, const OperandB& b, const Out& out, int M, int N,
                                               int k_begin, int k_end, float alpha, float beta, int vec_a, int vec_b,
                                               int vec_out) {
        gemm_tile<BM, BN, A_IN_K, B_IN_K>(a, b, out, M, N, k_begin, k_end, alpha, beta, vec_a, vec_b, vec_out);
    }
};

// An extern "C" kernel NAME(PARAMS) of GEMM_THREADS threads promising MIN_BLOCKS blocks per SM
// whose body is BODY<template arguments...>(ARGS): one GEMM body, one tile engine.
#define GEMM_KERNEL(NAME, BODY, PARAMS, ARGS, MIN_BLOCKS, ...)                                    \
    extern "C" __global__ void __launch_bounds__(GEMM_THREADS, MIN_BLOCKS) NAME(PARAMS) {          \
        BODY<__VA_ARGS__>(ARGS);                                                                  \
    }

