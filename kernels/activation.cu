// Pointwise activations, one thread per element. `kind` follows crate::ops::Activation's order:
// 0 relu, 1 relu6, 2 sigmoid, 3 silu, 4 hardswish. It is uniform across the launch, so the switch
// never diverges within a warp. Derivatives at kinks follow PyTorch (see ops/activation/mod.rs).
#include "common.cuh"

__device__ __forceinline__ float sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

__device__ __forceinline__ float activate(int kind, float v) {
    switch (kind) {
        case 0: return fmaxf(v, 0.0f);
        case 1: return fminf(fmaxf(v, 0.0f), 6.0f);
        case 2: return sigmoid(v);
        case 3: return v * sigmoid(v);
        default: return v * fminf(fmaxf(v + 3.0f, 0.0f), 6.0f) / 6.0f;
    }
}

__device__ __forceinline__ float derivative(int kind, float v) {
    switch (kind) {
        case 0: return v > 0.0f ? 1.0f : 0.0f;
        case 1: return (v > 0.0f && v < 6.0f) ? 1.0f : 0.0f;
        case 2: {
            const float s = sigmoid(v);
            return s * (1.0f - s);
        }
        case 3: {
            const float s = sigmoid(v);
            return s * (1.0f + v * (1.0f - s));
        }
        default:
            if (v < -3.0f) return 0.0f;
            if (v > 3.0f) return 1.0f;
            return (2.0f * v + 3.0f) / 6.0f;
    }
}

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
