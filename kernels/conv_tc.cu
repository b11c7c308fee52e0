// ferronet: compute_75 compute_80
// Tensor-core convolutions: the channels-last implicit-GEMM forward below, which no op uses yet,
// and (at the end of the file) the NCHW convolution GEMMs that training runs at reduced precision.
// The compute_75 module (Turing) has the f16 kernels only, on tensor_core.cuh's Turing branches:
// of the training GEMMs all but the channels-first 128x128 data-phase tile.
//
// Tensor-core implicit-GEMM convolution forward, channels-last: y[N,OH,OW,C_out] (f32) =
// conv(x[N,H,W,C_in], w[C_out,KH,KW,C_in/groups]) with bf16 or f16 inputs (mma.sync m16n8k16)
// accumulated in f32, any kernel size, stride, padding, dilation and groups.
//
// Per group (blockIdx.z) it is the GEMM Y[M,N] = X[M,K] W[N,K]^T with M = N*OH*OW output pixels,
// N = C_out/groups channels and K = KH*KW*C_in/groups, k = (ki*KW + kj)*Cg + c. Row m of X is
// the receptive field of pixel m, never stored: each 16-byte chunk of it (8 channels of one tap,
// contiguous in NHWC) is copied by cp.async straight from x into shared memory, zero-filled
// (source size 0) where the tap falls in the padding or past K or M. W's rows are the weight's
// rows as stored. Both operands are k-contiguous, so both tiles are read with plain ldmatrix, and
// a row of Y is one output pixel's channels: the NHWC output is written in place.
//
// A block computes a BM x BN tile of Y with 8 warps (WARPS_M x WARPS_N), each MT*16 rows by 32
// channels of 16x8 mma tiles whose accumulators stay in registers. K goes in stages of 32 values
// (64 bytes per row of either tile), filled by the three-stage cp.async pipeline of
// tensor_core.cuh (on Turing, its two buffers filled from registers: the next stage's reads are
// in flight while the current one is multiplied). Shared rows of 64 bytes are XOR-swizzled in
// 16-byte chunks (chunk c of row r at c ^ ((r >> 1) & 3)) so that ldmatrix's eight rows of one
// chunk hit distinct banks.
//
// Each thread copies the same chunk column of its rows at every stage, so it keeps the chunk's
// (tap, channel) position and advances it by 32 values per stage instead of dividing k.
//
// Requirements (checked by the launcher, src/ops/conv/tc.rs): C_in/groups a multiple of 8 (a
// chunk never straddles two taps), x and w 16-byte aligned, y 8-byte aligned.

#include "conv_gemm.cuh"
#include "tc_gemm_tile.cuh"
#include "tensor_core.cuh"

namespace {

constexpr int THREADS = 256, STAGES = 3, CHUNK = 16, ROW_BYTES = TC_ROW_BYTES, BK = 32, WN = 32, NT = WN / 8;

struct Geometry {
    int batch, h, w, c, oh, ow, c_out, kh, kw, sh, sw, ph, pw, dh, dw, groups;
};

template <TcIn IN, int MT, int WARPS_M, int WARPS_N>
__device__ __forceinline__ void conv_tc(const unsigned short* x, const unsigned short* wt, float* y, const Geometry& p) {
    static_assert(WARPS_M * WARPS_N * 32 == THREADS, "8 warps");
    constexpr int WM = MT * 16, BM = WARPS_M * WM, BN = WARPS_N * WN;
    constexpr int A_STAGE_BYTES = BM * ROW_BYTES, STAGE_BYTES = A_STAGE_BYTES + BN * ROW_BYTES;
    constexpr int ROW_CHUNKS = ROW_BYTES / CHUNK;
    constexpr int ROWS_PER_PASS = THREADS / ROW_CHUNKS;
    constexpr int A_COPIES = BM / ROWS_PER_PASS, B_COPIES = BN / ROWS_PER_PASS, COPIES = A_COPIES + B_COPIES;
    static_assert(A_COPIES * ROWS_PER_PASS == BM && B_COPIES * ROWS_PER_PASS == BN, "whole copies per thread");

    __shared__ __align__(128) unsigned char smem[tc_pipeline_buffers<STAGES> * STAGE_BYTES];
    const unsigned smem_base = static_cast<unsigned>(__cvta_generic_to_shared(smem));
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp / WARPS_N, wn = warp % WARPS_N;
    const int cg = p.c / p.groups, cog = p.c_out / p.groups;
    const int k = p.kh * p.kw * cg, m = p.batch * p.oh * p.ow;
    const int group = blockIdx.z;
    const int bm = blockIdx.x * BM, bn = blockIdx.y * BN;
    const int ktiles = (k + BK - 1) / BK;

    // This thread's rows (pixels) of X and their receptive fields' corners; a pixel past M gets
    // a corner no tap reaches, so its chunks are zero-filled.
    const int chunk = tid & (ROW_CHUNKS - 1), first_row = tid / ROW_CHUNKS;
    int image_base[A_COPIES], ih0[A_COPIES], iw0[A_COPIES];
#pragma unroll
    for (int r = 0; r < A_COPIES; ++r) {
        const int pixel = bm + first_row + r * ROWS_PER_PASS;
        const int ow = pixel % p.ow, oh = (pixel / p.ow) % p.oh, n = pixel / (p.ow * p.oh);
        image_base[r] = n * p.h * p.w;
        ih0[r] = pixel < m ? oh * p.sh - p.ph : -0x40000000;
        iw0[r] = ow * p.sw - p.pw;
    }
    // The position of this thread's chunk in K: tap (ki, kj), channel ci of the group.
    int ki = 0, kj = 0, ci = chunk * (CHUNK / 2);
    auto normalize = [&]() {
        while (ci >= cg) {
            ci -= cg;
            if (++kj == p.kw) {
                kj = 0;
                ++ki;
            }
        }
    };
    normalize();
    const unsigned short* xg = x + group * cg;
    const unsigned short* wg = wt + (size_t)group * cog * k;

    auto load_stage = [&](int kt, TcCopies<COPIES>& copies) {
#pragma unroll
        for (int r = 0; r < A_COPIES; ++r) {
            const int ih = ih0[r] + ki * p.dh, iw = iw0[r] + kj * p.dw;
            const bool inside = ki < p.kh && (unsigned)ih < (unsigned)p.h && (unsigned)iw < (unsigned)p.w;
            const unsigned short* src = inside ? xg + (size_t)(image_base[r] + ih * p.w + iw) * p.c + ci : x;
            copies.issue(r, tc_swizzled(first_row + r * ROWS_PER_PASS, chunk), src, inside);
        }
        const int gk = kt * BK + chunk * (CHUNK / 2);
#pragma unroll
        for (int r = 0; r < B_COPIES; ++r) {
            const int row = first_row + r * ROWS_PER_PASS, gn = bn + row;
            const bool inside = gn < cog && gk < k;
            const unsigned short* src = inside ? wg + (size_t)gn * k + gk : wt;
            copies.issue(A_COPIES + r, A_STAGE_BYTES + tc_swizzled(row, chunk), src, inside);
        }
        ci += BK;
        normalize();
    };

    float acc[MT][NT][4];
    tc_zero(acc);

    // W's fragments: its tile is stored k-contiguous, like X's (whose are tc_mma_stage's).
    auto compute_stage = [&](int stage) {
        const unsigned a_base = smem_base + stage * STAGE_BYTES;
        const unsigned b_base = a_base + A_STAGE_BYTES;
        auto load_b = [&](int ks, unsigned (&bf)[NT][2]) { tc_load_b_k_contiguous<IN>(bf, b_base, wn * WN, ks, lane); };
        tc_mma_stage<IN>(acc, a_base, wm * WM, lane, load_b);
    };
    tc_pipeline<STAGES, COPIES>(ktiles, smem_base, STAGE_BYTES, load_stage, compute_stage);

    // A float2 where the pair is inside the group and 8-byte aligned (even channels per group).
    float* yg = y + group * cog;
    auto store = [&](int row, int col, float v0, float v1) {
        float* dst = yg + (size_t)row * p.c_out + col;
        if (col + 1 < cog && (cog & 1) == 0) {
            *reinterpret_cast<float2*>(dst) = make_float2(v0, v1);
        } else {
            dst[0] = v0;
            if (col + 1 < cog) dst[1] = v1;
        }
    };
    tc_store_tiles(acc, bm + wm * WM, bn + wn * WN, lane, m, cog, store);
}

}  // namespace

// Pointers to bf16/f16 are raw 16-bit patterns. The suffix is the block tile: output pixels x
// output channels.
#define CONV_TC_KERNEL(NAME, IN, MT, WARPS_M, WARPS_N)                                                                           \
    extern "C" __global__ void __launch_bounds__(THREADS)                                                                       \
        NAME(const unsigned short* x, const unsigned short* w, float* y, int batch, int h, int wd, int c, int oh, int ow,      \
             int c_out, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw, int groups) {                          \
        const Geometry p{batch, h, wd, c, oh, ow, c_out, kh, kw, sh, sw, ph, pw, dh, dw, groups};                               \
        conv_tc<IN, MT, WARPS_M, WARPS_N>(x, w, y, p);                                                                          \
    }

CONV_TC_KERNEL(conv_tc_f16_128x128, TC_F16, 4, 2, 4)
CONV_TC_KERNEL(conv_tc_f16_128x64, TC_F16, 2, 4, 2)
#if TC_AMPERE
CONV_TC_KERNEL(conv_tc_bf16_128x128, TC_BF16, 4, 2, 4)
CONV_TC_KERNEL(conv_tc_bf16_128x64, TC_BF16, 2, 4, 2)
#endif

// ---- The convolution GEMMs of training on the tensor cores: conv_gemm.cuh's forward,
// weight-gradient and data-gradient bodies of either layout (NCHW, and the channels-last
// conv_nhwc_* ones) (operands read in place, the im2col matrix gathered on the fly) on
// tc_gemm_tile.cuh's tiles, with the fp32 kernels' arguments and grids (src/ops/conv/cuda.rs
// picks these at bf16/fp16/tf32 on compute capability 8.0+, at fp16 on 7.5). No column buffer,
// no operand pack, one launch per convolution pass whatever the batch and groups.

// NAME_tc_FORMAT (64x64 tiles), NAME_tc_FORMAT_64x128 and NAME_tc_FORMAT_128 (128x128) of one
// GEMM: the fp32 kernels' names and tile suffixes with the format in between. EXTRA: the phase
// body's tile width, after the engine. The 64x64 ones promise two blocks per SM; the wider ones
// one (the weight gradient's two im2col gathers spill at 128 registers). CONV_TC_GEMM_64_ROWS
// makes the two 64-row ones, CONV_TC_GEMM_128 the 128x128 one.
#define CONV_TC_GEMM_64_ROWS(NAME, KIND, FORMAT, IN, EXTRA64, EXTRA128)                           \
    GEMM_KERNEL(NAME##_tc_##FORMAT, NAME##_body, CONV_##KIND##_PARAMS, CONV_##KIND##_ARGS, 2,   \
                     TensorCoreTile<IN, 64, 64> EXTRA64)                                           \
    GEMM_KERNEL(NAME##_tc_##FORMAT##_64x128, NAME##_body, CONV_##KIND##_PARAMS,                \
                     CONV_##KIND##_ARGS, 1, TensorCoreTile<IN, 64, 128> EXTRA128)
#define CONV_TC_GEMM_128(NAME, KIND, FORMAT, IN, EXTRA128)                                        \
    GEMM_KERNEL(NAME##_tc_##FORMAT##_128, NAME##_body, CONV_##KIND##_PARAMS,                   \
                     CONV_##KIND##_ARGS, 1, TensorCoreTile<IN, 128, 128> EXTRA128)
#define CONV_TC_GEMM_KERNELS(NAME, KIND, FORMAT, IN, EXTRA64, EXTRA128)                           \
    CONV_TC_GEMM_64_ROWS(NAME, KIND, FORMAT, IN, EXTRA64, EXTRA128)                               \
    CONV_TC_GEMM_128(NAME, KIND, FORMAT, IN, EXTRA128)
#define CONV_TC_NHWC_FORMAT(FORMAT, IN)                                                           \
    CONV_TC_GEMM_KERNELS(conv_nhwc_gemm, NHWC, FORMAT, IN, , )                                    \
    CONV_TC_GEMM_KERNELS(conv_nhwc_filter_gemm, NHWC_FILTER, FORMAT, IN, , )                      \
    CONV_TC_GEMM_KERNELS(conv_nhwc_data_phase_gemm, NHWC_DATA_PHASE, FORMAT, IN, , )
// The channels-first GEMMs but the 128x128 data-phase tile (CONV_TC_NCHW_FORMAT adds it).
#define CONV_TC_NCHW_BUT_LARGE_PHASE(FORMAT, IN)                                                  \
    CONV_TC_GEMM_KERNELS(conv_forward_gemm, FORWARD, FORMAT, IN, , )                              \
    CONV_TC_GEMM_KERNELS(conv_filter_gemm, FILTER, FORMAT, IN, , )                                \
    CONV_TC_GEMM_KERNELS(conv_data_direct_gemm, DATA_DIRECT, FORMAT, IN, , )                      \
    CONV_TC_GEMM_64_ROWS(conv_data_phase_gemm, DATA_PHASE, FORMAT, IN, TC_COMMA 64, TC_COMMA 128)
#define CONV_TC_NCHW_FORMAT(FORMAT, IN)                                                           \
    CONV_TC_NCHW_BUT_LARGE_PHASE(FORMAT, IN)                                                      \
    CONV_TC_GEMM_128(conv_data_phase_gemm, DATA_PHASE, FORMAT, IN, TC_COMMA 128)
#define TC_COMMA ,
CONV_TC_NHWC_FORMAT(f16, TC_F16)
#if TC_AMPERE
CONV_TC_NCHW_FORMAT(f16, TC_F16)
#else
// sm_75's ptxas spills the 128x128 data-phase tile (255 registers); Turing's strided data
// gradients take the 64-row tiles (src/ops/conv/cuda.rs, `data_phase_plan`).
CONV_TC_NCHW_BUT_LARGE_PHASE(f16, TC_F16)
#endif
#if TC_AMPERE
CONV_TC_NHWC_FORMAT(bf16, TC_BF16)
CONV_TC_NCHW_FORMAT(bf16, TC_BF16)
CONV_TC_NHWC_FORMAT(tf32, TC_TF32)
CONV_TC_NCHW_FORMAT(tf32, TC_TF32)
#endif
