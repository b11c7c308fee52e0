// Fused optimiser steps, one thread per parameter, with PyTorch's semantics (ops/optim/mod.rs).
#include "common.cuh"

// use_momentum == 0 never touches momentum_buf (it may be empty then).
extern "C" __global__ void sgd_step(float* __restrict__ param, const float* __restrict__ grad,
                                    float* __restrict__ momentum_buf, float lr, float momentum, float dampening,
                                    float weight_decay, int use_momentum, int nesterov, int first_step, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float p = param[i];
    float g = grad[i] + weight_decay * p;
    if (use_momentum) {
        const float buf = first_step ? g : momentum * momentum_buf[i] + (1.0f - dampening) * g;
        momentum_buf[i] = buf;
        g = nesterov ? g + momentum * buf : buf;
    }
    param[i] = p - lr * g;
}

// bias1 = 1 - beta1^t and bias2 = 1 - beta2^t come from the host (computed in f64). Decoupled
// (AdamW) decay scales the parameter first; otherwise (Adam) the decay joins the gradient.
extern "C" __global__ void adam_step(float* __restrict__ param, const float* __restrict__ grad, float* __restrict__ m,
                                     float* __restrict__ v, float lr, float beta1, float beta2, float eps,
                                     float weight_decay, int decoupled, float bias1, float bias2, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float p = param[i];
    float g = grad[i];
    if (decoupled) {
        p *= 1.0f - lr * weight_decay;
    } else {
        g += weight_decay * p;
    }
    const float m_new = beta1 * m[i] + (1.0f - beta1) * g;
    const float v_new = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = m_new;
    v[i] = v_new;
    param[i] = p - lr * (m_new / bias1) / (sqrtf(v_new / bias2) + eps);
}
