// The pointwise activations and their derivatives, shared by the activation kernels and the
// fused batch-norm/activation kernels of norm.cu. `kind` follows crate::ops::Activation's order:
// 0 relu, 1 relu6, 2 sigmoid, 3 silu, 4 hardswish. Derivatives at kinks follow PyTorch (see
// ops/activation/mod.rs).
#pragma once

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
