// Pointwise activations, one thread per element. `kind` follows crate::ops::Activation's order:
// 0 relu, 1 relu6, 2 sigmoid, 3 silu, 4 hardswish. It is uniform across the launch, so the switch
// never diverges within a warp. Derivatives at kinks follow PyTorch (see ops/activation/mod.rs).
#include "common.cuh"
#include "activation.cuh"

extern "C" __global__ void activation_forward(const float* __restrict__ x, float* __restrict__ y, int kind, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = activate(kind, x[i]);
}

extern "C" __global__ void activation_backward(const float* __restrict__ x, const float* __restrict__ dy,
                                               float* __restrict__ dx, int kind, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dx[i] = dy[i] * derivative(kind, x[i]);
}

// y = f(y + bias[channel]) in place over [N, channels, plane]: a folded convolution's epilogue.
extern "C" __global__ void bias_activation(float* __restrict__ y, const float* __restrict__ bias, int kind,
                                           int channels, int plane, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = activate(kind, y[i] + bias[(i / plane) % channels]);
}
