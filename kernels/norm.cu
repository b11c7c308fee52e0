// BatchNorm2d over x [N, C, HW]. Each channel's N*HW values are cut into `splits` chunks of
// `chunk` values (the last may be shorter, never empty), one block per (channel, chunk), so even
// a few channels over large images fill the GPU; blockIdx.x = ch * splits + s. Per-channel
// results are combined by a second kernel, and a pointwise kernel applies them.
//
// Statistics are one pass in fp32 within a chunk (sums of x and x^2 shifted by a value of the
// chunk) and chunks are merged with Chan et al.'s pairwise rule, so the variance does not cancel
// catastrophically when |mean| >> std, as E[x^2] - E[x]^2 would.
//
// With one value per image and channel (hw == 1: batch norm of channels-last activations, x a
// [rows, C] matrix) the per-channel reads above would stride by C; the _rows kernels at the end
// reduce with threads along channels instead.
#include "common.cuh"
#include "activation.cuh"
#include "channel_rows.cuh"

// Flat index of the i-th value (0 <= i < n*hw) of channel ch.
__device__ __forceinline__ int bn_index(int i, int ch, int c, int hw) {
    const int img = i / hw;
    return (img * c + ch) * hw + (i - img * hw);
}

// Values in chunk s of a channel of `count` values.
__device__ __forceinline__ int chunk_len(int s, int chunk, int count) {
    return min(chunk, count - s * chunk);
}

// Per (channel, chunk): the chunk's mean and M2 (sum of squared deviations from that mean).
extern "C" __global__ void bn_partial_stats(const float* __restrict__ x, float* __restrict__ part_mean,
                                            float* __restrict__ part_m2, int n, int c, int hw, int chunk,
                                            int splits) {
    __shared__ float scratch[33];
    const int ch = blockIdx.x / splits;
    const int s = blockIdx.x - ch * splits;
    const int begin = s * chunk;
    const int end = begin + chunk_len(s, chunk, n * hw);

    // One pass: the sum and the sum of squares of x - shift (a value of the chunk). Shifting by a
    // value of the chunk keeps both small when |mean| >> std, so M2 = S2 - S1^2 / len does not
    // cancel catastrophically as E[x^2] - E[x]^2 would.
    const float shift = x[bn_index(begin, ch, c, hw)];
    float sum = 0.0f;
    float sq = 0.0f;
    for (int i = begin + threadIdx.x; i < end; i += blockDim.x) {
        const float d = x[bn_index(i, ch, c, hw)] - shift;
        sum += d;
        sq += d * d;
    }
    const float len = (float)(end - begin);
    const float s1 = ferro_block_sum(sum, scratch);
    const float s2 = ferro_block_sum(sq, scratch);
    const float mean = shift + s1 / len;
    const float m2 = fmaxf(s2 - s1 * s1 / len, 0.0f);
    if (threadIdx.x == 0) {
        part_mean[blockIdx.x] = mean;
        part_m2[blockIdx.x] = m2;
    }
}

// One block per channel merges its chunks: mean = mean_0 + sum n_s (mean_s - mean_0) / count
// (shifted by the first chunk's mean for the same reason as above), M2 = sum M2_s +
// n_s (mean_s - mean)^2. Writes the saved statistics (mean, 1/sqrt(biased var + eps)) and
// PyTorch's running-statistics update with the unbiased variance (the host guarantees count > 1).
extern "C" __global__ void bn_finalize_stats(const float* __restrict__ part_mean, const float* __restrict__ part_m2,
                                             float* __restrict__ save_mean, float* __restrict__ save_invstd,
                                             float* __restrict__ running_mean, float* __restrict__ running_var,
                                             int count, int chunk, int splits, float eps, float momentum) {
    __shared__ float scratch[33];
    const int ch = blockIdx.x;
    const float* means = part_mean + ch * splits;
    const float* m2s = part_m2 + ch * splits;

    const float shift = means[0];
    float weighted = 0.0f;
    for (int s = threadIdx.x; s < splits; s += blockDim.x) weighted += chunk_len(s, chunk, count) * (means[s] - shift);
    const float mean = shift + ferro_block_sum(weighted, scratch) / (float)count;

    float m2 = 0.0f;
    for (int s = threadIdx.x; s < splits; s += blockDim.x) {
        const float d = means[s] - mean;
        m2 += m2s[s] + chunk_len(s, chunk, count) * d * d;
    }
    const float var = ferro_block_sum(m2, scratch) / (float)count;

    if (threadIdx.x == 0) {
        save_mean[ch] = mean;
        save_invstd[ch] = 1.0f / sqrtf(var + eps);
        const float unbiased = var * ((float)count / (float)(count - 1));
        running_mean[ch] = (1.0f - momentum) * running_mean[ch] + momentum * mean;
        running_var[ch] = (1.0f - momentum) * running_var[ch] + momentum * unbiased;
    }
}

// Training normalisation, one thread per element: y = (x - mean) * invstd * gamma + beta.
extern "C" __global__ void bn_apply(const float* __restrict__ x, const float* __restrict__ mean,
                                    const float* __restrict__ invstd, const float* __restrict__ gamma,
                                    const float* __restrict__ beta, float* __restrict__ y, int c, int hw, int total) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const int ch = (i / hw) % c;
    y[i] = (x[i] - mean[ch]) * (gamma[ch] * invstd[ch]) + beta[ch];
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

// Per (channel, chunk) of the backward: sum dy and sum dy * xhat, xhat = (x - mean) * invstd.
// Summed over chunks (elementwise::channel_sum) they are dbeta and dgamma.
extern "C" __global__ void bn_partial_grads(const float* __restrict__ dy, const float* __restrict__ x,
                                            const float* __restrict__ save_mean,
                                            const float* __restrict__ save_invstd, float* __restrict__ part_dy,
                                            float* __restrict__ part_dy_xhat, int n, int c, int hw, int chunk,
                                            int splits) {
    __shared__ float scratch[33];
    const int ch = blockIdx.x / splits;
    const int s = blockIdx.x - ch * splits;
    const int begin = s * chunk;
    const int end = begin + chunk_len(s, chunk, n * hw);
    const float mean = save_mean[ch];
    const float invstd = save_invstd[ch];

    float sum_dy = 0.0f;
    float sum_dy_xhat = 0.0f;
    for (int i = begin + threadIdx.x; i < end; i += blockDim.x) {
        const int idx = bn_index(i, ch, c, hw);
        const float g = dy[idx];
        sum_dy += g;
        sum_dy_xhat += g * (x[idx] - mean) * invstd;
    }
    sum_dy = ferro_block_sum(sum_dy, scratch);
    sum_dy_xhat = ferro_block_sum(sum_dy_xhat, scratch);
    if (threadIdx.x == 0) {
        part_dy[blockIdx.x] = sum_dy;
        part_dy_xhat[blockIdx.x] = sum_dy_xhat;
    }
}

// dx = gamma * invstd * (dy - dbeta / m - xhat * dgamma / m), one thread per element.
extern "C" __global__ void bn_backward_apply(const float* __restrict__ dy, const float* __restrict__ x,
                                             const float* __restrict__ gamma, const float* __restrict__ save_mean,
                                             const float* __restrict__ save_invstd, const float* __restrict__ dgamma,
                                             const float* __restrict__ dbeta, float* __restrict__ dx, int c, int hw,
                                             int total, float inv_count) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const int ch = (i / hw) % c;
    const float invstd = save_invstd[ch];
    const float xhat = (x[i] - save_mean[ch]) * invstd;
    dx[i] = gamma[ch] * invstd * (dy[i] - dbeta[ch] * inv_count - xhat * dgamma[ch] * inv_count);
}

// Batch norm -> (residual add) -> activation fused (crate::ops::norm's BatchNormAct): the
// pre-activation z = (x - mean) * invstd * gamma + beta (+ r) is never stored. The forward
// writes act(z) alone and the backward recomputes z from x (and r), so the chain keeps only the
// batch norm's input and the residual, which the residual's other readers keep anyway.
// `has_residual` is uniform across a launch; without a residual, `residual` is never read.
__device__ __forceinline__ float bn_act_pre(const float* __restrict__ x, const float* __restrict__ residual,
                                            int has_residual, float mean, float invstd, float gamma,
                                            float beta, int i, float* xhat) {
    *xhat = (x[i] - mean) * invstd;
    const float z = *xhat * gamma + beta;
    return has_residual ? z + residual[i] : z;
}

// Training apply after bn_partial_stats and bn_finalize_stats: y = act(z), one thread per element.
extern "C" __global__ void bn_act_apply(const float* __restrict__ x, const float* __restrict__ residual,
                                        const float* __restrict__ mean, const float* __restrict__ invstd,
                                        const float* __restrict__ gamma, const float* __restrict__ beta,
                                        float* __restrict__ y, int has_residual, int kind, int c, int hw,
                                        int total) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const int ch = (i / hw) % c;
    float xhat;
    const float z = bn_act_pre(x, residual, has_residual, mean[ch], invstd[ch], gamma[ch], beta[ch], i, &xhat);
    y[i] = activate(kind, z);
}

// Per (channel, chunk) of the backward: with dz = dy * act'(z), sum dz and sum dz * xhat (summed
// over chunks they are dbeta and dgamma), as bn_partial_grads does for dy.
extern "C" __global__ void bn_act_partial_grads(const float* __restrict__ dy, const float* __restrict__ x,
                                                const float* __restrict__ residual,
                                                const float* __restrict__ save_mean,
                                                const float* __restrict__ save_invstd,
                                                const float* __restrict__ gamma, const float* __restrict__ beta,
                                                float* __restrict__ part_dz, float* __restrict__ part_dz_xhat,
                                                int has_residual, int kind, int n, int c, int hw, int chunk,
                                                int splits) {
    __shared__ float scratch[33];
    const int ch = blockIdx.x / splits;
    const int s = blockIdx.x - ch * splits;
    const int begin = s * chunk;
    const int end = begin + chunk_len(s, chunk, n * hw);
    const float mean = save_mean[ch];
    const float invstd = save_invstd[ch];
    const float g = gamma[ch];
    const float b = beta[ch];

    float sum_dz = 0.0f;
    float sum_dz_xhat = 0.0f;
    for (int i = begin + threadIdx.x; i < end; i += blockDim.x) {
        const int idx = bn_index(i, ch, c, hw);
        float xhat;
        const float z = bn_act_pre(x, residual, has_residual, mean, invstd, g, b, idx, &xhat);
        const float dz = dy[idx] * derivative(kind, z);
        sum_dz += dz;
        sum_dz_xhat += dz * xhat;
    }
    sum_dz = ferro_block_sum(sum_dz, scratch);
    sum_dz_xhat = ferro_block_sum(sum_dz_xhat, scratch);
    if (threadIdx.x == 0) {
        part_dz[blockIdx.x] = sum_dz;
        part_dz_xhat[blockIdx.x] = sum_dz_xhat;
    }
}

// dr = dz (when there is a residual) and dx = gamma * invstd * (dz - dbeta / m - xhat * dgamma / m),
// one thread per element. Without a residual, `dresidual` is never written.
extern "C" __global__ void bn_act_backward_apply(const float* __restrict__ dy, const float* __restrict__ x,
                                                 const float* __restrict__ residual,
                                                 const float* __restrict__ gamma, const float* __restrict__ beta,
                                                 const float* __restrict__ save_mean,
                                                 const float* __restrict__ save_invstd,
                                                 const float* __restrict__ dgamma, const float* __restrict__ dbeta,
                                                 float* __restrict__ dx, float* dresidual, int has_residual,
                                                 int kind, int c, int hw, int total, float inv_count) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const int ch = (i / hw) % c;
    const float invstd = save_invstd[ch];
    float xhat;
    const float z = bn_act_pre(x, residual, has_residual, save_mean[ch], invstd, gamma[ch], beta[ch], i, &xhat);
    const float dz = dy[i] * derivative(kind, z);
    if (has_residual) dresidual[i] = dz;
    dx[i] = gamma[ch] * invstd * (dz - dbeta[ch] * inv_count - xhat * dgamma[ch] * inv_count);
}

// ---- Channels innermost (hw == 1), x [rows, C]: one block per (row range, 32-channel chunk),
// threads along channels (channel_rows.cuh), blockIdx.x = split * chunks + chunk. Each row range
// plays the part of a chunk above: the partials are written [C, splits] in the same meaning, so
// bn_finalize_stats and the chunk totals serve both. Ranges hold rows_per_split rows, the last
// fewer but never none.

// This block's row range [begin, end) and its channel chunk's share for this thread.
__device__ __forceinline__ ChannelRows bn_rows(int C, int rows, int rows_per_split, int chunks, int* split,
                                               int* end) {
    *split = blockIdx.x / chunks;
    const int begin = *split * rows_per_split;
    *end = min(begin + rows_per_split, rows);
    return channel_rows(C, blockIdx.x - *split * chunks, begin);
}

// Writes a block's two per-channel totals as the [C, splits] partials `first` and `second`.
__device__ __forceinline__ void bn_rows_store(const float (&acc)[2], const ChannelRows& cr, int split, int splits,
                                              float* __restrict__ first, float* __restrict__ second) {
    if (threadIdx.x >= cr.lanes) return;
    first[cr.c * splits + split] = acc[0];
    second[cr.c * splits + split] = acc[1];
}

// Per (row range, channel): the range's mean and M2, shifted by the range's first value of the
// channel as bn_partial_stats does.
extern "C" __global__ void __launch_bounds__(CR_THREADS)
    bn_partial_stats_rows(const float* __restrict__ x, float* __restrict__ part_mean, float* __restrict__ part_m2,
                          int C, int rows, int rows_per_split, int chunks, int splits) {
    __shared__ float scratch[2][CR_THREADS];
    int split, end;
    const ChannelRows cr = bn_rows(C, rows, rows_per_split, chunks, &split, &end);
    const int begin = split * rows_per_split;
    const float shift = x[(size_t)begin * C + cr.c];
    float acc[2] = {0.0f, 0.0f};
    if (cr.active) {
        for (int r = cr.row; r < end; r += cr.step) {
            const float d = x[(size_t)r * C + cr.c] - shift;
            acc[0] += d;
            acc[1] += d * d;
        }
    }
    channel_rows_total<2>(acc, cr, scratch);
    const float len = (float)(end - begin);
    const float stats[2] = {shift + acc[0] / len, fmaxf(acc[1] - acc[0] * acc[0] / len, 0.0f)};
    bn_rows_store(stats, cr, split, splits, part_mean, part_m2);
}

// Element i's xhat and dz of a backward pass: dz = dy, or FUSED dy * act'(z) (only then are
// residual, gamma and beta read).
template <bool FUSED>
__device__ __forceinline__ float bn_rows_dz(const float* __restrict__ dy, const float* __restrict__ x,
                                            const float* __restrict__ residual, int has_residual, int kind,
                                            float mean, float invstd, float gamma, float beta, int i, float* xhat) {
    if (FUSED) {
        const float z = bn_act_pre(x, residual, has_residual, mean, invstd, gamma, beta, i, xhat);
        return dy[i] * derivative(kind, z);
    }
    *xhat = (x[i] - mean) * invstd;
    return dy[i];
}

// Per (row range, channel) of the backward: sum dz and sum dz * xhat, with dz = dy
// (bn_partial_grads_rows, as bn_partial_grads) or, FUSED, dz = dy * act'(z)
// (bn_act_partial_grads_rows, as bn_act_partial_grads; only it reads residual, gamma and beta).
template <bool FUSED>
__device__ __forceinline__ void bn_partial_grads_rows_body(
    const float* __restrict__ dy, const float* __restrict__ x, const float* __restrict__ residual,
    const float* __restrict__ save_mean, const float* __restrict__ save_invstd, const float* __restrict__ gamma,
    const float* __restrict__ beta, float* __restrict__ part_dz, float* __restrict__ part_dz_xhat, int has_residual,
    int kind, int C, int rows, int rows_per_split, int chunks, int splits) {
    __shared__ float scratch[2][CR_THREADS];
    int split, end;
    const ChannelRows cr = bn_rows(C, rows, rows_per_split, chunks, &split, &end);
    const float mean = save_mean[cr.c];
    const float invstd = save_invstd[cr.c];
    const float g = FUSED ? gamma[cr.c] : 0.0f;
    const float b = FUSED ? beta[cr.c] : 0.0f;
    float acc[2] = {0.0f, 0.0f};
    if (cr.active) {
        for (int r = cr.row; r < end; r += cr.step) {
            float xhat;
            const float dz =
                bn_rows_dz<FUSED>(dy, x, residual, has_residual, kind, mean, invstd, g, b, r * C + cr.c, &xhat);
            acc[0] += dz;
            acc[1] += dz * xhat;
        }
    }
    channel_rows_total<2>(acc, cr, scratch);
    bn_rows_store(acc, cr, split, splits, part_dz, part_dz_xhat);
}

extern "C" __global__ void __launch_bounds__(CR_THREADS)
    bn_partial_grads_rows(const float* __restrict__ dy, const float* __restrict__ x,
                          const float* __restrict__ save_mean, const float* __restrict__ save_invstd,
                          float* __restrict__ part_dy, float* __restrict__ part_dy_xhat, int C, int rows,
                          int rows_per_split, int chunks, int splits) {
    bn_partial_grads_rows_body<false>(dy, x, nullptr, save_mean, save_invstd, nullptr, nullptr, part_dy,
                                      part_dy_xhat, 0, 0, C, rows, rows_per_split, chunks, splits);
}

extern "C" __global__ void __launch_bounds__(CR_THREADS)
    bn_act_partial_grads_rows(const float* __restrict__ dy, const float* __restrict__ x,
                              const float* __restrict__ residual, const float* __restrict__ save_mean,
                              const float* __restrict__ save_invstd, const float* __restrict__ gamma,
                              const float* __restrict__ beta, float* __restrict__ part_dz,
                              float* __restrict__ part_dz_xhat, int has_residual, int kind, int C, int rows,
                              int rows_per_split, int chunks, int splits) {
    bn_partial_grads_rows_body<true>(dy, x, residual, save_mean, save_invstd, gamma, beta, part_dz, part_dz_xhat,
                                     has_residual, kind, C, rows, rows_per_split, chunks, splits);
}

// The pointwise passes with channels innermost, on the reductions' grid: each thread keeps its
// channel's per-channel values in registers over its row range, where one thread per element
// (the kernels above) would read them again for every element, 32 channels per warp apart.
// Same arithmetic as their per-element counterparts, element for element.

// bn_apply, or FUSED bn_act_apply.
template <bool FUSED>
__device__ __forceinline__ void bn_apply_rows_body(const float* __restrict__ x, const float* __restrict__ residual,
                                                   const float* __restrict__ mean, const float* __restrict__ invstd,
                                                   const float* __restrict__ gamma, const float* __restrict__ beta,
                                                   float* __restrict__ y, int has_residual, int kind, int C, int rows,
                                                   int rows_per_split, int chunks) {
    int split, end;
    const ChannelRows cr = bn_rows(C, rows, rows_per_split, chunks, &split, &end);
    if (!cr.active) return;
    const float m = mean[cr.c], s = invstd[cr.c], g = gamma[cr.c], b = beta[cr.c];
    for (int r = cr.row; r < end; r += cr.step) {
        const int i = r * C + cr.c;
        if (FUSED) {
            float xhat;
            y[i] = activate(kind, bn_act_pre(x, residual, has_residual, m, s, g, b, i, &xhat));
        } else {
            y[i] = (x[i] - m) * (g * s) + b;
        }
    }
}

extern "C" __global__ void __launch_bounds__(CR_THREADS)
    bn_apply_rows(const float* __restrict__ x, const float* __restrict__ mean, const float* __restrict__ invstd,
                  const float* __restrict__ gamma, const float* __restrict__ beta, float* __restrict__ y, int C,
                  int rows, int rows_per_split, int chunks) {
    bn_apply_rows_body<false>(x, nullptr, mean, invstd, gamma, beta, y, 0, 0, C, rows, rows_per_split, chunks);
}

extern "C" __global__ void __launch_bounds__(CR_THREADS)
    bn_act_apply_rows(const float* __restrict__ x, const float* __restrict__ residual,
                      const float* __restrict__ mean, const float* __restrict__ invstd,
                      const float* __restrict__ gamma, const float* __restrict__ beta, float* __restrict__ y,
                      int has_residual, int kind, int C, int rows, int rows_per_split, int chunks) {
    bn_apply_rows_body<true>(x, residual, mean, invstd, gamma, beta, y, has_residual, kind, C, rows, rows_per_split,
                             chunks);
}

// bn_backward_apply, or FUSED bn_act_backward_apply (only it reads residual and beta and writes
// dresidual).
template <bool FUSED>
__device__ __forceinline__ void bn_backward_apply_rows_body(
    const float* __restrict__ dy, const float* __restrict__ x, const float* __restrict__ residual,
    const float* __restrict__ gamma, const float* __restrict__ beta, const float* __restrict__ save_mean,
    const float* __restrict__ save_invstd, const float* __restrict__ dgamma, const float* __restrict__ dbeta,
    float* __restrict__ dx, float* dresidual, int has_residual, int kind, int C, int rows, int rows_per_split,
    int chunks, float inv_count) {
    int split, end;
    const ChannelRows cr = bn_rows(C, rows, rows_per_split, chunks, &split, &end);
    if (!cr.active) return;
    const float m = save_mean[cr.c], s = save_invstd[cr.c], g = gamma[cr.c];
    const float b = FUSED ? beta[cr.c] : 0.0f;
    const float db = dbeta[cr.c] * inv_count, dg = dgamma[cr.c];
    for (int r = cr.row; r < end; r += cr.step) {
        const int i = r * C + cr.c;
        float xhat;
        const float dz = bn_rows_dz<FUSED>(dy, x, residual, has_residual, kind, m, s, g, b, i, &xhat);
        if (FUSED && has_residual) dresidual[i] = dz;
        dx[i] = g * s * (dz - db - xhat * dg * inv_count);
    }
}

extern "C" __global__ void __launch_bounds__(CR_THREADS)
    bn_backward_apply_rows(const float* __restrict__ dy, const float* __restrict__ x,
                           const float* __restrict__ gamma, const float* __restrict__ save_mean,
                           const float* __restrict__ save_invstd, const float* __restrict__ dgamma,
                           const float* __restrict__ dbeta, float* __restrict__ dx, int C, int rows,
                           int rows_per_split, int chunks, float inv_count) {
    bn_backward_apply_rows_body<false>(dy, x, nullptr, gamma, nullptr, save_mean, save_invstd, dgamma, dbeta, dx,
                                       nullptr, 0, 0, C, rows, rows_per_split, chunks, inv_count);
}

extern "C" __global__ void __launch_bounds__(CR_THREADS)
    bn_act_backward_apply_rows(const float* __restrict__ dy, const float* __restrict__ x,
                               const float* __restrict__ residual, const float* __restrict__ gamma,
                               const float* __restrict__ beta, const float* __restrict__ save_mean,
                               const float* __restrict__ save_invstd, const float* __restrict__ dgamma,
                               const float* __restrict__ dbeta, float* __restrict__ dx, float* dresidual,
                               int has_residual, int kind, int C, int rows, int rows_per_split, int chunks,
                               float inv_count) {
    bn_backward_apply_rows_body<true>(dy, x, residual, gamma, beta, save_mean, save_invstd, dgamma, dbeta, dx,
                                      dresidual, has_residual, kind, C, rows, rows_per_split, chunks, inv_count);
}
