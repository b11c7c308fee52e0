// Max, average and adaptive-average pooling on NCHW, one thread per output element forwards and
// one thread per input element backwards (a gather over the windows that contain it, so
// overlapping windows and ceil mode need no atomics). Geometry as in src/ops/pool/mod.rs.
#include "common.cuh"

// First output index along an axis whose window [o*s - p, o*s - p + k) contains input index i.
__device__ __forceinline__ int pool_first_window(int i, int k, int s, int p) {
    int t = i + p - k;
    return t < 0 ? 0 : t / s + 1;
}

// Last such output index, clipped to the output length.
__device__ __forceinline__ int pool_last_window(int i, int s, int p, int out) {
    return min((i + p) / s, out - 1);
}

// Sum of plane[ih][iw] over ih in [hs, he), iw in [ws, we).
__device__ __forceinline__ float pool_window_sum(const float* plane, int W, int hs, int he, int ws, int we) {
    float sum = 0.f;
    for (int ih = hs; ih < he; ++ih)
        for (int iw = ws; iw < we; ++iw) sum += plane[ih * W + iw];
    return sum;
}

// PyTorch's average-pool divisor: the window clipped to the padded input, and further to the real
// input unless padding counts.
__device__ __forceinline__ int avg_divisor(int oh, int ow, int H, int W, int KH, int KW, int sh,
                                           int sw, int ph, int pw, int count_include_pad) {
    int hs = oh * sh - ph, ws = ow * sw - pw;
    int he = min(hs + KH, H + ph), we = min(ws + KW, W + pw);
    if (count_include_pad) return (he - hs) * (we - ws);
    return (min(he, H) - max(hs, 0)) * (min(we, W) - max(ws, 0));
}

// y = max over the window, idx = argmax as ih * W + iw within the (n, c) plane. Padding never wins;
// among equal values the first in row-major order does; the first NaN wins and stays, so NaN
// propagates as in PyTorch.
extern "C" __global__ void max_pool_forward(const float* __restrict__ x, float* __restrict__ y,
                                            unsigned int* __restrict__ indices, int planes, int H,
                                            int W, int KH, int KW, int sh, int sw, int ph, int pw,
                                            int OH, int OW) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= planes * OH * OW) return;
    int ow = idx % OW;
    int oh = (idx / OW) % OH;
    const float* plane = x + (size_t)(idx / (OW * OH)) * H * W;
    int hs = oh * sh - ph, ws = ow * sw - pw;
    int he = min(hs + KH, H), we = min(ws + KW, W);
    hs = max(hs, 0);
    ws = max(ws, 0);
    float best = -FERRO_INF;
    int best_at = hs * W + ws;
    for (int ih = hs; ih < he; ++ih) {
        for (int iw = ws; iw < we; ++iw) {
            float v = plane[ih * W + iw];
            if (v > best || (isnan(v) && !isnan(best))) {
                best = v;
                best_at = ih * W + iw;
            }
        }
    }
    y[idx] = best;
    indices[idx] = best_at;
}

// dx[i] = sum of dy over the windows containing i whose argmax is i.
extern "C" __global__ void max_pool_backward(const float* __restrict__ dy,
                                             const unsigned int* __restrict__ indices,
                                             float* __restrict__ dx, int planes, int H, int W,
                                             int KH, int KW, int sh, int sw, int ph, int pw, int OH,
                                             int OW) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= planes * H * W) return;
    int iw = idx % W;
    int ih = (idx / W) % H;
    size_t out_plane = (size_t)(idx / (W * H)) * OH * OW;
    unsigned int self = ih * W + iw;
    int oh1 = pool_last_window(ih, sh, ph, OH), ow1 = pool_last_window(iw, sw, pw, OW);
    float sum = 0.f;
    for (int oh = pool_first_window(ih, KH, sh, ph); oh <= oh1; ++oh) {
        for (int ow = pool_first_window(iw, KW, sw, pw); ow <= ow1; ++ow) {
            size_t o = out_plane + oh * OW + ow;
            if (indices[o] == self) sum += dy[o];
        }
    }
    dx[idx] = sum;
}

extern "C" __global__ void avg_pool_forward(const float* __restrict__ x, float* __restrict__ y,
                                            int planes, int H, int W, int KH, int KW, int sh,
                                            int sw, int ph, int pw, int OH, int OW,
                                            int count_include_pad) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= planes * OH * OW) return;
    int ow = idx % OW;
    int oh = (idx / OW) % OH;
    const float* plane = x + (size_t)(idx / (OW * OH)) * H * W;
    int hs = max(oh * sh - ph, 0), ws = max(ow * sw - pw, 0);
    int he = min(oh * sh - ph + KH, H), we = min(ow * sw - pw + KW, W);
    y[idx] = pool_window_sum(plane, W, hs, he, ws, we) / (float)avg_divisor(oh, ow, H, W, KH, KW, sh, sw, ph, pw, count_include_pad);
}

extern "C" __global__ void avg_pool_backward(const float* __restrict__ dy, float* __restrict__ dx,
                                             int planes, int H, int W, int KH, int KW, int sh,
                                             int sw, int ph, int pw, int OH, int OW,
                                             int count_include_pad) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= planes * H * W) return;
    int iw = idx % W;
    int ih = (idx / W) % H;
    const float* grad = dy + (size_t)(idx / (W * H)) * OH * OW;
    int oh1 = pool_last_window(ih, sh, ph, OH), ow1 = pool_last_window(iw, sw, pw, OW);
    float sum = 0.f;
    for (int oh = pool_first_window(ih, KH, sh, ph); oh <= oh1; ++oh) {
        for (int ow = pool_first_window(iw, KW, sw, pw); ow <= ow1; ++ow) {
            int d = avg_divisor(oh, ow, H, W, KH, KW, sh, sw, ph, pw, count_include_pad);
            sum += grad[oh * OW + ow] / (float)d;
        }
    }
    dx[idx] = sum;
}

// Output i of an adaptive pool covers input [floor(i*L/O), ceil((i+1)*L/O)).
__device__ __forceinline__ int adaptive_start(int i, int len, int out) { return i * len / out; }
__device__ __forceinline__ int adaptive_end(int i, int len, int out) { return ((i + 1) * len + out - 1) / out; }

extern "C" __global__ void adaptive_avg_pool_forward(const float* __restrict__ x, float* __restrict__ y,
                                                     int planes, int H, int W, int OH, int OW) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= planes * OH * OW) return;
    int ow = idx % OW;
    int oh = (idx / OW) % OH;
    const float* plane = x + (size_t)(idx / (OW * OH)) * H * W;
    int hs = adaptive_start(oh, H, OH), he = adaptive_end(oh, H, OH);
    int ws = adaptive_start(ow, W, OW), we = adaptive_end(ow, W, OW);
    y[idx] = pool_window_sum(plane, W, hs, he, ws, we) / (float)((he - hs) * (we - ws));
}

// The outputs whose range contains input i are floor(i*O/L) .. ceil((i+1)*O/L) - 1.
extern "C" __global__ void adaptive_avg_pool_backward(const float* __restrict__ dy,
                                                      float* __restrict__ dx, int planes, int H,
                                                      int W, int OH, int OW) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= planes * H * W) return;
    int iw = idx % W;
    int ih = (idx / W) % H;
    const float* grad = dy + (size_t)(idx / (W * H)) * OH * OW;
    int oh0 = ih * OH / H, oh1 = ((ih + 1) * OH + H - 1) / H;
    int ow0 = iw * OW / W, ow1 = ((iw + 1) * OW + W - 1) / W;
    float sum = 0.f;
    for (int oh = oh0; oh < oh1; ++oh) {
        int rows = adaptive_end(oh, H, OH) - adaptive_start(oh, H, OH);
        for (int ow = ow0; ow < ow1; ++ow) {
            int area = rows * (adaptive_end(ow, W, OW) - adaptive_start(ow, W, OW));
            sum += grad[oh * OW + ow] / (float)area;
        }
    }
    dx[idx] = sum;
}
