// Fused optimiser steps with PyTorch's semantics (ops/optim/mod.rs): per tensor (one thread per
// parameter) or over a table of tensors in one launch (multi-tensor). Both go through the same
// per-element updates, so their results are bit-identical. Also the global gradient norm of
// clipping, computed and turned into a scale on the device (no read-back).
#include "common.cuh"

// One SGD update of param[i] with gradient g. use_momentum == 0 never touches momentum_buf.
__device__ __forceinline__ void ferro_sgd_update(float* param, float g, float* momentum_buf, int i, float lr,
                                                 float momentum, float dampening, float weight_decay,
                                                 int use_momentum, int nesterov, int first_step) {
    const float p = param[i];
    g = g + weight_decay * p;
    if (use_momentum) {
        const float buf = first_step ? g : momentum * momentum_buf[i] + (1.0f - dampening) * g;
        momentum_buf[i] = buf;
        g = nesterov ? g + momentum * buf : buf;
    }
    param[i] = p - lr * g;
}

// One Adam/AdamW update of param[i] with gradient g. bias1 = 1 - beta1^t and bias2 = 1 - beta2^t
// are computed in f64: by the host for adam_step, on the device for adam_multi_step. Decoupled (AdamW) decay scales the parameter first;
// otherwise (Adam) the decay joins the gradient.
__device__ __forceinline__ void ferro_adam_update(float* param, float g, float* m, float* v, int i, float lr,
                                                  float beta1, float beta2, float eps, float weight_decay,
                                                  int decoupled, float bias1, float bias2) {
    float p = param[i];
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

// use_momentum == 0 never touches momentum_buf (it may be empty then).
extern "C" __global__ void sgd_step(float* __restrict__ param, const float* __restrict__ grad,
                                    float* __restrict__ momentum_buf, float lr, float momentum, float dampening,
                                    float weight_decay, int use_momentum, int nesterov, int first_step, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    ferro_sgd_update(param, grad[i], momentum_buf, i, lr, momentum, dampening, weight_decay, use_momentum, nesterov,
                     first_step);
}

extern "C" __global__ void adam_step(float* __restrict__ param, const float* __restrict__ grad, float* __restrict__ m,
                                     float* __restrict__ v, float lr, float beta1, float beta2, float eps,
                                     float weight_decay, int decoupled, float bias1, float bias2, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    ferro_adam_update(param, grad[i], m, v, i, lr, beta1, beta2, eps, weight_decay, decoupled, bias1, bias2);
}

// One tensor of a multi-tensor launch; the layout of TableEntry in ops/optim/cuda.rs. The
// gradients' addresses live in a table of their own (they change more often than the rest).
struct FerroOptimTensor {
    float* param;
    float* first;   // SGD's momentum buffer or Adam's m; null when unused
    float* second;  // Adam's v; null when unused
    int len;
    float weight_decay;
    int group;               // the launches of a step update one group (one step count) each
    int update_block_start;  // this tensor's first block in an update launch
    int norm_block_start;    // its first block (and partial) in the norm's first pass
    int norm_blocks;         // the grid sum_squares's first pass would launch for it
    int norm_threads;        // and that launch's block size
    int partial_threads;     // the block size of sum_squares's second pass over its partials
};

// Elements each block of a multi-tensor update handles (4 per thread at 256 threads).
#define FERRO_OPTIM_CHUNK 1024

// The table entry owning `block`: the last of the `count` entries whose `Start` is <= block
// (entries are in block order; one with no blocks is never the last such).
template <int FerroOptimTensor::*Start>
__device__ __forceinline__ int ferro_owner(const FerroOptimTensor* table, int count, int block) {
    int lo = 0, hi = count;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (table[mid].*Start <= block) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return lo;
}

// The clip state a clipping step reads: {norm, scale, non-finite steps}. A non-finite norm
// skips the update (parameters and state stay as they were); otherwise gradients are scaled.
__device__ __forceinline__ bool ferro_clip_scale(const float* clip, float* scale) {
    *scale = 1.0f;
    if (clip == nullptr) return true;
    if (!(fabsf(clip[0]) < FERRO_INF)) return false;
    *scale = clip[1];
    return true;
}

// This block's share of an update launch: its tensor, the gradient scale and the element range
// [begin, end). False when there is nothing to do: the tensor is in another group, or clipping
// found a non-finite norm (the step is skipped).
struct FerroUpdateBlock {
    FerroOptimTensor tensor;
    const float* grad;
    float scale;
    int begin, end;
};
__device__ __forceinline__ bool ferro_update_block(const FerroOptimTensor* table, const float* const* grads, int count,
                                                   int group, const float* clip, FerroUpdateBlock* b) {
    const int t = ferro_owner<&FerroOptimTensor::update_block_start>(table, count, blockIdx.x);
    b->tensor = table[t];
    if (b->tensor.group != group || !ferro_clip_scale(clip, &b->scale)) return false;
    b->grad = grads[t];
    b->begin = (blockIdx.x - b->tensor.update_block_start) * FERRO_OPTIM_CHUNK + threadIdx.x;
    b->end = min((blockIdx.x - b->tensor.update_block_start + 1) * FERRO_OPTIM_CHUNK, b->tensor.len);
    return true;
}

// The gradients enter as __fmul_rn(grad, scale): the clipped gradient is rounded on its own, as
// when the scaled gradient was stored before the per-tensor step. The momentum buffer starts as
// the gradient when steps[group] (read here, as adam_multi_step reads it, after advance_steps)
// is 1: the group's first step taken, whatever steps were skipped before it.
extern "C" __global__ void sgd_multi_step(const FerroOptimTensor* __restrict__ table,
                                          const float* const* __restrict__ grads, int count, int group,
                                          const float* __restrict__ clip, float lr, float momentum, float dampening,
                                          int use_momentum, int nesterov, const unsigned int* __restrict__ steps) {
    FerroUpdateBlock b;
    if (!ferro_update_block(table, grads, count, group, clip, &b)) return;
    const int first_step = use_momentum && steps[group] == 1u;
    for (int i = b.begin; i < b.end; i += blockDim.x)
        ferro_sgd_update(b.tensor.param, __fmul_rn(b.grad[i], b.scale), b.tensor.first, i, lr, momentum, dampening,
                         b.tensor.weight_decay, use_momentum, nesterov, first_step);
}

// base^t by repeated squaring: the same function of t however the count got there (a resumed run
// continues with the bits an uninterrupted one has).
__device__ double ferro_pow_count(double base, unsigned int t) {
    double result = 1.0;
    while (t != 0u) {
        if (t & 1u) result *= base;
        base *= base;
        t >>= 1;
    }
    return result;
}

// The step number steps[group] is read here, not passed by value, so that a replayed CUDA graph
// updates with the count advance_steps has reached; thread 0 turns it into the bias corrections.
extern "C" __global__ void adam_multi_step(const FerroOptimTensor* __restrict__ table,
                                           const float* const* __restrict__ grads, int count, int group,
                                           const float* __restrict__ clip, float lr, float beta1, float beta2,
                                           double beta1_f64, double beta2_f64, float eps, int decoupled,
                                           const unsigned int* __restrict__ steps) {
    __shared__ float bias[2];
    FerroUpdateBlock b;
    if (!ferro_update_block(table, grads, count, group, clip, &b)) return;
    if (threadIdx.x == 0) {
        const unsigned int t = steps[group];
        bias[0] = (float)(1.0 - ferro_pow_count(beta1_f64, t));
        bias[1] = (float)(1.0 - ferro_pow_count(beta2_f64, t));
    }
    __syncthreads();
    for (int i = b.begin; i < b.end; i += blockDim.x)
        ferro_adam_update(b.tensor.param, __fmul_rn(b.grad[i], b.scale), b.tensor.first, b.tensor.second, i, lr,
                          beta1, beta2, eps, b.tensor.weight_decay, decoupled, bias[0], bias[1]);
}

// One more step for every count of a multi-tensor step (one thread per group), unless the
// step's clip state (clip may be null) found a non-finite gradient norm: a skipped step is not
// counted, as PyTorch's GradScaler skips optimizer.step() altogether.
extern "C" __global__ void advance_steps(unsigned int* __restrict__ steps, int n, const float* __restrict__ clip) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    float unused_scale;
    if (i < n && ferro_clip_scale(clip, &unused_scale)) steps[i] += 1u;
}

// First pass of the global gradient norm: each block is one block of the first pass of the
// per-tensor sum_squares (kernels/reduce.cu's reduce_sum) of its tensor: the same grid-stride
// partition, the same fma, and the same block reduction (threads beyond that launch's block
// size add zeros, which is exact), so each partial is bit-identical to sum_squares's.
extern "C" __global__ void grad_norm_partials(const FerroOptimTensor* __restrict__ table,
                                              const float* const* __restrict__ grads, int count,
                                              float* __restrict__ partials) {
    __shared__ float scratch[33];
    const int t = ferro_owner<&FerroOptimTensor::norm_block_start>(table, count, blockIdx.x);
    const FerroOptimTensor tensor = table[t];
    const float* grad = grads[t];
    float acc = 0.0f;
    if ((int)threadIdx.x < tensor.norm_threads) {
        const int stride = tensor.norm_blocks * tensor.norm_threads;
        for (int i = (blockIdx.x - tensor.norm_block_start) * tensor.norm_threads + threadIdx.x; i < tensor.len;
             i += stride) {
            const float v = grad[i];
            acc = fmaf(v, v, acc);
        }
    }
    acc = ferro_block_sum(acc, scratch);
    if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

// One block: each tensor's sum of squares from its partials (sum_squares's second pass, again
// with its block size), summed over the tensors in table order in f64 as the host did; then
// clip = {norm, min(1, max_norm / (norm + 1e-6)), non-finite steps so far (+1 when this norm is
// not finite)}, PyTorch's clip_grad_norm_ coefficient.
extern "C" __global__ void grad_norm_finish(const FerroOptimTensor* __restrict__ table, int count,
                                            const float* __restrict__ partials, double max_norm,
                                            float* __restrict__ clip) {
    __shared__ float scratch[33];
    double total = 0.0;
    for (int t = 0; t < count; ++t) {
        const FerroOptimTensor tensor = table[t];
        float sum;
        if (tensor.norm_blocks == 1) {
            sum = partials[tensor.norm_block_start];
        } else {
            float acc = 0.0f;
            if ((int)threadIdx.x < tensor.partial_threads) {
                for (int i = threadIdx.x; i < tensor.norm_blocks; i += tensor.partial_threads)
                    acc = __fadd_rn(acc, partials[tensor.norm_block_start + i]);
            }
            sum = ferro_block_sum(acc, scratch);
        }
        total += (double)sum;
    }
    if (threadIdx.x == 0) {
        const double norm = sqrt(total);
        const double coef = max_norm / (norm + 1e-6);
        clip[0] = (float)norm;
        clip[1] = coef < 1.0 ? (float)coef : 1.0f;
        if (!(fabs(norm) < (double)FERRO_INF)) clip[2] += 1.0f;
    }
}
