// Pointwise activations, 4 values per thread (kernels/pointwise.cuh), each buffer in its stored
// format: y in x's, dx in x's, computed in f32 and rounded once at the store. `kind` follows
// crate::ops::Activation's order: 0 relu, 1 relu6, 2 sigmoid, 3 silu, 4 hardswish. It is uniform
// across the launch, so the switch never diverges within a warp. Derivatives at kinks follow
// PyTorch (see ops/activation/mod.rs).
#include "common.cuh"
#include "activation.cuh"
#include "pointwise.cuh"

extern "C" __global__ void activation_forward(const void* __restrict__ x, int x_format, void* __restrict__ y,
                                              int y_format, int kind, int n, int vec) {
    ferro_map1(x, x_format, y, y_format, n, vec, [kind](float v) { return activate(kind, v); });
}

extern "C" __global__ void activation_backward(const void* __restrict__ x, int x_format, const void* __restrict__ dy,
                                               int dy_format, void* __restrict__ dx, int dx_format, int kind, int n,
                                               int vec) {
    ferro_map2(x, x_format, dy, dy_format, dx, dx_format, n, vec,
               [kind](float v, float g) { return g * derivative(kind, v); });
}

template <int V>
__device__ __forceinline__ void bias_activation_body(void* y, int y_format, const float* __restrict__ bias, int kind,
                                                     int channels, int plane, int n) {
    const int i = V * (blockIdx.x * blockDim.x + threadIdx.x);
    if (i >= n) return;
    const int ch = (i / plane) % channels;
    if constexpr (V == 4) {
        const float4 v = ferro_load4(y, i, y_format);
        // A plane of one value is a pixel of channels last: 4 consecutive channels.
        const float4 b = plane == 1 ? *reinterpret_cast<const float4*>(bias + ch) : make_float4(bias[ch], bias[ch], bias[ch], bias[ch]);
        const float4 z = make_float4(activate(kind, v.x + b.x), activate(kind, v.y + b.y), activate(kind, v.z + b.z),
                                     activate(kind, v.w + b.w));
        ferro_store4(y, i, z, y_format);
    } else {
        ferro_store(y, i, activate(kind, ferro_load(y, i, y_format) + bias[ch]), y_format);
    }
}

// y = f(y + bias[channel]) in place over [N, channels, plane], y in its stored format: a folded
// convolution's epilogue. A thread takes V values: 4 (`vec`: y and bias 16-byte aligned, and
// plane a multiple of 4, so the 4 share a channel, or plane 1 and channels a multiple of 4, the
// 4 consecutive channels of a pixel channels last) in one access per buffer, else 1.
extern "C" __global__ void bias_activation(void* y, int y_format, const float* __restrict__ bias, int kind,
                                           int channels, int plane, int n, int vec) {
    if (vec) {
        bias_activation_body<4>(y, y_format, bias, kind, channels, plane, n);
    } else {
        bias_activation_body<1>(y, y_format, bias, kind, channels, plane, n);
    }
}
