// Depthwise convolution on channels-last tensors (x, y, dx, dy [N, H, W, C]; the weight stays
// [C_out, 1, KH, KW]; output channel co reads input channel co / mult). Threads run along the
// channels, so a warp reads and writes the contiguous channels of one pixel (coalesced).
//
// Specialised kernels (the host's `specialised` in src/ops/conv/depthwise_nhwc.rs): a square 3x3
// or 5x5 window (K) at stride 1 or 2 (S) in both directions, no dilation, multiplier 1, any
// padding. K and S are template parameters, so every tap loop unrolls. A thread takes V channels
// (V = 4: one 16-byte f32 or 8-byte 16-bit load per pixel, when C % 4 == 0 and the tensors are
// 16-byte aligned) and
// DWN_COLS consecutive columns, so each input (or dy) column its window spans is loaded once for
// all of them instead of once per tap. The generic kernels take every other geometry. The
// forward and data-gradient kernels read the weight packed tap-major ([KH * KW, C_out],
// depthwise_nhwc_pack_weights), so a warp's weight loads are contiguous channels too.
//
// x and dy are read, y and dx written, in each pointer's stored format (kernels/stored.cuh; y takes
// x's, dx dy's), computing in f32 and rounding once at the store; the weight, bias and the
// filter gradient's sums stay f32.
#include "common.cuh"
#include "stored.cuh"

// Consecutive columns one thread of a specialised kernel computes (forward: output columns; data
// gradient: input columns; filter gradient: output columns whose products it sums).
#define DWN_COLS 4
// Threads of a filter-gradient block: blockDim.x lanes along the channels by blockDim.y along the
// pixels, as many channel lanes as the channels (or groups of V) up to all of them.
#define DWN_FILTER_THREADS 256

// V consecutive channels of one pixel: elements i .. i + V - 1 of p, stored in `format` (V = 4: one
// 16-byte f32 or 8-byte 16-bit access, i a multiple of 4).
template <int V> struct DwnVec {
    float v[V];
    __device__ __forceinline__ static DwnVec load(const void* p, size_t i, int format) {
        DwnVec r;
        if constexpr (V == 4) {
            float4 q = ferro_load4(p, (long long)i, format);
            r.v[0] = q.x;
            r.v[1] = q.y;
            r.v[2] = q.z;
            r.v[3] = q.w;
        } else {
#pragma unroll
            for (int k = 0; k < V; ++k) r.v[k] = ferro_load(p, (long long)(i + k), format);
        }
        return r;
    }
    __device__ __forceinline__ void store(void* p, size_t i, int format) const {
        if constexpr (V == 4) {
            ferro_store4(p, (long long)i, make_float4(v[0], v[1], v[2], v[3]), format);
        } else {
#pragma unroll
            for (int k = 0; k < V; ++k) ferro_store(p, (long long)(i + k), v[k], format);
        }
    }
};

// wt[tap * C_out + co] = w[co * taps + tap], one thread per element of wt.
extern "C" __global__ void depthwise_nhwc_pack_weights(const float* __restrict__ w, float* __restrict__ wt, int C_out,
                                                       int taps) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= C_out * taps) return;
    int tap = idx / C_out;
    int co = idx - tap * C_out;
    wt[idx] = w[(size_t)co * taps + tap];
}

// Row `ki` of the K x K filters of channels c .. c + V - 1 from the packed weight: wr[kj][v].
template <int K, int V>
__device__ __forceinline__ void dwn_filter_row(float (&wr)[K][V], const float* wt, int C, int c, int ki) {
#pragma unroll
    for (int kj = 0; kj < K; ++kj) {
        DwnVec<V> f = DwnVec<V>::load(wt, (size_t)(ki * K + kj) * C + c, FERRO_F32);
#pragma unroll
        for (int v = 0; v < V; ++v) wr[kj][v] = f.v[v];
    }
}

// The part of the output a thread of the specialised forward or data-gradient kernels computes
// (rows x cols planes, their C channels in groups of V): thread idx = ((n * rows + row) * runs +
// run) * (C / V) + group takes channels c = group * V .. + V - 1 of columns col0 = run * DWN_COLS
// .. + DWN_COLS - 1 of row `row` of image n.
struct DwnRun {
    int n, row, col0, c;
    // Thread idx's part; false for the threads past the output.
    __device__ __forceinline__ bool at(int idx, int N, int rows, int cols, int C, int V) {
        int groups = C / V;
        int runs = (cols + DWN_COLS - 1) / DWN_COLS;
        if (idx >= N * rows * runs * groups) return false;
        c = idx % groups * V;
        int rest = idx / groups;
        col0 = rest % runs * DWN_COLS;
        rest /= runs;
        row = rest % rows;
        n = rest / rows;
        return true;
    }
    // The thread's sums (acc[column][channel]) stored to the NHWC output `out` in `format`, the
    // columns past `cols` left out.
    template <int V>
    __device__ __forceinline__ void store(void* out, int format, const float (&acc)[DWN_COLS][V], int rows, int cols,
                                          int C) const {
        size_t first = (((size_t)n * rows + row) * cols + col0) * C + c;
#pragma unroll
        for (int j = 0; j < DWN_COLS; ++j) {
            if (col0 + j >= cols) break;
            DwnVec<V> r;
#pragma unroll
            for (int v = 0; v < V; ++v) r.v[v] = acc[j][v];
            r.store(out, first + (size_t)j * C, format);
        }
    }
};

// The input columns iw0 .. iw0 + (DWN_COLS - 1) * S + K - 1 of one input row (starting at element
// `row` of x, stored in `format`) that a run of DWN_COLS output columns at stride S reads, each
// inside 0..W loaded once: `tap(j, kj, in)` for every output column j whose tap kj reads it (all
// compile-time after unrolling).
template <int K, int S, int V, class Tap>
__device__ __forceinline__ void dwn_row_taps(const void* x, size_t row, int format, int iw0, int W, int C, Tap tap) {
    constexpr int IN_COLS = (DWN_COLS - 1) * S + K;
#pragma unroll
    for (int col = 0; col < IN_COLS; ++col) {
        int iw = iw0 + col;
        if (iw < 0 || iw >= W) continue;
        DwnVec<V> in = DwnVec<V>::load(x, row + (size_t)iw * C, format);
#pragma unroll
        for (int j = 0; j < DWN_COLS; ++j) {
            int kj = col - j * S;
            if (kj >= 0 && kj < K) tap(j, kj, in);
        }
    }
}

// ---- Forward: a DwnRun of y per thread.
template <int K, int S, int V>
__device__ __forceinline__ void dwn_forward(const void* __restrict__ x, int x_format, const float* __restrict__ wt,
                                            const float* __restrict__ bias, void* __restrict__ y, int y_format, int N,
                                            int C, int H, int W, int ph, int pw, int OH, int OW, int has_bias) {
    DwnRun run;
    if (!run.at(blockIdx.x * blockDim.x + threadIdx.x, N, OH, OW, C, V)) return;
    int n = run.n, oh = run.row, c = run.c;
    float acc[DWN_COLS][V];
#pragma unroll
    for (int v = 0; v < V; ++v) {
        float b = has_bias ? bias[c + v] : 0.f;
#pragma unroll
        for (int j = 0; j < DWN_COLS; ++j) acc[j][v] = b;
    }
    int iw0 = run.col0 * S - pw;
#pragma unroll
    for (int ki = 0; ki < K; ++ki) {
        int ih = oh * S - ph + ki;
        if (ih < 0 || ih >= H) continue;
        float wr[K][V];
        dwn_filter_row<K, V>(wr, wt, C, c, ki);
        size_t row = ((size_t)n * H + ih) * W * C + c;
        dwn_row_taps<K, S, V>(x, row, x_format, iw0, W, C, [&](int j, int kj, const DwnVec<V>& in) {
#pragma unroll
            for (int v = 0; v < V; ++v) acc[j][v] = fmaf(in.v[v], wr[kj][v], acc[j][v]);
        });
    }
    run.store<V>(y, y_format, acc, OH, OW, C);
}

// ---- Data gradient: dx[ih][iw] = sum over taps (ki, kj) with ih + ph - ki = S * oh and
// iw + pw - kj = S * ow of dy[oh][ow] * w[ki][kj]; a DwnRun of dx per thread (input columns iw0 =
// col0 .. + DWN_COLS - 1 of row ih).

// One dy row's contribution. The thread's columns reach dy columns from ow_lo = floor((iw0 + pw -
// (K - 1)) / S) on, OFF = iw0 + pw - (K - 1) - S * ow_lo (0 .. S - 1, a template parameter so
// that the tap of each (dy column, dx column) pair is known at compile time):
// kj = OFF + K - 1 + j - S * q for dy column ow_lo + q and dx column iw0 + j.
template <int K, int S, int V, int OFF>
__device__ __forceinline__ void dwn_data_row(float (&acc)[DWN_COLS][V], const float (&wr)[K][V],
                                             const void* dy, size_t dy_row, int dy_format, int ow_lo, int OW,
                                             int C) {
    constexpr int Q = (OFF + K - 1 + DWN_COLS - 1) / S + 1;
#pragma unroll
    for (int q = 0; q < Q; ++q) {
        int ow = ow_lo + q;
        if (ow < 0 || ow >= OW) continue;
        DwnVec<V> g = DwnVec<V>::load(dy, dy_row + (size_t)ow * C, dy_format);
#pragma unroll
        for (int j = 0; j < DWN_COLS; ++j) {
            int kj = OFF + K - 1 + j - S * q;
            if (kj < 0 || kj >= K) continue;
#pragma unroll
            for (int v = 0; v < V; ++v) acc[j][v] = fmaf(g.v[v], wr[kj][v], acc[j][v]);
        }
    }
}

// a / b rounded down (b > 0), for indices that may start left of 0.
__device__ __forceinline__ int dwn_floor_div(int a, int b) { return a >= 0 ? a / b : -((b - 1 - a) / b); }

template <int K, int S, int V>
__device__ __forceinline__ void dwn_backward_data(const void* __restrict__ dy, int dy_format,
                                                  const float* __restrict__ wt, void* __restrict__ dx, int dx_format,
                                                  int N, int C, int H, int W, int ph, int pw, int OH, int OW) {
    DwnRun run;
    if (!run.at(blockIdx.x * blockDim.x + threadIdx.x, N, H, W, C, V)) return;
    int n = run.n, ih = run.row, c = run.c;
    float acc[DWN_COLS][V];
#pragma unroll
    for (int j = 0; j < DWN_COLS; ++j)
#pragma unroll
        for (int v = 0; v < V; ++v) acc[j][v] = 0.f;
    int base = run.col0 + pw - (K - 1);
    int ow_lo = dwn_floor_div(base, S);
    int off = base - S * ow_lo;
#pragma unroll
    for (int ki = 0; ki < K; ++ki) {
        int t = ih + ph - ki;
        if (t < 0 || t % S != 0 || t / S >= OH) continue;
        float wr[K][V];
        dwn_filter_row<K, V>(wr, wt, C, c, ki);
        size_t dy_row = ((size_t)n * OH + t / S) * OW * C + c;
        if constexpr (S == 1) {
            dwn_data_row<K, S, V, 0>(acc, wr, dy, dy_row, dy_format, ow_lo, OW, C);
        } else {
            if (off == 0) dwn_data_row<K, S, V, 0>(acc, wr, dy, dy_row, dy_format, ow_lo, OW, C);
            else dwn_data_row<K, S, V, 1>(acc, wr, dy, dy_row, dy_format, ow_lo, OW, C);
        }
    }
    run.store<V>(dx, dx_format, acc, H, W, C);
}

// ---- Filter gradient, in blocks of blockDim.x channel lanes by blockDim.y pixel lanes: each thread
// sums its channels' products over every blockDim.y-th item of its block's chunk of items (pixels,
// or runs of columns), then the block adds its pixel lanes' sums (`dwn_sum_lanes`) and writes
// out[(chunk * C_out + co) * KH * KW + tap]; the host sums the chunks (splitk_reduce) when there
// are several.

// The filter-gradient blocks' dynamic shared memory: their threads' sums for dwn_sum_lanes.
extern __shared__ float dwn_sums[];

// The block's KV sums per thread added over its pixel lanes: `write(e, total)` for each of the
// KV * blockDim.x totals, e = kv * blockDim.x + channel lane. `sums` (dynamic shared memory) holds
// blockDim.y * KV * blockDim.x floats; one barrier orders its writes before the reads.
template <int KV, class Write>
__device__ __forceinline__ void dwn_sum_lanes(const float (&acc)[KV], float* sums, Write write) {
#pragma unroll
    for (int kv = 0; kv < KV; ++kv) sums[(threadIdx.y * KV + kv) * blockDim.x + threadIdx.x] = acc[kv];
    __syncthreads();
    int tid = threadIdx.y * blockDim.x + threadIdx.x;
    int totals = KV * blockDim.x;
    for (int e = tid; e < totals; e += blockDim.x * blockDim.y) {
        float total = 0.f;
        for (int lane = 0; lane < blockDim.y; ++lane) total += sums[lane * totals + e];
        write(e, total);
    }
}

// Specialised: blockIdx.z is the filter row ki, blockIdx.y the chunk; an item is a run of
// DWN_COLS output columns of one output row (item = (n * OH + oh) * runs + run), whose dy values
// the thread loads once and whose input row's columns it loads once for every tap of row ki.
template <int K, int S, int V>
__device__ __forceinline__ void dwn_backward_filter(const void* __restrict__ x, int x_format,
                                                    const void* __restrict__ dy, int dy_format,
                                                    float* __restrict__ out, int N, int C, int H, int W,
                                                    int ph, int pw, int OH, int OW, int chunks) {
    int groups = C / V;
    int group = blockIdx.x * blockDim.x + threadIdx.x;
    int c = group * V;
    int ki = blockIdx.z;
    int runs = (OW + DWN_COLS - 1) / DWN_COLS;
    int items = N * OH * runs;
    int per_chunk = (items + chunks - 1) / chunks;
    int begin = blockIdx.y * per_chunk;
    int end = min(items, begin + per_chunk);
    float acc[K * V];
#pragma unroll
    for (int kv = 0; kv < K * V; ++kv) acc[kv] = 0.f;
    if (group < groups) {
        for (int item = begin + threadIdx.y; item < end; item += blockDim.y) {
            int ow0 = item % runs * DWN_COLS;
            int rest = item / runs;
            int oh = rest % OH;
            int n = rest / OH;
            int ih = oh * S - ph + ki;
            if (ih < 0 || ih >= H) continue;
            DwnVec<V> g[DWN_COLS];
            size_t dy_row = (((size_t)n * OH + oh) * OW + ow0) * C + c;
#pragma unroll
            for (int j = 0; j < DWN_COLS; ++j) {
                if (ow0 + j < OW) {
                    g[j] = DwnVec<V>::load(dy, dy_row + (size_t)j * C, dy_format);
                } else {
#pragma unroll
                    for (int v = 0; v < V; ++v) g[j].v[v] = 0.f;
                }
            }
            size_t row = ((size_t)n * H + ih) * W * C + c;
            dwn_row_taps<K, S, V>(x, row, x_format, ow0 * S - pw, W, C, [&](int j, int kj, const DwnVec<V>& in) {
#pragma unroll
                for (int v = 0; v < V; ++v) acc[kj * V + v] = fmaf(g[j].v[v], in.v[v], acc[kj * V + v]);
            });
        }
    }
    dwn_sum_lanes<K * V>(acc, dwn_sums, [&](int e, float total) {
        int kv = e / blockDim.x;
        int lane_group = blockIdx.x * blockDim.x + e % blockDim.x;
        if (lane_group >= groups) return;
        int co = lane_group * V + kv % V;
        out[((size_t)blockIdx.y * C + co) * K * K + ki * K + kv / V] = total;
    });
}

// The specialised kernels of a window K x K at stride S on V channels per thread: 256 threads
// per block (the filter gradient's DWN_FILTER_THREADS), promising only one block per SM: with the bare
// thread count ptxas budgets fewer registers on sm_86 (64, or 40 for some) and spills some of
// these (the 5x5 stride-2 data gradient with 4 channels takes 72 registers).
#define DWN_SPECIALISED(K, S, V)                                                                        \
    extern "C" __global__ void __launch_bounds__(256, 1) depthwise_nhwc_forward_##K##x##K##_s##S##_v##V(   \
        const void* __restrict__ x, int x_format, const float* __restrict__ wt,                          \
        const float* __restrict__ bias, void* __restrict__ y, int y_format, int N, int C, int H, int W,   \
        int ph, int pw, int OH, int OW, int has_bias) {                                                  \
        dwn_forward<K, S, V>(x, x_format, wt, bias, y, y_format, N, C, H, W, ph, pw, OH, OW, has_bias);   \
    }                                                                                                   \
    extern "C" __global__ void __launch_bounds__(256, 1) depthwise_nhwc_backward_data_##K##x##K##_s##S##_v##V( \
        const void* __restrict__ dy, int dy_format, const float* __restrict__ wt, void* __restrict__ dx,  \
        int dx_format, int N, int C, int H, int W, int ph, int pw, int OH, int OW) {                     \
        dwn_backward_data<K, S, V>(dy, dy_format, wt, dx, dx_format, N, C, H, W, ph, pw, OH, OW);         \
    }                                                                                                   \
    extern "C" __global__ void __launch_bounds__(DWN_FILTER_THREADS, 1)                                    \
        depthwise_nhwc_backward_filter_##K##x##K##_s##S##_v##V(                                          \
            const void* __restrict__ x, int x_format, const void* __restrict__ dy, int dy_format,          \
            float* __restrict__ out, int N, int C, int H, int W, int ph, int pw, int OH, int OW, int chunks) { \
        dwn_backward_filter<K, S, V>(x, x_format, dy, dy_format, out, N, C, H, W, ph, pw, OH, OW, chunks); \
    }
DWN_SPECIALISED(3, 1, 1)
DWN_SPECIALISED(3, 1, 4)
DWN_SPECIALISED(3, 2, 1)
DWN_SPECIALISED(3, 2, 4)
DWN_SPECIALISED(5, 1, 1)
DWN_SPECIALISED(5, 1, 4)
DWN_SPECIALISED(5, 2, 1)
DWN_SPECIALISED(5, 2, 4)

// ---- Generic kernels: any window, stride, padding, dilation and multiplier, one channel per
// thread.

// One thread per output element, idx = ((n * OH + oh) * OW + ow) * C_out + co.
extern "C" __global__ void __launch_bounds__(256)
    depthwise_nhwc_forward(const void* __restrict__ x, int x_format, const float* __restrict__ wt,
                           const float* __restrict__ bias, void* __restrict__ y, int y_format, int N, int C, int H,
                           int W, int mult, int KH, int KW, int sh, int sw, int ph, int pw, int dh, int dw, int OH,
                           int OW, int has_bias) {
    int C_out = C * mult;
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= N * OH * OW * C_out) return;
    int co = idx % C_out;
    int pixel = idx / C_out;
    int ow = pixel % OW;
    int oh = pixel / OW % OH;
    int n = pixel / (OW * OH);
    size_t image = (size_t)n * H * W * C + co / mult;
    float sum = has_bias ? bias[co] : 0.f;
    for (int ki = 0; ki < KH; ++ki) {
        int ih = oh * sh - ph + ki * dh;
        if (ih < 0 || ih >= H) continue;
        for (int kj = 0; kj < KW; ++kj) {
            int iw = ow * sw - pw + kj * dw;
            if (iw < 0 || iw >= W) continue;
            sum = fmaf(ferro_load(x, (long long)(image + ((size_t)ih * W + iw) * C), x_format),
                       wt[(size_t)(ki * KW + kj) * C_out + co], sum);
        }
    }
    ferro_store(y, idx, sum, y_format);
}

// One thread per input element, idx = ((n * H + ih) * W + iw) * C + c: dy gathered over the
// channel's `mult` output channels and every tap whose output reads the element. The minimum of
// one block per SM leaves ptxas free to use the 64 registers it needs: without it, sm_80's ptxas
// aimed at 32 and spilled.
extern "C" __global__ void __launch_bounds__(256, 1)
    depthwise_nhwc_backward_data(const void* __restrict__ dy, int dy_format, const float* __restrict__ wt,
                                 void* __restrict__ dx, int dx_format, int N, int C, int H, int W, int mult, int KH,
                                 int KW, int sh, int sw, int ph, int pw, int dh, int dw, int OH, int OW) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= N * H * W * C) return;
    int c = idx % C;
    int pixel = idx / C;
    int iw = pixel % W;
    int ih = pixel / W % H;
    int n = pixel / (W * H);
    int C_out = C * mult;
    float sum = 0.f;
    for (int ki = 0; ki < KH; ++ki) {
        int t = ih + ph - ki * dh;
        if (t < 0 || t % sh != 0 || t / sh >= OH) continue;
        for (int kj = 0; kj < KW; ++kj) {
            int u = iw + pw - kj * dw;
            if (u < 0 || u % sw != 0 || u / sw >= OW) continue;
            size_t grad = (((size_t)n * OH + t / sh) * OW + u / sw) * C_out + (size_t)c * mult;
            for (int m = 0; m < mult; ++m)
                sum = fmaf(ferro_load(dy, (long long)(grad + m), dy_format),
                           wt[(size_t)(ki * KW + kj) * C_out + (size_t)c * mult + m], sum);
        }
    }
    ferro_store(dx, idx, sum, dx_format);
}

// blockIdx.z is the tap (ki * KW + kj), blockIdx.y the chunk; an item is an output pixel
// ((n * OH + oh) * OW + ow), the thread's output channel co = blockIdx.x * blockDim.x + threadIdx.x.
extern "C" __global__ void __launch_bounds__(DWN_FILTER_THREADS)
    depthwise_nhwc_backward_filter(const void* __restrict__ x, int x_format, const void* __restrict__ dy,
                                   int dy_format, float* __restrict__ out, int N, int C, int H, int W, int mult,
                                   int KH, int KW, int sh, int sw, int ph, int pw, int dh, int dw, int OH, int OW,
                                   int chunks) {
    int C_out = C * mult;
    int co = blockIdx.x * blockDim.x + threadIdx.x;
    int tap = blockIdx.z;
    int ki = tap / KW;
    int kj = tap - ki * KW;
    int items = N * OH * OW;
    int per_chunk = (items + chunks - 1) / chunks;
    int begin = blockIdx.y * per_chunk;
    int end = min(items, begin + per_chunk);
    float acc[1] = {0.f};
    if (co < C_out) {
        for (int item = begin + threadIdx.y; item < end; item += blockDim.y) {
            int ow = item % OW;
            int oh = item / OW % OH;
            int n = item / (OW * OH);
            int ih = oh * sh - ph + ki * dh;
            int iw = ow * sw - pw + kj * dw;
            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
            acc[0] = fmaf(ferro_load(dy, (long long)item * C_out + co, dy_format),
                          ferro_load(x, (long long)(((size_t)n * H + ih) * W + iw) * C + co / mult, x_format), acc[0]);
        }
    }
    dwn_sum_lanes<1>(acc, dwn_sums, [&](int e, float total) {
        int lane_co = blockIdx.x * blockDim.x + e;
        if (lane_co < C_out) out[((size_t)blockIdx.y * C_out + lane_co) * KH * KW + tap] = total;
    });
}
