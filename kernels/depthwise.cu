// Depthwise convolution (groups == C_in, C_out = multiplier * C_in): output channel co reads input
// channel co / multiplier through its own KH x KW filter. Layouts as in src/ops/conv/mod.rs.
#include "common.cuh"

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
            int th = ih + ph - ki * dh;
            if (th < 0) break;
            if (th % sh != 0) continue;
            int oh = th / sh;
            if (oh >= OH) continue;
            for (int kj = 0; kj < KW; ++kj) {
                int tw = iw + pw - kj * dw;
                if (tw < 0) break;
                if (tw % sw != 0) continue;
                int ow = tw / sw;
                if (ow >= OW) continue;
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
