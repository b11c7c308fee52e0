// BatchNorm2d over x [N, C, HW]: one block per channel. Statistics are two-pass in fp32 (a shifted
// mean, then the mean of squared deviations) so the variance does not cancel catastrophically when
// |mean| >> std, as E[x^2] - E[x]^2 would.
#include "common.cuh"

// Element i (0 <= i < n*hw) of channel ch, walking the channel's N planes of hw values.
__device__ __forceinline__ int bn_index(int i, int ch, int c, int hw) {
    const int img = i / hw;
    return (img * c + ch) * hw + (i - img * hw);
}

// Training forward: batch mean and biased variance of channel blockIdx.x, y = (x - mean) *
// invstd * gamma + beta, the saved statistics, and PyTorch's running-statistics update with the
// unbiased variance (the host guarantees n*hw > 1).
extern "C" __global__ void bn_forward_train(const float* __restrict__ x, const float* __restrict__ gamma,
                                            const float* __restrict__ beta, float* __restrict__ y,
                                            float* __restrict__ save_mean, float* __restrict__ save_invstd,
                                            float* __restrict__ running_mean, float* __restrict__ running_var,
                                            int n, int c, int hw, float eps, float momentum) {
    __shared__ float scratch[33];
    const int ch = blockIdx.x;
    const int count = n * hw;

    // Summing x - shift (any value of the channel) keeps the partial sums small when |mean| is
    // large, so the mean keeps its low bits.
    const float shift = x[bn_index(0, ch, c, hw)];
    float sum = 0.0f;
    for (int i = threadIdx.x; i < count; i += blockDim.x) sum += x[bn_index(i, ch, c, hw)] - shift;
    const float mean = shift + ferro_block_sum(sum, scratch) / (float)count;

    float sq = 0.0f;
    for (int i = threadIdx.x; i < count; i += blockDim.x) {
        const float d = x[bn_index(i, ch, c, hw)] - mean;
        sq += d * d;
    }
    const float var = ferro_block_sum(sq, scratch) / (float)count;
    const float invstd = 1.0f / sqrtf(var + eps);

    if (threadIdx.x == 0) {
        save_mean[ch] = mean;
        save_invstd[ch] = invstd;
        const float unbiased = var * ((float)count / (float)(count - 1));
        running_mean[ch] = (1.0f - momentum) * running_mean[ch] + momentum * mean;
        running_var[ch] = (1.0f - momentum) * running_var[ch] + momentum * unbiased;
    }

    const float scale = gamma[ch] * invstd;
    const float bias = beta[ch];
    for (int i = threadIdx.x; i < count; i += blockDim.x) {
        const int idx = bn_index(i, ch, c, hw);
        y[idx] = (x[idx] - mean) * scale + bias;
    }
}

// Eval forward, one thread per element, with the running statistics.
extern "C" __global__ void bn_forward_eval(const float* __restrict__ x, const float* __restrict__ gamma,
                                           const float* __restrict__ beta, const float* __restrict__ running_mean,
                                           const float* __restrict__ running_var, float* __restrict__ y, int c,
                                           int hw, int total, float eps) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const int ch = (i / hw) % c;
    const float scale = gamma[ch] / sqrtf(running_var[ch] + eps);
    y[i] = (x[i] - running_mean[ch]) * scale + beta[ch];
}

// Training backward of channel blockIdx.x with xhat = (x - mean) * invstd, m = n*hw:
// dbeta = sum dy, dgamma = sum dy * xhat, dx = gamma * invstd * (dy - dbeta/m - xhat * dgamma/m).
extern "C" __global__ void bn_backward(const float* __restrict__ dy, const float* __restrict__ x,
                                       const float* __restrict__ gamma, const float* __restrict__ save_mean,
                                       const float* __restrict__ save_invstd, float* __restrict__ dx,
                                       float* __restrict__ dgamma, float* __restrict__ dbeta, int n, int c, int hw) {
    __shared__ float scratch[33];
    const int ch = blockIdx.x;
    const int count = n * hw;
    const float mean = save_mean[ch];
    const float invstd = save_invstd[ch];

    float sum_dy = 0.0f;
    float sum_dy_xhat = 0.0f;
    for (int i = threadIdx.x; i < count; i += blockDim.x) {
        const int idx = bn_index(i, ch, c, hw);
        const float g = dy[idx];
        sum_dy += g;
        sum_dy_xhat += g * (x[idx] - mean) * invstd;
    }
    sum_dy = ferro_block_sum(sum_dy, scratch);
    sum_dy_xhat = ferro_block_sum(sum_dy_xhat, scratch);

    if (threadIdx.x == 0) {
        dbeta[ch] = sum_dy;
        dgamma[ch] = sum_dy_xhat;
    }
    const float inv_count = 1.0f / (float)count;
    const float mean_dy = sum_dy * inv_count;
    const float mean_dy_xhat = sum_dy_xhat * inv_count;
    const float scale = gamma[ch] * invstd;
    for (int i = threadIdx.x; i < count; i += blockDim.x) {
        const int idx = bn_index(i, ch, c, hw);
        const float xhat = (x[idx] - mean) * invstd;
        dx[idx] = scale * (dy[idx] - mean_dy - xhat * mean_dy_xhat);
    }
}
