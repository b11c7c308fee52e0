// Elementwise arithmetic, per-channel broadcasts over x [N, C, HW] or, channels last (the _nhwc
// kernels), [N, HW, C], and their reductions. Every activation-like buffer (operands, dy, outputs)
// is read and written in its stored format (kernels/stored.cuh), computed in f32 and rounded once
// at the store. The same-shape kernels, the broadcasts and the in-place updates take 4 values
// per thread (kernels/pointwise.cuh); the reductions read 4 values per access where the shape
// allows (`vec`).
#include "common.cuh"
#include "channel_rows.cuh"
#include "stored.cuh"
#include "pointwise.cuh"

extern "C" __global__ void add(const void* __restrict__ a, int a_format, const void* __restrict__ b, int b_format,
                               void* __restrict__ y, int y_format, int n, int vec) {
    ferro_map2(a, a_format, b, b_format, y, y_format, n, vec, [](float u, float v) { return u + v; });
}

extern "C" __global__ void mul(const void* __restrict__ a, int a_format, const void* __restrict__ b, int b_format,
                               void* __restrict__ y, int y_format, int n, int vec) {
    ferro_map2(a, a_format, b, b_format, y, y_format, n, vec, [](float u, float v) { return u * v; });
}

// da = dy * b, db = dy * a.
extern "C" __global__ void mul_backward(const void* __restrict__ a, int a_format, const void* __restrict__ b,
                                        int b_format, const void* __restrict__ dy, int dy_format,
                                        void* __restrict__ da, int da_format, void* __restrict__ db, int db_format,
                                        int n, int vec) {
    const long long i = ferro_group_start(n);
    if (i < 0) return;
    if (ferro_group_whole(i, n, vec)) {
        const float4 u = ferro_load4(a, i, a_format), v = ferro_load4(b, i, b_format), g = ferro_load4(dy, i, dy_format);
        ferro_store4(da, i, make_float4(g.x * v.x, g.y * v.y, g.z * v.z, g.w * v.w), da_format);
        ferro_store4(db, i, make_float4(g.x * u.x, g.y * u.y, g.z * u.z, g.w * u.w), db_format);
        return;
    }
    for (long long k = i; k < n && k < i + FERRO_GROUP; ++k) {
        const float g = ferro_load(dy, k, dy_format);
        ferro_store(da, k, g * ferro_load(b, k, b_format), da_format);
        ferro_store(db, k, g * ferro_load(a, k, a_format), db_format);
    }
}

// The broadcast operand's index for element i: [N, C] per sample, else [C].
__device__ __forceinline__ int operand_index(int i, int c, int hw, int per_sample) {
    const int plane = i / hw;
    return per_sample ? plane : plane % c;
}

// The same, channels last: element i is channel i % c of pixel i / c.
__device__ __forceinline__ int operand_index_nhwc(int i, int c, int hw, int per_sample) {
    const int ch = i % c;
    return per_sample ? i / (hw * c) * c + ch : ch;
}

// y = x + operand or x * operand (MUL), the operand broadcast per channel, 4 values per thread
// (pointwise.cuh's groups). A whole group (`vec`: every buffer 16-byte aligned, and hw (channels
// first) or c (channels last) a multiple of 4) lies in one plane, so it takes one operand value,
// or in 4 consecutive channels, whose operand values are one aligned access: one access per
// buffer (8 bytes at 16 bits). Any other group goes value by value.
template <bool MUL, bool NHWC>
__device__ __forceinline__ void broadcast(const void* __restrict__ x, int x_format, const void* __restrict__ operand,
                                          int operand_format, void* __restrict__ y, int y_format, int c, int hw,
                                          int per_sample, int total, int vec) {
    const long long i = ferro_group_start(total);
    if (i < 0) return;
    auto combine = [](float v, float w) { return MUL ? v * w : v + w; };
    auto operand_at = [&](long long k) {
        return NHWC ? operand_index_nhwc((int)k, c, hw, per_sample) : operand_index((int)k, c, hw, per_sample);
    };
    if (ferro_group_whole(i, total, vec)) {
        const float4 v = ferro_load4(x, i, x_format);
        float4 w;
        if (NHWC) {
            w = ferro_load4(operand, operand_at(i), operand_format);
        } else {
            const float s = ferro_load(operand, operand_at(i), operand_format);
            w = make_float4(s, s, s, s);
        }
        ferro_store4(y, i, make_float4(combine(v.x, w.x), combine(v.y, w.y), combine(v.z, w.z), combine(v.w, w.w)), y_format);
        return;
    }
    for (long long k = i; k < total && k < i + FERRO_GROUP; ++k)
        ferro_store(y, k, combine(ferro_load(x, k, x_format), ferro_load(operand, operand_at(k), operand_format)), y_format);
}

#define BROADCAST_ENTRY_POINT(name, MUL, NHWC)                                                                      \
    extern "C" __global__ void name(const void* __restrict__ x, int x_format, const void* __restrict__ operand,    \
                                    int operand_format, void* __restrict__ y, int y_format, int c, int hw,         \
                                    int per_sample, int total, int vec) {                                          \
        broadcast<MUL, NHWC>(x, x_format, operand, operand_format, y, y_format, c, hw, per_sample, total, vec);    \
    }

BROADCAST_ENTRY_POINT(add_channel, false, false)
BROADCAST_ENTRY_POINT(mul_channel, true, false)
BROADCAST_ENTRY_POINT(add_channel_nhwc, false, true)
BROADCAST_ENTRY_POINT(mul_channel_nhwc, true, true)

// One block per output of the broadcast operand: output o sums dy (times x when WITH_X) over the
// HW values of plane o when per_sample, else over the HW values of channel o in every image.
// `vec` (HW a multiple of 4, buffers 16-byte aligned): a thread reads 4 values of a plane per
// access, in a group of one multiple of 4 of the block's threads ahead of the next.
template <bool WITH_X>
__device__ __forceinline__ void channel_reduce(const void* __restrict__ dy, int dy_format, const void* __restrict__ x,
                                               int x_format, void* __restrict__ out, int out_format, int n, int c,
                                               int hw, int per_sample, int vec) {
    __shared__ float scratch[33];
    const int o = blockIdx.x;
    const int images = per_sample ? 1 : n;
    const int count = images * hw;
    // Value i of the output's count values, i / hw the image.
    auto index = [&](int i) {
        const int img = i / hw;
        return (per_sample ? o : img * c + o) * hw + (i - img * hw);
    };
    float acc = 0.0f;
    if (vec) {
        for (int i = FERRO_GROUP * threadIdx.x; i < count; i += FERRO_GROUP * blockDim.x) {
            const int idx = index(i);
            const float4 g = ferro_load4(dy, idx, dy_format);
            const float4 v = WITH_X ? ferro_load4(x, idx, x_format) : make_float4(1.0f, 1.0f, 1.0f, 1.0f);
            acc += g.x * v.x;
            acc += g.y * v.y;
            acc += g.z * v.z;
            acc += g.w * v.w;
        }
    } else {
        for (int i = threadIdx.x; i < count; i += blockDim.x) {
            const int idx = index(i);
            const float g = ferro_load(dy, idx, dy_format);
            acc += WITH_X ? g * ferro_load(x, idx, x_format) : g;
        }
    }
    acc = ferro_block_sum(acc, scratch);
    if (threadIdx.x == 0) ferro_store(out, o, acc, out_format);
}

extern "C" __global__ void channel_sum(const void* __restrict__ dy, int dy_format, void* __restrict__ out,
                                       int out_format, int n, int c, int hw, int per_sample, int vec) {
    channel_reduce<false>(dy, dy_format, nullptr, FERRO_F32, out, out_format, n, c, hw, per_sample, vec);
}

extern "C" __global__ void channel_dot(const void* __restrict__ dy, int dy_format, const void* __restrict__ x,
                                       int x_format, void* __restrict__ out, int out_format, int n, int c, int hw,
                                       int per_sample, int vec) {
    channel_reduce<true>(dy, dy_format, x, x_format, out, out_format, n, c, hw, per_sample, vec);
}

// Channels last, with threads along channels (kernels/channel_rows.cuh), V of them per thread:
// out[part][c] sums dy (times x when WITH_X) of channel c over rows [split * rows_per_split, ...)
// of segment part / splits, split = part % splits, a segment being `rows` rows of C values (one
// image per sample, or the whole batch). With splits > 1 the [segments * splits, C] partials are
// summed by this kernel again, over `splits` rows per segment. blockIdx.x = part * chunks +
// channel chunk.
template <bool WITH_X, int V>
__device__ __forceinline__ void channel_reduce_nhwc(const void* __restrict__ dy, int dy_format,
                                                    const void* __restrict__ x, int x_format, void* __restrict__ out,
                                                    int out_format, int C, int rows, int splits, int rows_per_split,
                                                    int chunks, float (*scratch)[CR_THREADS]) {
    const int part = blockIdx.x / chunks;
    const int begin = (part % splits) * rows_per_split;
    const int end = min(begin + rows_per_split, rows);
    const ChannelRows cr = channel_rows<V>(C, blockIdx.x - part * chunks, begin);
    const size_t base = (size_t)(part / splits) * rows * C + cr.c;
    float acc[V] = {};
    if (cr.active) {
        for (int r = cr.row; r < end; r += cr.step) {
            const size_t i = base + (size_t)r * C;
            float g[V], v[V];
            channel_rows_load<V>(dy, i, dy_format, g);
            if (WITH_X) channel_rows_load<V>(x, i, x_format, v);
#pragma unroll
            for (int k = 0; k < V; ++k) acc[k] += WITH_X ? g[k] * v[k] : g[k];
        }
    }
    channel_rows_total<V>(acc, cr, scratch);
    if (threadIdx.x < cr.lanes) channel_rows_store<V>(out, (size_t)part * C + cr.c, out_format, acc);
}

// `vec`: C a multiple of 4 and the buffers 16-byte aligned, 4 channels per thread.
extern "C" __global__ void __launch_bounds__(CR_THREADS)
    channel_sum_nhwc(const void* __restrict__ dy, int dy_format, void* __restrict__ out, int out_format, int C,
                     int rows, int splits, int rows_per_split, int chunks, int vec) {
    __shared__ float scratch[4][CR_THREADS];
    if (vec) {
        channel_reduce_nhwc<false, 4>(dy, dy_format, nullptr, FERRO_F32, out, out_format, C, rows, splits,
                                      rows_per_split, chunks, scratch);
    } else {
        channel_reduce_nhwc<false, 1>(dy, dy_format, nullptr, FERRO_F32, out, out_format, C, rows, splits,
                                      rows_per_split, chunks, scratch);
    }
}

extern "C" __global__ void __launch_bounds__(CR_THREADS)
    channel_dot_nhwc(const void* __restrict__ dy, int dy_format, const void* __restrict__ x, int x_format,
                     void* __restrict__ out, int out_format, int C, int rows, int splits, int rows_per_split,
                     int chunks, int vec) {
    __shared__ float scratch[4][CR_THREADS];
    if (vec) {
        channel_reduce_nhwc<true, 4>(dy, dy_format, x, x_format, out, out_format, C, rows, splits, rows_per_split,
                                     chunks, scratch);
    } else {
        channel_reduce_nhwc<true, 1>(dy, dy_format, x, x_format, out, out_format, C, rows, splits, rows_per_split,
                                     chunks, scratch);
    }
}

// y = op(y, x) per value in place, 4 values per thread as pointwise.cuh's groups (one access per
// buffer for a whole group when `vec`); a null x gives op 0. y is read and written by the same
// thread, so it is not __restrict__.
template <typename Op>
__device__ __forceinline__ void update(const void* __restrict__ x, int x_format, void* y, int y_format, int n,
                                       int vec, Op op) {
    const long long i = ferro_group_start(n);
    if (i < 0) return;
    if (ferro_group_whole(i, n, vec)) {
        const float4 u = ferro_load4(y, i, y_format);
        const float4 v = x ? ferro_load4(x, i, x_format) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        ferro_store4(y, i, make_float4(op(u.x, v.x), op(u.y, v.y), op(u.z, v.z), op(u.w, v.w)), y_format);
        return;
    }
    for (long long k = i; k < n && k < i + FERRO_GROUP; ++k)
        ferro_store(y, k, op(ferro_load(y, k, y_format), x ? ferro_load(x, k, x_format) : 0.0f), y_format);
}

// y += alpha * x, each in its stored format (kernels/stored.cuh): how gradients accumulate,
// 16-bit ones included.
extern "C" __global__ void axpy(float alpha, const void* __restrict__ x, int x_format, void* y, int y_format, int n,
                                int vec) {
    update(x, x_format, y, y_format, n, vec, [alpha](float u, float v) { return u + alpha * v; });
}

extern "C" __global__ void scale(float alpha, float* x, int n, int vec) {
    update(nullptr, FERRO_F32, x, FERRO_F32, n, vec, [alpha](float u, float) { return u * alpha; });
}

extern "C" __global__ void fill(float value, float* x, int n, int vec) {
    update(nullptr, FERRO_F32, x, FERRO_F32, n, vec, [value](float, float) { return value; });
}
