// Max, average and adaptive-average pooling, channels first (NCHW) and channels last (NHWC). Each
// output is computed by one thread forwards and each input's gradient by one thread backwards (a
// gather over the windows that contain it, so overlapping windows and ceil mode need no atomics);
// a thread takes 1 or 4 of them. Geometry as in src/ops/pool/mod.rs. Values are read and written
// in their stored formats (kernels/stored.cuh: x and dy as given, y in x's format, dx in dy's),
// summed in f32 and rounded once at the store; indices stay u32.
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

// PyTorch's average-pool divisor: the window clipped to the padded input, and further to the real
// input unless padding counts.
__device__ __forceinline__ int avg_divisor(int oh, int ow, int H, int W, int KH, int KW, int sh,
                                           int sw, int ph, int pw, int count_include_pad) {
    int hs = oh * sh - ph, ws = ow * sw - pw;
    int he = min(hs + KH, H + ph), we = min(ws + KW, W + pw);
    if (count_include_pad) return (he - hs) * (we - ws);
    return (min(he, H) - max(hs, 0)) * (min(we, W) - max(ws, 0));
}

// Output i of an adaptive pool covers input [floor(i*L/O), ceil((i+1)*L/O)).
__device__ __forceinline__ int adaptive_start(int i, int len, int out) { return i * len / out; }
__device__ __forceinline__ int adaptive_end(int i, int len, int out) { return ((i + 1) * len + out - 1) / out; }

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

// ---- Channels first: x [planes, H, W] -> y [planes, OH, OW]. One thread per V consecutive
// outputs of a row forwards and per V consecutive inputs of a row backwards, so y, the indices
// and dx move in one access per thread: V = 4 (16 bytes of f32, 8 of 16-bit values) where the
// host found the written rows a multiple of 4 long and every buffer 16-byte aligned. A thread
// walks each row of the union of its V windows in V-value pieces starting at multiples of V, one
// aligned 4-value load each when the read rows are a multiple of 4 long too (else value by value),
// and hands each value to those of its outputs (inputs) whose window holds it. Every output thus
// sees its values in the row-major order of V = 1, so sums, ties and NaNs come out bit for bit as
// with one value per thread.

// Values col .. col+V-1 of the row of `len` values starting at element `row` of p (col a multiple
// of V; with V = 1 inside the row); values past the row's end read as 0 (no window holds them).
template <int V>
__device__ __forceinline__ void pool_piece(const void* __restrict__ p, size_t row, int col, int len, int format,
                                           float (&v)[V]) {
    if (V == 1 || len % 4 == 0) {
        pool_load<V>(p, row + col, format, v);
        return;
    }
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] = col + k < len ? ferro_load(p, row + col + k, format) : 0.f;
}

// Indices likewise, past the row's end reading as no plane offset.
template <int V>
__device__ __forceinline__ void pool_piece(const unsigned int* __restrict__ p, size_t row, int col, int len,
                                           unsigned int (&v)[V]) {
    if (V == 1 || len % 4 == 0) {
        pool_load<V>(p + row + col, v);
        return;
    }
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] = col + k < len ? p[row + col + k] : 0xffffffffu;
}

// Whether column col of a piece lies in [lo, hi): always with V = 1, whose pieces walk one window.
template <int V>
__device__ __forceinline__ bool pool_holds(int col, int lo, int hi) {
    return V == 1 || (col >= lo && col < hi);
}

// Thread idx's V consecutive values of a row of a [planes, rows, cols] tensor (cols a multiple of
// V): the flat index of the first, its plane, row and column; false past the end.
template <int V>
__device__ __forceinline__ bool nchw_thread(int idx, int planes, int rows, int cols, int* first, int* plane, int* r,
                                            int* col) {
    if (idx >= planes * rows * cols / V) return false;
    *first = idx * V;
    *col = *first % cols;
    *r = (*first / cols) % rows;
    *plane = *first / (cols * rows);
    return true;
}

// The windows of outputs ow .. ow+V-1 along W, clipped to the input: [ws[j], we[j]).
template <int V>
__device__ __forceinline__ void nchw_column_windows(int ow, int W, int KW, int sw, int pw, int (&ws)[V], int (&we)[V]) {
#pragma unroll
    for (int j = 0; j < V; ++j) {
        const int w0 = (ow + j) * sw - pw;
        ws[j] = max(w0, 0);
        we[j] = min(w0 + KW, W);
    }
}

// Per output j, the sum of x's plane starting at element `plane` over rows [hs, he) and columns
// [ws[j], we[j]) (each non-decreasing in j).
template <int V>
__device__ __forceinline__ void nchw_window_sums(const void* __restrict__ x, int x_format, size_t plane, int W,
                                                 int hs, int he, const int (&ws)[V], const int (&we)[V],
                                                 float (&sum)[V]) {
#pragma unroll
    for (int j = 0; j < V; ++j) sum[j] = 0.f;
    for (int ih = hs; ih < he; ++ih) {
        for (int col = ws[0] / V * V; col < we[V - 1]; col += V) {
            float v[V];
            pool_piece<V>(x, plane + (size_t)ih * W, col, W, x_format, v);
#pragma unroll
            for (int k = 0; k < V; ++k) {
#pragma unroll
                for (int j = 0; j < V; ++j)
                    if (pool_holds<V>(col + k, ws[j], we[j])) sum[j] += v[k];
            }
        }
    }
}

// Per input j, the sum of dy / divisor(oh, ow) over the outputs of dy's plane starting at element
// `grad` in rows [oh0, oh1) and columns [ow0[j], ow1[j]) (each non-decreasing in j).
template <int V, typename Divisor>
__device__ __forceinline__ void nchw_gather_means(const void* __restrict__ dy, int dy_format, size_t grad, int OW,
                                                  int oh0, int oh1, const int (&ow0)[V], const int (&ow1)[V],
                                                  Divisor divisor, float (&sum)[V]) {
#pragma unroll
    for (int j = 0; j < V; ++j) sum[j] = 0.f;
    for (int oh = oh0; oh < oh1; ++oh) {
        for (int col = ow0[0] / V * V; col < ow1[V - 1]; col += V) {
            float g[V];
            pool_piece<V>(dy, grad + (size_t)oh * OW, col, OW, dy_format, g);
#pragma unroll
            for (int k = 0; k < V; ++k) {
                const float d = divisor(oh, col + k);
#pragma unroll
                for (int j = 0; j < V; ++j)
                    if (pool_holds<V>(col + k, ow0[j], ow1[j])) sum[j] += g[k] / d;
            }
        }
    }
}

// y = max over the window, idx = argmax as ih * W + iw within the (n, c) plane. Padding never wins;
// among equal values the first in row-major order does; the first NaN wins and stays, so NaN
// propagates as in PyTorch.
template <int V>
__device__ __forceinline__ void max_pool_forward_body(const void* __restrict__ x, int x_format, void* __restrict__ y,
                                                      int y_format, unsigned int* __restrict__ indices, int planes,
                                                      int H, int W, int KH, int KW, int sh, int sw, int ph, int pw,
                                                      int OH, int OW) {
    int first, plane, oh, ow;
    if (!nchw_thread<V>(blockIdx.x * blockDim.x + threadIdx.x, planes, OH, OW, &first, &plane, &oh, &ow)) return;
    const size_t image = (size_t)plane * H * W;
    const int he = min(oh * sh - ph + KH, H), hs = max(oh * sh - ph, 0);
    int ws[V], we[V];
    nchw_column_windows<V>(ow, W, KW, sw, pw, ws, we);
    float best[V];
    unsigned int best_at[V];
#pragma unroll
    for (int j = 0; j < V; ++j) {
        best[j] = -FERRO_INF;
        best_at[j] = hs * W + ws[j];
    }
    for (int ih = hs; ih < he; ++ih) {
        for (int col = ws[0] / V * V; col < we[V - 1]; col += V) {
            float v[V];
            pool_piece<V>(x, image + (size_t)ih * W, col, W, x_format, v);
#pragma unroll
            for (int k = 0; k < V; ++k) {
#pragma unroll
                for (int j = 0; j < V; ++j) {
                    const bool inside = pool_holds<V>(col + k, ws[j], we[j]);
                    if (inside && (v[k] > best[j] || (isnan(v[k]) && !isnan(best[j])))) {
                        best[j] = v[k];
                        best_at[j] = ih * W + col + k;
                    }
                }
            }
        }
    }
    pool_store<V>(y, first, y_format, best);
    pool_store<V>(indices + first, best_at);
}

// dx[i] = sum of dy over the windows containing i whose argmax is i. An output's argmax lies in
// its window, so matching the index alone picks those windows among any of the row: outputs
// outside the thread's window range never name its inputs. A piece of dy is read only where an
// index of the piece names one of them.
template <int V>
__device__ __forceinline__ void max_pool_backward_body(const void* __restrict__ dy, int dy_format,
                                                       const unsigned int* __restrict__ indices,
                                                       void* __restrict__ dx, int dx_format, int planes, int H, int W,
                                                       int KH, int KW, int sh, int sw, int ph, int pw, int OH, int OW) {
    int first, plane, ih, iw;
    if (!nchw_thread<V>(blockIdx.x * blockDim.x + threadIdx.x, planes, H, W, &first, &plane, &ih, &iw)) return;
    const size_t grad = (size_t)plane * OH * OW;
    const unsigned int self = ih * W + iw;
    const int ow0 = pool_first_window(iw, KW, sw, pw), ow1 = pool_last_window(iw + V - 1, sw, pw, OW);
    const int oh1 = pool_last_window(ih, sh, ph, OH);
    float sum[V] = {};
    for (int oh = pool_first_window(ih, KH, sh, ph); oh <= oh1; ++oh) {
        const size_t row = grad + (size_t)oh * OW;
        for (int col = ow0 / V * V; col <= ow1; col += V) {
            unsigned int at[V];
            pool_piece<V>(indices, row, col, OW, at);
            // Which of the thread's inputs each index names: input at[k] - self if below V.
            bool any = false;
#pragma unroll
            for (int k = 0; k < V; ++k) {
                at[k] -= self;
                any |= at[k] < V;
            }
            if (!any) continue;
            float g[V];
            pool_piece<V>(dy, row, col, OW, dy_format, g);
#pragma unroll
            for (int k = 0; k < V; ++k) {
#pragma unroll
                for (int j = 0; j < V; ++j)
                    if (at[k] == (unsigned int)j) sum[j] += g[k];
            }
        }
    }
    pool_store<V>(dx, first, dx_format, sum);
}

template <int V>
__device__ __forceinline__ void avg_pool_forward_body(const void* __restrict__ x, int x_format, void* __restrict__ y,
                                                      int y_format, int planes, int H, int W, int KH, int KW, int sh,
                                                      int sw, int ph, int pw, int OH, int OW, int count_include_pad) {
    int first, plane, oh, ow;
    if (!nchw_thread<V>(blockIdx.x * blockDim.x + threadIdx.x, planes, OH, OW, &first, &plane, &oh, &ow)) return;
    int ws[V], we[V];
    nchw_column_windows<V>(ow, W, KW, sw, pw, ws, we);
    float mean[V];
    nchw_window_sums<V>(x, x_format, (size_t)plane * H * W, W, max(oh * sh - ph, 0), min(oh * sh - ph + KH, H), ws,
                        we, mean);
#pragma unroll
    for (int j = 0; j < V; ++j)
        mean[j] /= (float)avg_divisor(oh, ow + j, H, W, KH, KW, sh, sw, ph, pw, count_include_pad);
    pool_store<V>(y, first, y_format, mean);
}

template <int V>
__device__ __forceinline__ void avg_pool_backward_body(const void* __restrict__ dy, int dy_format,
                                                       void* __restrict__ dx, int dx_format, int planes, int H, int W,
                                                       int KH, int KW, int sh, int sw, int ph, int pw, int OH, int OW,
                                                       int count_include_pad) {
    int first, plane, ih, iw;
    if (!nchw_thread<V>(blockIdx.x * blockDim.x + threadIdx.x, planes, H, W, &first, &plane, &ih, &iw)) return;
    int ow0[V], ow1[V];
#pragma unroll
    for (int j = 0; j < V; ++j) {
        ow0[j] = pool_first_window(iw + j, KW, sw, pw);
        ow1[j] = pool_last_window(iw + j, sw, pw, OW) + 1;
    }
    float sum[V];
    nchw_gather_means<V>(dy, dy_format, (size_t)plane * OH * OW, OW, pool_first_window(ih, KH, sh, ph),
                         pool_last_window(ih, sh, ph, OH) + 1, ow0, ow1,
                         [&](int oh, int ow) {
                             return (float)avg_divisor(oh, ow, H, W, KH, KW, sh, sw, ph, pw, count_include_pad);
                         },
                         sum);
    pool_store<V>(dx, first, dx_format, sum);
}

template <int V>
__device__ __forceinline__ void adaptive_avg_pool_forward_body(const void* __restrict__ x, int x_format,
                                                               void* __restrict__ y, int y_format, int planes, int H,
                                                               int W, int OH, int OW) {
    int first, plane, oh, ow;
    if (!nchw_thread<V>(blockIdx.x * blockDim.x + threadIdx.x, planes, OH, OW, &first, &plane, &oh, &ow)) return;
    const int hs = adaptive_start(oh, H, OH), he = adaptive_end(oh, H, OH);
    int ws[V], we[V];
#pragma unroll
    for (int j = 0; j < V; ++j) {
        ws[j] = adaptive_start(ow + j, W, OW);
        we[j] = adaptive_end(ow + j, W, OW);
    }
    float mean[V];
    nchw_window_sums<V>(x, x_format, (size_t)plane * H * W, W, hs, he, ws, we, mean);
#pragma unroll
    for (int j = 0; j < V; ++j) mean[j] /= (float)((he - hs) * (we[j] - ws[j]));
    pool_store<V>(y, first, y_format, mean);
}

// The outputs whose range contains input i are floor(i*O/L) .. ceil((i+1)*O/L) - 1.
template <int V>
__device__ __forceinline__ void adaptive_avg_pool_backward_body(const void* __restrict__ dy, int dy_format,
                                                                void* __restrict__ dx, int dx_format, int planes,
                                                                int H, int W, int OH, int OW) {
    int first, plane, ih, iw;
    if (!nchw_thread<V>(blockIdx.x * blockDim.x + threadIdx.x, planes, H, W, &first, &plane, &ih, &iw)) return;
    int ow0[V], ow1[V];
#pragma unroll
    for (int j = 0; j < V; ++j) {
        ow0[j] = (iw + j) * OW / W;
        ow1[j] = ((iw + j + 1) * OW + W - 1) / W;
    }
    float sum[V];
    nchw_gather_means<V>(dy, dy_format, (size_t)plane * OH * OW, OW, ih * OH / H, ((ih + 1) * OH + H - 1) / H, ow0,
                         ow1,
                         [&](int oh, int ow) {
                             const int rows = adaptive_end(oh, H, OH) - adaptive_start(oh, H, OH);
                             return (float)(rows * (adaptive_end(ow, W, OW) - adaptive_start(ow, W, OW)));
                         },
                         sum);
    pool_store<V>(dx, first, dx_format, sum);
}

// Global average pooling (adaptive to 1x1), channels first: each contiguous H*W plane is summed
// by a run of `group` lanes (a power of two up to 32 that the host sizes to the plane: a few
// pieces per lane, so that the shuffle tree serves several loads and small planes share a warp),
// lane k reading the plane's V-value pieces k, k + group, ... so that a run's loads cover
// consecutive memory; V = 4 (16 bytes of f32, 8 of 16-bit values) where the host found H*W a
// multiple of 4 and the buffers 16-byte aligned. The run's shuffle tree adds the lanes' f32 sums,
// and its first lane writes the mean. Lanes past the last plane add nothing but stay for the
// shuffles.
template <int V>
__device__ __forceinline__ void global_avg_pool_body(const void* __restrict__ x, int x_format, void* __restrict__ y,
                                                     int y_format, int planes, int HW, int group) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    const int plane = t / group, lane = t % group;
    float sum = 0.f;
    if (plane < planes) {
        const size_t start = (size_t)plane * HW;
        // Every lane of the warp takes the same rounds (the last one partial), so the lanes do
        // not part ways into loads of their own.
        for (int round = 0; round < HW; round += group * V) {
            const int i = round + lane * V;
            if (i < HW) {
                float v[V];
                pool_load<V>(x, start + i, x_format, v);
#pragma unroll
                for (int j = 0; j < V; ++j) sum += v[j];
            }
        }
    }
    sum = ferro_warp_reduce<FerroSum>(sum, group);
    if (plane < planes && lane == 0) ferro_store(y, plane, sum / (float)HW, y_format);
}

// ---- Channels last: x [N, H, W, C] -> y [N, OH, OW, C]. One thread per V channels of an output
// pixel forwards and of an input pixel backwards (the same gathers as above), so a warp's loads
// and stores run along C, contiguous. V = 4 moves 4 values at once (16 bytes of f32, 8 of 16-bit
// values); the host picks it when C % 4 == 0 and every buffer is 16-byte aligned. Max-pool
// indices lie in y's order and keep the channels-first meaning, ih * W + iw within the (n, c)
// plane.

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

// The entry points: each body at V = 1 and, suffixed _vec4, at V = 4. `in` and `out` are the
// input and output buffers with their formats; the rest of the arguments follow the body's.
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

#define NCHW_WINDOW_ARGS int planes, int H, int W, int KH, int KW, int sh, int sw, int ph, int pw, int OH, int OW
#define NCHW_WINDOW_NAMES planes, H, W, KH, KW, sh, sw, ph, pw, OH, OW

#define NCHW_POOL_ENTRY_POINTS(name, V)                                                                             \
    extern "C" __global__ void max_pool_forward##name(POOL_IN, POOL_OUT, unsigned int* __restrict__ indices,        \
                                                      NCHW_WINDOW_ARGS) {                                           \
        max_pool_forward_body<V>(in, in_format, out, out_format, indices, NCHW_WINDOW_NAMES);                       \
    }                                                                                                               \
    extern "C" __global__ void max_pool_backward##name(POOL_IN, const unsigned int* __restrict__ indices, POOL_OUT, \
                                                       NCHW_WINDOW_ARGS) {                                          \
        max_pool_backward_body<V>(in, in_format, indices, out, out_format, NCHW_WINDOW_NAMES);                      \
    }                                                                                                               \
    extern "C" __global__ void avg_pool_forward##name(POOL_IN, POOL_OUT, NCHW_WINDOW_ARGS, int count_include_pad) { \
        avg_pool_forward_body<V>(in, in_format, out, out_format, NCHW_WINDOW_NAMES, count_include_pad);             \
    }                                                                                                               \
    extern "C" __global__ void avg_pool_backward##name(POOL_IN, POOL_OUT, NCHW_WINDOW_ARGS,                         \
                                                       int count_include_pad) {                                     \
        avg_pool_backward_body<V>(in, in_format, out, out_format, NCHW_WINDOW_NAMES, count_include_pad);            \
    }                                                                                                               \
    extern "C" __global__ void adaptive_avg_pool_forward##name(POOL_IN, POOL_OUT, int planes, int H, int W, int OH, \
                                                               int OW) {                                            \
        adaptive_avg_pool_forward_body<V>(in, in_format, out, out_format, planes, H, W, OH, OW);                    \
    }                                                                                                               \
    extern "C" __global__ void adaptive_avg_pool_backward##name(POOL_IN, POOL_OUT, int planes, int H, int W,        \
                                                                int OH, int OW) {                                   \
        adaptive_avg_pool_backward_body<V>(in, in_format, out, out_format, planes, H, W, OH, OW);                   \
    }                                                                                                               \
    extern "C" __global__ void global_avg_pool##name(POOL_IN, POOL_OUT, int planes, int HW, int group) {            \
        global_avg_pool_body<V>(in, in_format, out, out_format, planes, HW, group);                                 \
    }

NCHW_POOL_ENTRY_POINTS(, 1)
NCHW_POOL_ENTRY_POINTS(_vec4, 4)
