// Convolution kernels: the fp32 GEMMs of the convolution (conv_gemm.cuh's operands and bodies)
// on gemm_tile.cuh's SGEMM tiles, and the dedicated depthwise kernels.
#include "conv_gemm.cuh"

// Each GEMM comes as NAME (64x64 tiles), NAME_64x128 and NAME_128 (128x128), the host picks as
// for gemm.cu.
// The 64x64 ones promise three blocks per SM, as the split GEMMs (the geometry needs the registers
// a cap of 64 would spill), the data gradient's two (two image-major address computations, or the
// flipped weight's and the im2col gather's, spill at three's 80 registers); the 128x128 ones
// promise one, as gemm.cu's, the 64x128 ones two (one for the data gradient's columns, which
// spill at 128 registers).
#define CONV_SGEMM_KERNELS(NAME, KIND, MIN_BLOCKS, MIN_BLOCKS_WIDE)                                \
    GEMM_KERNEL(NAME, NAME##_body, CONV_##KIND##_PARAMS, CONV_##KIND##_ARGS, MIN_BLOCKS,        \
                     SgemmTile<64, 64>)                                                            \
    GEMM_KERNEL(NAME##_64x128, NAME##_body, CONV_##KIND##_PARAMS, CONV_##KIND##_ARGS,          \
                     MIN_BLOCKS_WIDE, SgemmTile<64, 128>)                                          \
    GEMM_KERNEL(NAME##_128, NAME##_body, CONV_##KIND##_PARAMS, CONV_##KIND##_ARGS, 1,          \
                     SgemmTile<128, 128>)
CONV_SGEMM_KERNELS(conv_forward_gemm, FORWARD, 3, 2)
CONV_SGEMM_KERNELS(conv_filter_gemm, FILTER, 3, 2)
CONV_SGEMM_KERNELS(conv_data_direct_gemm, DATA_DIRECT, 2, 2)

// The phase GEMM's body also needs the tile's width (its blocks past a phase's columns return).
GEMM_KERNEL(conv_data_phase_gemm, conv_data_phase_gemm_body, CONV_DATA_PHASE_PARAMS, CONV_DATA_PHASE_ARGS, 2,
                 SgemmTile<64, 64>, 64)
GEMM_KERNEL(conv_data_phase_gemm_64x128, conv_data_phase_gemm_body, CONV_DATA_PHASE_PARAMS,
                 CONV_DATA_PHASE_ARGS, 1, SgemmTile<64, 128>, 128)
GEMM_KERNEL(conv_data_phase_gemm_128, conv_data_phase_gemm_body, CONV_DATA_PHASE_PARAMS,
                 CONV_DATA_PHASE_ARGS, 1, SgemmTile<128, 128>, 128)

// ---- The data gradient's weights packed as its GEMMs read them: each group's (and phase's)
// [C_in/g, K] matrix of GemmFlippedWeights or GemmPhaseWeights written densely, so the GEMM's
// every block reads it with 16-byte loads instead of gathering it from the filters. One thread
// per packed element of blockIdx.z's matrix; the grid covers the weight's elements, the threads
// past a smaller phase's return.

// Row c, column r of group blockIdx.z's flipped weight, at its place in `flipped`.
extern "C" __global__ void pack_flipped_weights(float* __restrict__ flipped, const float* __restrict__ w,
                                                int cin, int cout, int taps) {
    int K = cout * taps;
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= cin * K) return;
    size_t group = (size_t)blockIdx.z * cin * K;
    GemmFlippedWeights weights{w + group, cin, taps};
    int c = idx / K;
    flipped[group + idx] = weights.at(c, idx - c * K);
}

// Row c, column r of group blockIdx.z / phases' weight of phase blockIdx.z % phases, at its place
// in `packed` (ConvPhase::taps_before).
extern "C" __global__ void pack_phase_weights(float* __restrict__ packed, const float* __restrict__ w,
                                              int cin, int cout, int phases, int H, int W, int KH, int KW,
                                              int sh, int sw, int ph, int pw, int dh, int dw) {
    int group = blockIdx.z / phases;
    int p = blockIdx.z - group * phases;
    ConvPhase phase(p, H, W, KH, KW, sh, sw, ph, pw, dh, dw);
    int K = cout * phase.taps();
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= cin * K) return;
    size_t base = (size_t)group * cin * cout * KH * KW;
    GemmPhaseWeights weights{w + base, cin, KH, KW, phase};
    int c = idx / K;
    size_t before = (size_t)ConvPhase::taps_before(p, H, W, KH, KW, sh, sw, ph, pw, dh, dw) * cin * cout;
    packed[base + before + idx] = weights.at(c, idx - c * K);
}

// The output index along one axis whose tap `k` reads input index `i`, or -1 when none does
// (the stride skips it, or it falls outside the output).
__device__ __forceinline__ int conv_output_of_tap(int i, int k, int s, int p, int d, int out) {
    int t = i + p - k * d;
    if (t < 0 || t % s != 0) return -1;
    int o = t / s;
    return o < out ? o : -1;
}

// ---- Depthwise convolution (groups == C_in, C_out = multiplier * C_in): output channel co reads
// input channel co / multiplier through its own KH x KW filter.

// One thread per output element.
extern "C" __global__ void depthwise_forward(const float* __restrict__ x, const float* __restrict__ w,
                                             const float* __restrict__ bias, float* __restrict__ y,
                                             int N, int C, int H, int W, int mult, int KH, int KW,
                                             int sh, int sw, int ph, int pw, int dh, int dw, int OH,
                                             int OW, int has_bias) {
    int C_out = C * mult;
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= N * C_out * OH * OW) return;
    int ow = idx % OW;
    int oh = (idx / OW) % OH;
    int co = (idx / (OW * OH)) % C_out;
    int n = idx / (OW * OH * C_out);
    const float* plane = x + ((size_t)n * C + co / mult) * H * W;
    const float* filt = w + (size_t)co * KH * KW;
    float sum = has_bias ? bias[co] : 0.f;
    for (int ki = 0; ki < KH; ++ki) {
        int ih = oh * sh - ph + ki * dh;
        if (ih < 0 || ih >= H) continue;
        for (int kj = 0; kj < KW; ++kj) {
            int iw = ow * sw - pw + kj * dw;
            if (iw < 0 || iw >= W) continue;
            sum = fmaf(plane[ih * W + iw], filt[ki * KW + kj], sum);
        }
    }
    y[idx] = sum;
}

// One thread per input element: gathers dy over every (output channel of its group, tap, output
// position) that read it.
extern "C" __global__ void depthwise_backward_data(const float* __restrict__ dy,
                                                   const float* __restrict__ w, float* __restrict__ dx,
                                                   int N, int C, int H, int W, int mult, int KH,
                                                   int KW, int sh, int sw, int ph, int pw, int dh,
                                                   int dw, int OH, int OW) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= N * C * H * W) return;
    int iw = idx % W;
    int ih = (idx / W) % H;
    int c = (idx / (W * H)) % C;
    int n = idx / (W * H * C);
    float sum = 0.f;
    for (int m = 0; m < mult; ++m) {
        int co = c * mult + m;
        const float* grad = dy + ((size_t)n * C * mult + co) * OH * OW;
        const float* filt = w + (size_t)co * KH * KW;
        for (int ki = 0; ki < KH; ++ki) {
            int oh = conv_output_of_tap(ih, ki, sh, ph, dh, OH);
            if (oh < 0) continue;
            for (int kj = 0; kj < KW; ++kj) {
                int ow = conv_output_of_tap(iw, kj, sw, pw, dw, OW);
                if (ow < 0) continue;
                sum = fmaf(grad[oh * OW + ow], filt[ki * KW + kj], sum);
            }
        }
    }
    dx[idx] = sum;
}

// dw[co][ki][kj] = sum over n, oh, ow of dy[n][co][oh][ow] * x[n][co / mult][ih][iw]. One block of
// up to 256 threads per filter tap; overwrites dw.
extern "C" __global__ void __launch_bounds__(256)
    depthwise_backward_filter(const float* __restrict__ x, const float* __restrict__ dy,
                              float* __restrict__ dw_out, int N, int C, int H, int W, int mult,
                              int KH, int KW, int sh, int sw, int ph, int pw, int dh, int dw, int OH,
                              int OW) {
    __shared__ float scratch[33];
    int tap = blockIdx.x;
    int kj = tap % KW;
    int ki = (tap / KW) % KH;
    int co = tap / (KW * KH);
    int C_out = C * mult;
    int ci = co / mult;
    int positions = OH * OW;
    float sum = 0.f;
    for (int idx = threadIdx.x; idx < N * positions; idx += blockDim.x) {
        int n = idx / positions;
        int p = idx - n * positions;
        int oh = p / OW;
        int ow = p - oh * OW;
        int ih = oh * sh - ph + ki * dh;
        int iw = ow * sw - pw + kj * dw;
        if (ih >= 0 && ih < H && iw >= 0 && iw < W) {
            sum = fmaf(dy[((size_t)n * C_out + co) * positions + p],
                       x[(((size_t)n * C + ci) * H + ih) * W + iw], sum);
        }
    }
    float total = ferro_block_sum(sum, scratch);
    if (threadIdx.x == 0) dw_out[tap] = total;
}
