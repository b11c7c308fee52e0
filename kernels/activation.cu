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

// y = f(y + bias[channel]) in place over [N, channels, plane], y in its stored format: a folded
// convolution's epilogue.
extern "C" __global__ void bias_activation(void* __restrict__ y, int y_format, const float* __restrict__ bias,
                                           int kind, int channels, int plane, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) ferro_store(y, i, activate(kind, ferro_load(y, i, y_format) + bias[(i / plane) % channels]), y_format);
}
