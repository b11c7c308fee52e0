// Row-wise softmax and fused softmax cross-entropy over logits [N, K], one block per row. Every
// exponent is max-subtracted so no row overflows. Labels were range-checked on the host.
#include "common.cuh"

// Loss of row r into row_loss[r] and dlogits = (softmax - target) * inv_n, where the target is
// (1 - smoothing) * onehot(label) + smoothing / K. With lse = log(sum exp(logits)), the loss is
// (1 - smoothing) * (lse - logit[label]) + smoothing * (lse - mean(logits)).
extern "C" __global__ void softmax_cross_entropy(const float* __restrict__ logits,
                                                 const unsigned int* __restrict__ labels,
                                                 float* __restrict__ row_loss, float* __restrict__ dlogits,
                                                 int classes, float smoothing, float inv_n) {
    __shared__ float scratch[33];
    const int r = blockIdx.x;
    const float* row = logits + (long long)r * classes;
    float* grad = dlogits + (long long)r * classes;

    float local_max = -FERRO_INF;
    float local_sum = 0.0f;
    for (int k = threadIdx.x; k < classes; k += blockDim.x) {
        local_max = fmaxf(local_max, row[k]);
        local_sum += row[k];
    }
    const float row_max = ferro_block_max(local_max, scratch);
    const float sum_logits = ferro_block_sum(local_sum, scratch);

    float local_exp = 0.0f;
    for (int k = threadIdx.x; k < classes; k += blockDim.x) local_exp += expf(row[k] - row_max);
    const float sum_exp = ferro_block_sum(local_exp, scratch);

    const int label = (int)labels[r];
    const float lse = row_max + logf(sum_exp);
    const float off_target = smoothing / (float)classes;
    if (threadIdx.x == 0) {
        row_loss[r] = (1.0f - smoothing) * (lse - row[label]) + smoothing * (lse - sum_logits / (float)classes);
    }
    const float inv_sum = 1.0f / sum_exp;
    for (int k = threadIdx.x; k < classes; k += blockDim.x) {
        const float target = off_target + (k == label ? 1.0f - smoothing : 0.0f);
        grad[k] = (expf(row[k] - row_max) * inv_sum - target) * inv_n;
    }
}

extern "C" __global__ void softmax(const float* __restrict__ logits, float* __restrict__ probs, int classes) {
    __shared__ float scratch[33];
    const long long base = (long long)blockIdx.x * classes;
    float local_max = -FERRO_INF;
    for (int k = threadIdx.x; k < classes; k += blockDim.x) local_max = fmaxf(local_max, logits[base + k]);
    const float row_max = ferro_block_max(local_max, scratch);
    float local_exp = 0.0f;
    for (int k = threadIdx.x; k < classes; k += blockDim.x) local_exp += expf(logits[base + k] - row_max);
    const float inv_sum = 1.0f / ferro_block_sum(local_exp, scratch);
    for (int k = threadIdx.x; k < classes; k += blockDim.x) probs[base + k] = expf(logits[base + k] - row_max) * inv_sum;
}
