// Max, average and adaptive-average pooling on NCHW, one thread per output element forwards and
// one thread per input element backwards (a gather over the windows that contain it, so
// overlapping windows and ceil mode need no atomics). Geometry as in src/ops/pool/mod.rs.
// Values are read and written in their stored formats (kernels/stored.cuh: x and dy as given, y
// in x's format, dx in dy's), summed in f32 and rounded once at the store; indices stay u32.
#include "common.cuh"
#include "stored.cuh"

// First output index along an axis whose window [o*s - p, o*s - p + k) contains input index i.
__device__ __forceinline__ int pool_first_window(int i, int k, int s, int p) {
    int t = i + p - k;
    return t < 0 ? 0 : t / s + 1;
}

// Last such output index, clipped to the output length.
__device__ __forceinline__ int pool_last_window(int i, int s, int p, int out) {
    return min((i + p) / s, out - 1);
}

// Sum of x's plane starting at element `plane`, [ih][iw] over ih in [hs, he), iw in [ws, we).
__device__ __forceinline__ float pool_window_sum(const void* x, int x_format, size_t plane, int W, int hs, int he,
                                                 int ws, int we) {
    float sum = 0.f;
    for (int ih = hs; ih < he; ++ih)
        for (int iw = ws; iw < we; ++iw) sum += ferro_load(x, plane + ih * W + iw, x_format);
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
extern "C" __global__ void max_pool_forward(const void* __restrict__ x, int x_format, void* __restrict__ y,
                                            int y_format, unsigned int* __restrict__ indices, int planes, int H,
                                            int W, int KH, int KW, int sh, int sw, int ph, int pw,
                                            int OH, int OW) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= planes * OH * OW) return;
    int ow = idx % OW;
    int oh = (idx / OW) % OH;
    const size_t plane = (size_t)(idx / (OW * OH)) * H * W;
    int hs = oh * sh - ph, ws = ow * sw - pw;
    int he = min(hs + KH, H), we = min(ws + KW, W);
    hs = max(hs, 0);
    ws = max(ws, 0);
    float best = -FERRO_INF;
    int best_at = hs * W + ws;
    for (int ih = hs; ih < he; ++ih) {
        for (int iw = ws; iw < we; ++iw) {
            float v = ferro_load(x, plane + ih * W + iw, x_format);
            if (v > best || (isnan(v) && !isnan(best))) {
                best = v;
                best_at = ih * W + iw;
            }
        }
    }
    ferro_store(y, idx, best, y_format);
    indices[idx] = best_at;
}

// dx[i] = sum of dy over the windows containing i whose argmax is i.
extern "C" __global__ void max_pool_backward(const void* __restrict__ dy, int dy_format,
                                             const unsigned int* __restrict__ indices,
                                             void* __restrict__ dx, int dx_format, int planes, int H, int W,
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
            if (indices[o] == self) sum += ferro_load(dy, o, dy_format);
        }
    }
    ferro_store(dx, idx, sum, dx_format);
}

extern "C" __global__ void avg_pool_forward(const void* __restrict__ x, int x_format, void* __restrict__ y,
                                            int y_format, int planes, int H, int W, int KH, int KW, int sh,
                                            int sw, int ph, int pw, int OH, int OW,
                                            int count_include_pad) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= planes * OH * OW) return;
    int ow = idx % OW;
    int oh = (idx / OW) % OH;
    const size_t plane = (size_t)(idx / (OW * OH)) * H * W;
    int hs = max(oh * sh - ph, 0), ws = max(ow * sw - pw, 0);
    int he = min(oh * sh - ph + KH, H), we = min(ow * sw - pw + KW, W);
    const float sum = pool_window_sum(x, x_format, plane, W, hs, he, ws, we);
    ferro_store(y, idx, sum / (float)avg_divisor(oh, ow, H, W, KH, KW, sh, sw, ph, pw, count_include_pad), y_format);
}

extern "C" __global__ void avg_pool_backward(const void* __restrict__ dy, int dy_format, void* __restrict__ dx,
                                             int dx_format, int planes, int H, int W, int KH, int KW, int sh,
                                             int sw, int ph, int pw, int OH, int OW,
                                             int count_include_pad) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= planes * H * W) return;
    int iw = idx % W;
    int ih = (idx / W) % H;
    const size_t grad = (size_t)(idx / (W * H)) * OH * OW;
    int oh1 = pool_last_window(ih, sh, ph, OH), ow1 = pool_last_window(iw, sw, pw, OW);
    float sum = 0.f;
    for (int oh = pool_first_window(ih, KH, sh, ph); oh <= oh1; ++oh) {
        for (int ow = pool_first_window(iw, KW, sw, pw); ow <= ow1; ++ow) {
            int d = avg_divisor(oh, ow, H, W, KH, KW, sh, sw, ph, pw, count_include_pad);
            sum += ferro_load(dy, grad + oh * OW + ow, dy_format) / (float)d;
        }
    }
    ferro_store(dx, idx, sum, dx_format);
}

// Output i of an adaptive pool covers input [floor(i*L/O), ceil((i+1)*L/O)).
__device__ __forceinline__ int adaptive_start(int i, int len, int out) { return i * len / out; }
__device__ __forceinline__ int adaptive_end(int i, int len, int out) { return ((i + 1) * len + out - 1) / out; }

extern "C" __global__ void adaptive_avg_pool_forward(const void* __restrict__ x, int x_format,
                                                     void* __restrict__ y, int y_format, int planes, int H, int W,
                                                     int OH, int OW) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= planes * OH * OW) return;
    int ow = idx % OW;
    int oh = (idx / OW) % OH;
    const size_t plane = (size_t)(idx / (OW * OH)) * H * W;
    int hs = adaptive_start(oh, H, OH), he = adaptive_end(oh, H, OH);
    int ws = adaptive_start(ow, W, OW), we = adaptive_end(ow, W, OW);
    const float sum = pool_window_sum(x, x_format, plane, W, hs, he, ws, we);
    ferro_store(y, idx, sum / (float)((he - hs) * (we - ws)), y_format);
}

// The outputs whose range contains input i are floor(i*O/L) .. ceil((i+1)*O/L) - 1.
extern "C" __global__ void adaptive_avg_pool_backward(const void* __restrict__ dy, int dy_format,
                                                      void* __restrict__ dx, int dx_format, int planes, int H,
                                                      int W, int OH, int OW) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= planes * H * W) return;
    int iw = idx % W;
    int ih = (idx / W) % H;
    const size_t grad = (size_t)(idx / (W * H)) * OH * OW;
    int oh0 = ih * OH / H, oh1 = ((ih + 1) * OH + H - 1) / H;
    int ow0 = iw * OW / W, ow1 = ((iw + 1) * OW + W - 1) / W;
    float sum = 0.f;
    for (int oh = oh0; oh < oh1; ++oh) {
        int rows = adaptive_end(oh, H, OH) - adaptive_start(oh, H, OH);
        for (int ow = ow0; ow < ow1; ++ow) {
            int area = rows * (adaptive_end(ow, W, OW) - adaptive_start(ow, W, OW));
            sum += ferro_load(dy, grad + oh * OW + ow, dy_format) / (float)area;
        }
    }
    ferro_store(dx, idx, sum, dx_format);
}

// ---- Channels last: x [N, H, W, C] -> y [N, OH, OW, C]. One thread per V channels of an output
// pixel forwards and of an input pixel backwards (the same gathers as above, so no atomics), so a
// warp's loads and stores run along C, contiguous. V = 4 moves 4 values at once (16 bytes of f32,
// 8 of 16-bit values); the host picks it when C % 4 == 0 and every buffer is 16-byte aligned.
// Max-pool indices lie in y's order and keep the channels-first meaning, ih * W + iw within the
// (n, c) plane.

// Values i .. i+V-1 of p, stored in `format`.
template <int V>
__device__ __forceinline__ void pool_load(const void* __restrict__ p, size_t i, int format, float (&v)[V]) {
    if constexpr (V == 4) {
        const float4 f = ferro_load4(p, i, format);
        v[0] = f.x; v[1] = f.y; v[2] = f.z; v[3] = f.w;
    } else {
        v[0] = ferro_load(p, i, format);
    }
}

template <int V>
__device__ __forceinline__ void pool_load(const unsigned int* __restrict__ p, unsigned int (&v)[V]) {
    if constexpr (V == 4) {
        const uint4 f = *reinterpret_cast<const uint4*>(p);
        v[0] = f.x; v[1] = f.y; v[2] = f.z; v[3] = f.w;
    } else {
        v[0] = *p;
    }
}

template <int V>
__device__ __forceinline__ void pool_store(void* __restrict__ p, size_t i, int format, const float (&v)[V]) {
    if constexpr (V == 4) {
        ferro_store4(p, i, make_float4(v[0], v[1], v[2], v[3]), format);
    } else {
        ferro_store(p, i, v[0], format);
    }
}

template <int V>
__device__ __forceinline__ void pool_store(unsigned int* __restrict__ p, const unsigned int (&v)[V]) {
    if constexpr (V == 4) {
        *reinterpret_cast<uint4*>(p) = make_uint4(v[0], v[1], v[2], v[3]);
    } else {
        *p = v[0];
    }
}

// Thread idx's pixel and first channel over a [N, rows, cols, C] tensor cut into V-channel groups;
// false past the end.
template <int V>
__device__ __forceinline__ bool nhwc_thread(int idx, int N, int C, int rows, int cols, int* n, int* r, int* col, int* c) {
    const int groups = C / V;
    if (idx >= N * rows * cols * groups) return false;
    *c = (idx % groups) * V;
    const int pixel = idx / groups;
    *col = pixel % cols;
    *r = (pixel / cols) % rows;
    *n = pixel / (cols * rows);
    return true;
}

// The mean of a window [hs, he) x [ws, we) of V channels of a channels-last image (`image`: the
// element index of its first channel of the thread's group) over `divisor` values.
template <int V>
__device__ __forceinline__ void nhwc_window_mean(const void* __restrict__ x, int x_format, size_t image, int C, int W,
                                                 int hs, int he, int ws, int we, float divisor, float (&mean)[V]) {
#pragma unroll
    for (int j = 0; j < V; ++j) mean[j] = 0.f;
    for (int ih = hs; ih < he; ++ih) {
        for (int iw = ws; iw < we; ++iw) {
            float v[V];
            pool_load<V>(x, image + (size_t)(ih * W + iw) * C, x_format, v);
#pragma unroll
            for (int j = 0; j < V; ++j) mean[j] += v[j];
        }
    }
#pragma unroll
    for (int j = 0; j < V; ++j) mean[j] /= divisor;
}

template <int V>
__device__ __forceinline__ void max_pool_forward_nhwc_body(const void* __restrict__ x, int x_format,
                                                           void* __restrict__ y, int y_format,
                                                           unsigned int* __restrict__ indices, int N, int C, int H,
                                                           int W, int KH, int KW, int sh, int sw, int ph, int pw,
                                                           int OH, int OW) {
    int n, oh, ow, c;
    if (!nhwc_thread<V>(blockIdx.x * blockDim.x + threadIdx.x, N, C, OH, OW, &n, &oh, &ow, &c)) return;
    const size_t image = (size_t)n * H * W * C + c;
    int hs = oh * sh - ph, ws = ow * sw - pw;
    const int he = min(hs + KH, H), we = min(ws + KW, W);
    hs = max(hs, 0);
    ws = max(ws, 0);
    float best[V];
    unsigned int best_at[V];
#pragma unroll
    for (int j = 0; j < V; ++j) {
        best[j] = -FERRO_INF;
        best_at[j] = hs * W + ws;
    }
    for (int ih = hs; ih < he; ++ih) {
        for (int iw = ws; iw < we; ++iw) {
            float v[V];
            pool_load<V>(x, image + (size_t)(ih * W + iw) * C, x_format, v);
#pragma unroll
            for (int j = 0; j < V; ++j) {
                if (v[j] > best[j] || (isnan(v[j]) && !isnan(best[j]))) {
                    best[j] = v[j];
                    best_at[j] = ih * W + iw;
                }
            }
        }
    }
    const size_t out = ((size_t)(n * OH + oh) * OW + ow) * C + c;
    pool_store<V>(y, out, y_format, best);
    pool_store<V>(indices + out, best_at);
}

template <int V>
__device__ __forceinline__ void max_pool_backward_nhwc_body(const void* __restrict__ dy, int dy_format,
                                                            const unsigned int* __restrict__ indices,
                                                            void* __restrict__ dx, int dx_format, int N, int C, int H,
                                                            int W, int KH, int KW, int sh, int sw, int ph, int pw,
                                                            int OH, int OW) {
    int n, ih, iw, c;
    if (!nhwc_thread<V>(blockIdx.x * blockDim.x + threadIdx.x, N, C, H, W, &n, &ih, &iw, &c)) return;
    const size_t out_image = (size_t)n * OH * OW * C + c;
    const unsigned int self = ih * W + iw;
    const int oh1 = pool_last_window(ih, sh, ph, OH), ow1 = pool_last_window(iw, sw, pw, OW);
    float sum[V] = {};
    for (int oh = pool_first_window(ih, KH, sh, ph); oh <= oh1; ++oh) {
        for (int ow = pool_first_window(iw, KW, sw, pw); ow <= ow1; ++ow) {
            const size_t o = out_image + (size_t)(oh * OW + ow) * C;
            unsigned int at[V];
            float g[V];
            pool_load<V>(indices + o, at);
            pool_load<V>(dy, o, dy_format, g);
#pragma unroll
            for (int j = 0; j < V; ++j)
                if (at[j] == self) sum[j] += g[j];
        }
    }
    pool_store<V>(dx, ((size_t)(n * H + ih) * W + iw) * C + c, dx_format, sum);
}

template <int V>
__device__ __forceinline__ void avg_pool_forward_nhwc_body(const void* __restrict__ x, int x_format,
                                                           void* __restrict__ y, int y_format, int N, int C, int H,
                                                           int W, int KH, int KW, int sh, int sw, int ph, int pw,
                                                           int OH, int OW, int count_include_pad) {
    int n, oh, ow, c;
    if (!nhwc_thread<V>(blockIdx.x * blockDim.x + threadIdx.x, N, C, OH, OW, &n, &oh, &ow, &c)) return;
    const size_t image = (size_t)n * H * W * C + c;
    const int hs = max(oh * sh - ph, 0), ws = max(ow * sw - pw, 0);
    const int he = min(oh * sh - ph + KH, H), we = min(ow * sw - pw + KW, W);
    float mean[V];
    nhwc_window_mean<V>(x, x_format, image, C, W, hs, he, ws, we,
                        (float)avg_divisor(oh, ow, H, W, KH, KW, sh, sw, ph, pw, count_include_pad), mean);
    pool_store<V>(y, ((size_t)(n * OH + oh) * OW + ow) * C + c, y_format, mean);
}

template <int V>
__device__ __forceinline__ void avg_pool_backward_nhwc_body(const void* __restrict__ dy, int dy_format,
                                                            void* __restrict__ dx, int dx_format, int N, int C, int H,
                                                            int W, int KH, int KW, int sh, int sw, int ph, int pw,
                                                            int OH, int OW, int count_include_pad) {
    int n, ih, iw, c;
    if (!nhwc_thread<V>(blockIdx.x * blockDim.x + threadIdx.x, N, C, H, W, &n, &ih, &iw, &c)) return;
    const size_t grad = (size_t)n * OH * OW * C + c;
    const int oh1 = pool_last_window(ih, sh, ph, OH), ow1 = pool_last_window(iw, sw, pw, OW);
    float sum[V] = {};
    for (int oh = pool_first_window(ih, KH, sh, ph); oh <= oh1; ++oh) {
        for (int ow = pool_first_window(iw, KW, sw, pw); ow <= ow1; ++ow) {
            const float d = (float)avg_divisor(oh, ow, H, W, KH, KW, sh, sw, ph, pw, count_include_pad);
            float g[V];
            pool_load<V>(dy, grad + (size_t)(oh * OW + ow) * C, dy_format, g);
#pragma unroll
            for (int j = 0; j < V; ++j) sum[j] += g[j] / d;
        }
    }
    pool_store<V>(dx, ((size_t)(n * H + ih) * W + iw) * C + c, dx_format, sum);
}

template <int V>
__device__ __forceinline__ void adaptive_avg_pool_forward_nhwc_body(const void* __restrict__ x, int x_format,
                                                                    void* __restrict__ y, int y_format, int N, int C,
                                                                    int H, int W, int OH, int OW) {
    int n, oh, ow, c;
    if (!nhwc_thread<V>(blockIdx.x * blockDim.x + threadIdx.x, N, C, OH, OW, &n, &oh, &ow, &c)) return;
    const size_t image = (size_t)n * H * W * C + c;
    const int hs = adaptive_start(oh, H, OH), he = adaptive_end(oh, H, OH);
    const int ws = adaptive_start(ow, W, OW), we = adaptive_end(ow, W, OW);
    float mean[V];
    nhwc_window_mean<V>(x, x_format, image, C, W, hs, he, ws, we, (float)((he - hs) * (we - ws)), mean);
    pool_store<V>(y, ((size_t)(n * OH + oh) * OW + ow) * C + c, y_format, mean);
}

template <int V>
__device__ __forceinline__ void adaptive_avg_pool_backward_nhwc_body(const void* __restrict__ dy, int dy_format,
                                                                     void* __restrict__ dx, int dx_format, int N,
                                                                     int C, int H, int W, int OH, int OW) {
    int n, ih, iw, c;
    if (!nhwc_thread<V>(blockIdx.x * blockDim.x + threadIdx.x, N, C, H, W, &n, &ih, &iw, &c)) return;
    const size_t grad = (size_t)n * OH * OW * C + c;
    const int oh0 = ih * OH / H, oh1 = ((ih + 1) * OH + H - 1) / H;
    const int ow0 = iw * OW / W, ow1 = ((iw + 1) * OW + W - 1) / W;
    float sum[V] = {};
    for (int oh = oh0; oh < oh1; ++oh) {
        const int rows = adaptive_end(oh, H, OH) - adaptive_start(oh, H, OH);
        for (int ow = ow0; ow < ow1; ++ow) {
            const float area = (float)(rows * (adaptive_end(ow, W, OW) - adaptive_start(ow, W, OW)));
            float g[V];
            pool_load<V>(dy, grad + (size_t)(oh * OW + ow) * C, dy_format, g);
#pragma unroll
            for (int j = 0; j < V; ++j) sum[j] += g[j] / area;
        }
    }
    pool_store<V>(dx, ((size_t)(n * H + ih) * W + iw) * C + c, dx_format, sum);
}

// Global average pooling (adaptive to 1x1), channels last: one block per (image, 32 * V channels).
// A warp's lanes take consecutive channel groups, so each pixel's channel row is read in one
// contiguous piece, and the block's GAP_ROWS warps take every GAP_ROWS-th pixel; their partial sums
// meet in shared memory. blockIdx.x = n * chunks + chunk.
#define GAP_ROWS 8
#define GAP_THREADS (GAP_ROWS * FERRO_WARP)

template <int V>
__device__ __forceinline__ void global_avg_pool_nhwc_body(const void* __restrict__ x, int x_format,
                                                          void* __restrict__ y, int y_format, int C, int HW,
                                                          int chunks) {
    // [row][lane j of the group][lane]: a warp's stores hit 32 consecutive words.
    __shared__ float partial[GAP_ROWS][V][FERRO_WARP];
    const int lane = threadIdx.x % FERRO_WARP, row = threadIdx.x / FERRO_WARP;
    const int n = blockIdx.x / chunks;
    const int c = ((blockIdx.x - n * chunks) * FERRO_WARP + lane) * V;
    float sum[V] = {};
    if (c < C) {
        const size_t image = (size_t)n * HW * C + c;
        for (int p = row; p < HW; p += GAP_ROWS) {
            float v[V];
            pool_load<V>(x, image + (size_t)p * C, x_format, v);
#pragma unroll
            for (int j = 0; j < V; ++j) sum[j] += v[j];
        }
    }
#pragma unroll
    for (int j = 0; j < V; ++j) partial[row][j][lane] = sum[j];
    __syncthreads();
    if (row != 0 || c >= C) return;
#pragma unroll
    for (int j = 0; j < V; ++j) {
        float total = 0.f;
        for (int r = 0; r < GAP_ROWS; ++r) total += partial[r][j][lane];
        sum[j] = total / (float)HW;
    }
    pool_store<V>(y, (size_t)n * C + c, y_format, sum);
}

// The entry points: each body at V = 1 and, suffixed _vec4, at V = 4. X and Y are the input and
// output buffers with their formats; the rest of the arguments follow the body's.
#define POOL_WINDOW_ARGS int N, int C, int H, int W, int KH, int KW, int sh, int sw, int ph, int pw, int OH, int OW
#define POOL_WINDOW_NAMES N, C, H, W, KH, KW, sh, sw, ph, pw, OH, OW
#define POOL_IN const void* __restrict__ in, int in_format
#define POOL_OUT void* __restrict__ out, int out_format

#define POOL_ENTRY_POINTS(name, V)                                                                                  \
    extern "C" __global__ void max_pool_forward_nhwc##name(POOL_IN, POOL_OUT, unsigned int* __restrict__ indices,   \
                                                           POOL_WINDOW_ARGS) {                                      \
        max_pool_forward_nhwc_body<V>(in, in_format, out, out_format, indices, POOL_WINDOW_NAMES);                  \
    }                                                                                                               \
    extern "C" __global__ void max_pool_backward_nhwc##name(POOL_IN, const unsigned int* __restrict__ indices,      \
                                                            POOL_OUT, POOL_WINDOW_ARGS) {                           \
        max_pool_backward_nhwc_body<V>(in, in_format, indices, out, out_format, POOL_WINDOW_NAMES);                 \
    }                                                                                                               \
    extern "C" __global__ void avg_pool_forward_nhwc##name(POOL_IN, POOL_OUT, POOL_WINDOW_ARGS,                     \
                                                           int count_include_pad) {                                 \
        avg_pool_forward_nhwc_body<V>(in, in_format, out, out_format, POOL_WINDOW_NAMES, count_include_pad);        \
    }                                                                                                               \
    extern "C" __global__ void avg_pool_backward_nhwc##name(POOL_IN, POOL_OUT, POOL_WINDOW_ARGS,                    \
                                                            int count_include_pad) {                                \
        avg_pool_backward_nhwc_body<V>(in, in_format, out, out_format, POOL_WINDOW_NAMES, count_include_pad);       \
    }                                                                                                               \
    extern "C" __global__ void adaptive_avg_pool_forward_nhwc##name(POOL_IN, POOL_OUT, int N, int C, int H, int W,  \
                                                                    int OH, int OW) {                               \
        adaptive_avg_pool_forward_nhwc_body<V>(in, in_format, out, out_format, N, C, H, W, OH, OW);                 \
    }                                                                                                               \
    extern "C" __global__ void adaptive_avg_pool_backward_nhwc##name(POOL_IN, POOL_OUT, int N, int C, int H, int W, \
                                                                     int OH, int OW) {                              \
        adaptive_avg_pool_backward_nhwc_body<V>(in, in_format, out, out_format, N, C, H, W, OH, OW);                \
    }                                                                                                               \
    extern "C" __global__ void __launch_bounds__(GAP_THREADS)                                                       \
        global_avg_pool_nhwc##name(POOL_IN, POOL_OUT, int C, int HW, int chunks) {                                  \
        global_avg_pool_nhwc_body<V>(in, in_format, out, out_format, C, HW, chunks);                                \
    }

POOL_ENTRY_POINTS(, 1)
POOL_ENTRY_POINTS(_vec4, 4)
