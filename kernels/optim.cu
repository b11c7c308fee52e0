// Fused optimiser steps with PyTorch's semantics (ops/optim/mod.rs): per tensor or over a table of
// tensors in one launch (multi-tensor), each thread updating 4 consecutive parameters in 16-byte
// accesses where the tensor's buffers allow. Both go through the same per-element updates, so
// their results are bit-identical. Also the global gradient norm of
// clipping, computed and turned into a scale on the device (no read-back).
#include "common.cuh"
#include "pointwise.cuh"

// One SGD update of a parameter value p with gradient g (buf: its momentum, untouched when
// use_momentum == 0).
__device__ __forceinline__ void ferro_sgd_update(float& p, float g, float& buf, float lr, float momentum,
                                                 float dampening, float weight_decay, int use_momentum, int nesterov,
                                                 int first_step) {
    g = g + weight_decay * p;
    if (use_momentum) {
        buf = first_step ? g : momentum * buf + (1.0f - dampening) * g;
        g = nesterov ? g + momentum * buf : buf;
    }
    p = p - lr * g;
}

// One Adam/AdamW update of a parameter value p with gradient g and moments m, v. bias1 = 1 -
// beta1^t and bias2 = 1 - beta2^t are computed in f64: by the host for adam_step, on the device
// for adam_multi_step. Decoupled (AdamW) decay scales the parameter first; otherwise (Adam) the
// decay joins the gradient.
__device__ __forceinline__ void ferro_adam_update(float& p, float g, float& m, float& v, float lr, float beta1,
                                                  float beta2, float eps, float weight_decay, int decoupled,
                                                  float bias1, float bias2) {
    if (decoupled) {
        p *= 1.0f - lr * weight_decay;
    } else {
        g += weight_decay * p;
    }
    m = beta1 * m + (1.0f - beta1) * g;
    v = beta2 * v + (1.0f - beta2) * g * g;
    p = p - lr * (m / bias1) / (sqrtf(v / bias2) + eps);
}

// A thread's group of 4 consecutive elements [i, i + 4) of a tensor of `len` values
// (kernels/pointwise.cuh's FERRO_GROUP): one 16-byte access when the group moves whole (every
// buffer of the update 16-byte aligned and i + 4 <= len), else one value at a time, the elements
// past `len` left out. A null buffer (unused state) reads zeros and is never written.
struct FerroQuad {
    int i, len;
    bool whole;
    __device__ __forceinline__ FerroQuad() : i(0), len(0), whole(false) {}
    __device__ __forceinline__ FerroQuad(int first, int n, bool aligned)
        : i(first), len(n), whole(ferro_group_whole(first, n, aligned)) {}
    __device__ __forceinline__ bool has(int k) const { return i + k < len; }
    __device__ __forceinline__ void load(const float* p, float (&v)[4]) const {
        if (p != nullptr && whole) {
            const float4 q = *reinterpret_cast<const float4*>(p + i);
            v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
            return;
        }
#pragma unroll
        for (int k = 0; k < 4; ++k) v[k] = p != nullptr && has(k) ? p[i + k] : 0.0f;
    }
    __device__ __forceinline__ void store(float* p, const float (&v)[4]) const {
        if (p == nullptr) return;
        if (whole) {
            *reinterpret_cast<float4*>(p + i) = make_float4(v[0], v[1], v[2], v[3]);
            return;
        }
#pragma unroll
        for (int k = 0; k < 4; ++k)
            if (has(k)) p[i + k] = v[k];
    }
};

// Whether every one of the buffers (null ones aside) starts 16-byte aligned.
__device__ __forceinline__ bool ferro_aligned16(const void* a, const void* b, const void* c, const void* d) {
    return ((reinterpret_cast<size_t>(a) | reinterpret_cast<size_t>(b) | reinterpret_cast<size_t>(c) |
             reinterpret_cast<size_t>(d)) & 15) == 0;
}

// The SGD update of quad q; `scale` multiplies the gradient first (rounded on its own, as when
// a clipped gradient was stored before the step; 1 leaves it exact).
__device__ __forceinline__ void ferro_sgd_quad(const FerroQuad& q, float* param, const float* grad, float* momentum_buf,
                                               float scale, float lr, float momentum, float dampening,
                                               float weight_decay, int use_momentum, int nesterov, int first_step) {
    float p[4], g[4], buf[4];
    float* state = use_momentum ? momentum_buf : nullptr;
    q.load(param, p);
    q.load(grad, g);
    q.load(state, buf);
#pragma unroll
    for (int k = 0; k < 4; ++k)
        ferro_sgd_update(p[k], __fmul_rn(g[k], scale), buf[k], lr, momentum, dampening, weight_decay, use_momentum,
                         nesterov, first_step);
    q.store(param, p);
    q.store(state, buf);
}

// The Adam/AdamW update of quad q, the gradient scaled as in ferro_sgd_quad.
__device__ __forceinline__ void ferro_adam_quad(const FerroQuad& q, float* param, const float* grad, float* m_buf,
                                                float* v_buf, float scale, float lr, float beta1, float beta2,
                                                float eps, float weight_decay, int decoupled, float bias1,
                                                float bias2) {
    float p[4], g[4], m[4], v[4];
    q.load(param, p);
    q.load(grad, g);
    q.load(m_buf, m);
    q.load(v_buf, v);
#pragma unroll
    for (int k = 0; k < 4; ++k)
        ferro_adam_update(p[k], __fmul_rn(g[k], scale), m[k], v[k], lr, beta1, beta2, eps, weight_decay, decoupled,
                          bias1, bias2);
    q.store(param, p);
    q.store(m_buf, m);
    q.store(v_buf, v);
}

// One thread per 4 consecutive parameters (16-byte accesses where the buffers allow).
// use_momentum == 0 never touches momentum_buf (it may be empty then).
extern "C" __global__ void sgd_step(float* __restrict__ param, const float* __restrict__ grad,
                                    float* __restrict__ momentum_buf, float lr, float momentum, float dampening,
                                    float weight_decay, int use_momentum, int nesterov, int first_step, int n) {
    const long long i = ferro_group_start(n);
    if (i < 0) return;
    const FerroQuad q((int)i, n, ferro_aligned16(param, grad, use_momentum ? momentum_buf : nullptr, nullptr));
    ferro_sgd_quad(q, param, grad, momentum_buf, 1.0f, lr, momentum, dampening, weight_decay, use_momentum, nesterov,
                   first_step);
}

extern "C" __global__ void adam_step(float* __restrict__ param, const float* __restrict__ grad, float* __restrict__ m,
                                     float* __restrict__ v, float lr, float beta1, float beta2, float eps,
                                     float weight_decay, int decoupled, float bias1, float bias2, int n) {
    const long long i = ferro_group_start(n);
    if (i < 0) return;
    const FerroQuad q((int)i, n, ferro_aligned16(param, grad, m, v));
    ferro_adam_quad(q, param, grad, m, v, 1.0f, lr, beta1, beta2, eps, weight_decay, decoupled, bias1, bias2);
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

// Threads per block of the multi-tensor kernels and the elements each block of an update
// handles: 4 consecutive ones per thread (TABLE_BLOCK and UPDATE_CHUNK in ops/optim/cuda.rs).
#define FERRO_OPTIM_THREADS 256
#define FERRO_OPTIM_CHUNK (FERRO_GROUP * FERRO_OPTIM_THREADS)

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

// This thread's share of an update launch: its tensor, the gradient scale and its 4 elements
// (none when past the tensor's end). False, for the whole block, when there is nothing to do:
// the tensor is in another group, or clipping found a non-finite norm (the step is skipped).
struct FerroUpdateBlock {
    FerroOptimTensor tensor;
    const float* grad;
    float scale;
    FerroQuad quad;  // the thread's 4 elements
};
__device__ __forceinline__ bool ferro_update_block(const FerroOptimTensor* table, const float* const* grads, int count,
                                                   int group, const float* clip, FerroUpdateBlock* b) {
    const int t = ferro_owner<&FerroOptimTensor::update_block_start>(table, count, blockIdx.x);
    b->tensor = table[t];
    if (b->tensor.group != group || !ferro_clip_scale(clip, &b->scale)) return false;
    b->grad = grads[t];
    const int first = (blockIdx.x - b->tensor.update_block_start) * FERRO_OPTIM_CHUNK + FERRO_GROUP * threadIdx.x;
    b->quad = FerroQuad(first, b->tensor.len, ferro_aligned16(b->tensor.param, b->grad, b->tensor.first, b->tensor.second));
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
    ferro_sgd_quad(b.quad, b.tensor.param, b.grad, b.tensor.first, b.scale, lr, momentum, dampening,
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
    FerroUpdateBlock b;
    if (!ferro_update_block(table, grads, count, group, clip, &b)) return;
    __shared__ float bias[2];
    if (threadIdx.x == 0) {
        const unsigned int t = steps[group];
        bias[0] = (float)(1.0 - ferro_pow_count(beta1_f64, t));
        bias[1] = (float)(1.0 - ferro_pow_count(beta2_f64, t));
    }
    __syncthreads();
    ferro_adam_quad(b.quad, b.tensor.param, b.grad, b.tensor.first, b.tensor.second, b.scale, lr, beta1, beta2, eps,
                    b.tensor.weight_decay, decoupled, bias[0], bias[1]);
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
// per-tensor sum_squares (kernels/reduce.cu's reduce_sum) of its tensor: the same partition
// (ferro_share_sum), and the same block reduction (threads beyond that launch's block
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
        const int t = (blockIdx.x - tensor.norm_block_start) * tensor.norm_threads + threadIdx.x;
        const bool aligned = (reinterpret_cast<size_t>(grad) & 15) == 0;  // as reduce_sum's host decides
        acc = ferro_share_sum(grad, tensor.len, t, tensor.norm_blocks * tensor.norm_threads, true, aligned);
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
