// Elementwise arithmetic, per-channel broadcasts over x [N, C, HW] or, channels last (the _nhwc
// kernels), [N, HW, C], and their reductions. Pointwise kernels use one thread per element.
#include "common.cuh"
#include "channel_rows.cuh"
#include "stored.cuh"

extern "C" __global__ void add(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ y, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a[i] + b[i];
}

extern "C" __global__ void mul(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ y, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a[i] * b[i];
}

extern "C" __global__ void mul_backward(const float* __restrict__ a, const float* __restrict__ b,
                                        const float* __restrict__ dy, float* __restrict__ da,
                                        float* __restrict__ db, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float g = dy[i];
    da[i] = g * b[i];
    db[i] = g * a[i];
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

extern "C" __global__ void add_channel(const float* __restrict__ x, const float* __restrict__ b,
                                       float* __restrict__ y, int c, int hw, int per_sample, int total) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) y[i] = x[i] + b[operand_index(i, c, hw, per_sample)];
}

extern "C" __global__ void mul_channel(const float* __restrict__ x, const float* __restrict__ s,
                                       float* __restrict__ y, int c, int hw, int per_sample, int total) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) y[i] = x[i] * s[operand_index(i, c, hw, per_sample)];
}

extern "C" __global__ void add_channel_nhwc(const float* __restrict__ x, const float* __restrict__ b,
                                            float* __restrict__ y, int c, int hw, int per_sample, int total) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) y[i] = x[i] + b[operand_index_nhwc(i, c, hw, per_sample)];
}

extern "C" __global__ void mul_channel_nhwc(const float* __restrict__ x, const float* __restrict__ s,
                                            float* __restrict__ y, int c, int hw, int per_sample, int total) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) y[i] = x[i] * s[operand_index_nhwc(i, c, hw, per_sample)];
}

// One block per output of the broadcast operand: output o sums dy (times x when WITH_X) over the
// HW values of plane o when per_sample, else over the HW values of channel o in every image.
template <bool WITH_X>
__device__ __forceinline__ void channel_reduce(const float* __restrict__ dy, const float* __restrict__ x,
                                               float* __restrict__ out, int n, int c, int hw, int per_sample) {
    __shared__ float scratch[33];
    const int o = blockIdx.x;
    const int images = per_sample ? 1 : n;
    const int count = images * hw;
    float acc = 0.0f;
    for (int i = threadIdx.x; i < count; i += blockDim.x) {
        const int img = i / hw;
        const int plane = per_sample ? o : img * c + o;
        const int idx = plane * hw + (i - img * hw);
        acc += WITH_X ? dy[idx] * x[idx] : dy[idx];
    }
    acc = ferro_block_sum(acc, scratch);
    if (threadIdx.x == 0) out[o] = acc;
}

extern "C" __global__ void channel_sum(const float* __restrict__ dy, float* __restrict__ out, int n, int c, int hw,
                                       int per_sample) {
    channel_reduce<false>(dy, nullptr, out, n, c, hw, per_sample);
}

extern "C" __global__ void channel_dot(const float* __restrict__ dy, const float* __restrict__ x,
                                       float* __restrict__ out, int n, int c, int hw, int per_sample) {
    channel_reduce<true>(dy, x, out, n, c, hw, per_sample);
}

// Channels last, with threads along channels (kernels/channel_rows.cuh): out[part][c] sums dy
// (times x when WITH_X) of channel c over rows [split * rows_per_split, ...) of segment
// part / splits, split = part % splits, a segment being `rows` rows of C values (one image per
// sample, or the whole batch). With splits > 1 the [segments * splits, C] partials are summed by
// this kernel again, over `splits` rows per segment. blockIdx.x = part * chunks + channel chunk.
template <bool WITH_X>
__device__ __forceinline__ void channel_reduce_nhwc(const float* __restrict__ dy, const float* __restrict__ x,
                                                    float* __restrict__ out, int C, int rows, int splits,
                                                    int rows_per_split, int chunks) {
    __shared__ float scratch[1][CR_THREADS];
    const int part = blockIdx.x / chunks;
    const int begin = (part % splits) * rows_per_split;
    const int end = min(begin + rows_per_split, rows);
    const ChannelRows cr = channel_rows(C, blockIdx.x - part * chunks, begin);
    const size_t base = (size_t)(part / splits) * rows * C + cr.c;
    float acc[1] = {0.0f};
    if (cr.active) {
        for (int r = cr.row; r < end; r += cr.step) {
            const size_t i = base + (size_t)r * C;
            acc[0] += WITH_X ? dy[i] * x[i] : dy[i];
        }
    }
    channel_rows_total<1>(acc, cr, scratch);
    if (threadIdx.x < cr.lanes) out[(size_t)part * C + cr.c] = acc[0];
}

extern "C" __global__ void __launch_bounds__(CR_THREADS)
    channel_sum_nhwc(const float* __restrict__ dy, float* __restrict__ out, int C, int rows, int splits,
                     int rows_per_split, int chunks) {
    channel_reduce_nhwc<false>(dy, nullptr, out, C, rows, splits, rows_per_split, chunks);
}

extern "C" __global__ void __launch_bounds__(CR_THREADS)
    channel_dot_nhwc(const float* __restrict__ dy, const float* __restrict__ x, float* __restrict__ out, int C,
                     int rows, int splits, int rows_per_split, int chunks) {
    channel_reduce_nhwc<true>(dy, x, out, C, rows, splits, rows_per_split, chunks);
}

// y += alpha * x, each in its stored format (kernels/stored.cuh): how gradients accumulate,
// 16-bit ones included.
extern "C" __global__ void axpy(float alpha, const void* __restrict__ x, int x_format, void* __restrict__ y, int y_format, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) ferro_store(y, i, ferro_load(y, i, y_format) + alpha * ferro_load(x, i, x_format), y_format);
}

extern "C" __global__ void scale(float alpha, float* __restrict__ x, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= alpha;
}

extern "C" __global__ void fill(float value, float* __restrict__ x, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = value;
}
