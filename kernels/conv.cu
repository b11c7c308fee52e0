// Convolution kernels: im2col / col2im, the layout shuffle between the GEMM's
// [C_out, images * OH * OW] output and NCHW, and the dedicated depthwise kernels. The column layout is the one fixed in src/ops/conv/mod.rs: row (c * KH + ki) * KW + kj,
// column n * OH * OW + oh * OW + ow, for the nb images of one chunk. `x`/`dx` point at the
// chunk's first image.
#include "common.cuh"

// The output index along one axis whose tap `k` reads input index `i`, or -1 when none does
// (the stride skips it, or it falls outside the output).
__device__ __forceinline__ int conv_output_of_tap(int i, int k, int s, int p, int d, int out) {
    int t = i + p - k * d;
    if (t < 0 || t % s != 0) return -1;
    int o = t / s;
    return o < out ? o : -1;
}

// One thread per (channel, column): it walks the KH*KW rows of that channel, so for every row
// consecutive threads write consecutive columns.
extern "C" __global__ void im2col(const float* __restrict__ x, float* __restrict__ cols, int C, int H,
                                  int W, int KH, int KW, int sh, int sw, int ph, int pw, int dh,
                                  int dw, int OH, int OW, int nb) {
    int ncols = nb * OH * OW;
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= C * ncols) return;
    int c = idx / ncols;
    int j = idx - c * ncols;
    int n = j / (OH * OW);
    int p = j - n * (OH * OW);
    int oh = p / OW;
    int ow = p - oh * OW;
    const float* plane = x + ((size_t)n * C + c) * H * W;
    float* out = cols + (size_t)c * KH * KW * ncols + j;
    for (int ki = 0; ki < KH; ++ki) {
        int ih = oh * sh - ph + ki * dh;
        bool row_in = ih >= 0 && ih < H;
        for (int kj = 0; kj < KW; ++kj) {
            int iw = ow * sw - pw + kj * dw;
            *out = row_in && iw >= 0 && iw < W ? plane[ih * W + iw] : 0.f;
            out += ncols;
        }
    }
}

// The adjoint of im2col as a gather: one thread per input element sums every column entry that
// im2col read from it and overwrites dx (no atomics, deterministic).
extern "C" __global__ void col2im(const float* __restrict__ cols, float* __restrict__ dx, int C, int H,
                                  int W, int KH, int KW, int sh, int sw, int ph, int pw, int dh,
                                  int dw, int OH, int OW, int nb) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= nb * C * H * W) return;
    int iw = idx % W;
    int ih = (idx / W) % H;
    int c = (idx / (W * H)) % C;
    int n = idx / (W * H * C);
    int ncols = nb * OH * OW;
    const float* image_cols = cols + (size_t)n * OH * OW;
    float sum = 0.f;
    for (int ki = 0; ki < KH; ++ki) {
        int oh = conv_output_of_tap(ih, ki, sh, ph, dh, OH);
        if (oh < 0) continue;
        for (int kj = 0; kj < KW; ++kj) {
            int ow = conv_output_of_tap(iw, kj, sw, pw, dw, OW);
            if (ow < 0) continue;
            int row = (c * KH + ki) * KW + kj;
            sum += image_cols[(size_t)row * ncols + oh * OW + ow];
        }
    }
    dx[idx] = sum;
}

// dst[b][a][p] = src[a][b][p]: swaps the two outer axes of a [A, B, P] tensor. Turns the GEMM's
// [C_out, nb, OH*OW] output into NCHW (A = C_out, B = nb) and NCHW gradients into the GEMM's
// layout (A = nb, B = C_out). One thread per destination element.
extern "C" __global__ void swap_outer_axes(const float* __restrict__ src, float* __restrict__ dst, int A,
                                           int B, int P) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= A * B * P) return;
    int p = idx % P;
    int a = (idx / P) % A;
    int b = idx / (P * A);
    dst[idx] = src[((size_t)a * B + b) * P + p];
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
