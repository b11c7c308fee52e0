// im2col / col2im and the layout shuffle between the GEMM's [C_out, images * OH * OW] output and
// NCHW. The column layout is the one fixed in src/ops/conv/mod.rs: row (c * KH + ki) * KW + kj,
// column n * OH * OW + oh * OW + ow, for the nb images of one chunk. `x`/`dx` point at the
// chunk's first image.
#include "common.cuh"

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
        int th = ih + ph - ki * dh;
        if (th < 0) break;  // grows more negative with ki
        if (th % sh != 0) continue;
        int oh = th / sh;
        if (oh >= OH) continue;
        for (int kj = 0; kj < KW; ++kj) {
            int tw = iw + pw - kj * dw;
            if (tw < 0) break;
            if (tw % sw != 0) continue;
            int ow = tw / sw;
            if (ow >= OW) continue;
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
