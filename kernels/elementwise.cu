// Elementwise arithmetic, per-channel broadcasts over x [N, C, HW] and their reductions.
// Pointwise kernels use one thread per element.
#include "common.cuh"

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

extern "C" __global__ void axpy(float alpha, const float* __restrict__ x, float* __restrict__ y, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += alpha * x[i];
}

extern "C" __global__ void scale(float alpha, float* __restrict__ x, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= alpha;
}

extern "C" __global__ void fill(float value, float* __restrict__ x, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = value;
}
