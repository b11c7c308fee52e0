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
//
// Activations (x, the residual, dy, y, dx, dresidual) are read and written in their stored format
// (kernels/stored.cuh, one format argument after each pointer), computing in f32 and rounding at
// the store only; statistics, gamma/beta and their gradients are f32.
#include "common.cuh"
#include "activation.cuh"
#include "channel_rows.cuh"
#include "stored.cuh"

// Values i .. i+count-1 (count <= 4; 4 consecutive values, i a multiple of 4, in one load).
__device__ __forceinline__ void bn_load(const void* p, int fmt, int i, int count, float (&v)[4]) {
    if (count == 4) {
        const float4 q = ferro_load4(p, i, fmt);
        v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
        return;
    }
#pragma unroll
    for (int k = 0; k < 4; ++k) v[k] = k < count ? ferro_load(p, i + k, fmt) : 0.0f;
}

__device__ __forceinline__ void bn_store(void* p, int fmt, int i, int count, const float (&v)[4]) {
    if (count == 4) {
        ferro_store4(p, i, make_float4(v[0], v[1], v[2], v[3]), fmt);
        return;
    }
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        if (k < count) ferro_store(p, i + k, v[k], fmt);
    }
}

// Flat index of the i-th value (0 <= i < n*hw) of channel ch.
__device__ __forceinline__ int bn_index(int i, int ch, int c, int hw) {
    const int img = i / hw;
    return (img * c + ch) * hw + (i - img * hw);
}

// Values in chunk s of a channel of `count` values.
__device__ __forceinline__ int chunk_len(int s, int chunk, int count) {
    return min(chunk, count - s * chunk);
}

// The per-(channel, chunk) reductions take V consecutive values of the channel per load: V = 4 in
// the _vec4 kernels, which the host launches when hw and the chunk are multiples of 4 (so each
// group of 4 lies in one plane, 4-value aligned: 16 bytes of f32 or 8 of 16-bit values per load)
// and every buffer is 16-byte aligned. A thread takes the groups starting at begin + V * tid,
// stepping V * blockDim.x.

// Per (channel, chunk): the chunk's mean and M2 (sum of squared deviations from that mean).
template <int V>
__device__ __forceinline__ void bn_partial_stats_body(const void* __restrict__ x, int x_fmt,
                                                      float* __restrict__ part_mean, float* __restrict__ part_m2,
                                                      int n, int c, int hw, int chunk, int splits) {
    __shared__ float scratch[33];
    const int ch = blockIdx.x / splits;
    const int s = blockIdx.x - ch * splits;
    const int begin = s * chunk;
    const int end = begin + chunk_len(s, chunk, n * hw);

    // One pass: the sum and the sum of squares of x - shift (a value of the chunk). Shifting by a
    // value of the chunk keeps both small when |mean| >> std, so M2 = S2 - S1^2 / len does not
    // cancel catastrophically as E[x^2] - E[x]^2 would.
    const float shift = ferro_load(x, bn_index(begin, ch, c, hw), x_fmt);
    float sum = 0.0f;
    float sq = 0.0f;
    for (int i = begin + V * threadIdx.x; i < end; i += V * blockDim.x) {
        float v[4];
        bn_load(x, x_fmt, bn_index(i, ch, c, hw), V, v);
#pragma unroll
        for (int k = 0; k < V; ++k) {
            const float d = v[k] - shift;
            sum += d;
            sq += d * d;
        }
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

// ---- The pointwise passes: V values per thread, V = 4 where the layout allows, so that 16-bit
// values move 8 bytes per lane (ferro_load4/ferro_store4; every buffer starts 4-value aligned).
// Unread lanes of a short group are zero and never stored.

// One thread per 4 consecutive elements of the flat [N, C, HW] tensor (the last group of a
// total not a multiple of 4 shorter): this thread's first element and its count (<= 0: none).
__device__ __forceinline__ int bn_group(int total, int* count) {
    const long long first = 4LL * ((long long)blockIdx.x * blockDim.x + threadIdx.x);
    *count = (int)min(4LL, (long long)total - first);
    return *count > 0 ? (int)first : 0;
}

// Batch norm -> (residual add) -> activation fused (crate::ops::norm's BatchNormAct): the
// pre-activation z = (x - mean) * invstd * gamma + beta (+ r) is never stored. The forward
// writes act(z) alone and the backward recomputes z from x (and r), so the chain keeps only the
// batch norm's input and the residual, which the residual's other readers keep anyway.
// `has_residual` is uniform across a launch; without a residual, `residual` is never read.
__device__ __forceinline__ float bn_act_pre(float x, float r, int has_residual, float mean, float invstd,
                                            float gamma, float beta, float* xhat) {
    *xhat = (x - mean) * invstd;
    const float z = *xhat * gamma + beta;
    return has_residual ? z + r : z;
}

// One value of the training normalisation: (x - mean) * invstd * gamma + beta, or FUSED act(z).
template <bool FUSED>
__device__ __forceinline__ float bn_normalise(float x, float r, int has_residual, int kind, float mean, float invstd,
                                              float gamma, float beta) {
    if (FUSED) {
        float xhat;
        return activate(kind, bn_act_pre(x, r, has_residual, mean, invstd, gamma, beta, &xhat));
    }
    return (x - mean) * (gamma * invstd) + beta;
}

// Training normalisation: y = (x - mean) * invstd * gamma + beta, or FUSED act(z) (bn_act_apply,
// after bn_partial_stats and bn_finalize_stats; only it reads the residual).
template <bool FUSED>
__device__ __forceinline__ void bn_apply_group(const void* __restrict__ x, int x_fmt, const void* __restrict__ residual,
                                               int r_fmt, const float* __restrict__ mean,
                                               const float* __restrict__ invstd, const float* __restrict__ gamma,
                                               const float* __restrict__ beta, void* __restrict__ y, int y_fmt,
                                               int has_residual, int kind, int c, int hw, int total) {
    int count;
    const int first = bn_group(total, &count);
    if (count <= 0) return;
    float v[4], r[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    bn_load(x, x_fmt, first, count, v);
    if (FUSED && has_residual) bn_load(residual, r_fmt, first, count, r);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        const int ch = ((first + k) / hw) % c;
        v[k] = bn_normalise<FUSED>(v[k], r[k], has_residual, kind, mean[ch], invstd[ch], gamma[ch], beta[ch]);
    }
    bn_store(y, y_fmt, first, count, v);
}

extern "C" __global__ void bn_apply(const void* __restrict__ x, int x_fmt, const float* __restrict__ mean,
                                    const float* __restrict__ invstd, const float* __restrict__ gamma,
                                    const float* __restrict__ beta, void* __restrict__ y, int y_fmt, int c, int hw,
                                    int total) {
    bn_apply_group<false>(x, x_fmt, nullptr, 0, mean, invstd, gamma, beta, y, y_fmt, 0, 0, c, hw, total);
}

extern "C" __global__ void bn_act_apply(const void* __restrict__ x, int x_fmt, const void* __restrict__ residual,
                                        int r_fmt, const float* __restrict__ mean, const float* __restrict__ invstd,
                                        const float* __restrict__ gamma, const float* __restrict__ beta,
                                        void* __restrict__ y, int y_fmt, int has_residual, int kind, int c, int hw,
                                        int total) {
    bn_apply_group<true>(x, x_fmt, residual, r_fmt, mean, invstd, gamma, beta, y, y_fmt, has_residual, kind, c, hw,
                         total);
}

// Eval forward with the running statistics.
extern "C" __global__ void bn_forward_eval(const void* __restrict__ x, int x_fmt, const float* __restrict__ gamma,
                                           const float* __restrict__ beta, const float* __restrict__ running_mean,
                                           const float* __restrict__ running_var, void* __restrict__ y, int y_fmt,
                                           int c, int hw, int total, float eps) {
    int count;
    const int first = bn_group(total, &count);
    if (count <= 0) return;
    float v[4];
    bn_load(x, x_fmt, first, count, v);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        const int ch = ((first + k) / hw) % c;
        const float scale = gamma[ch] / sqrtf(running_var[ch] + eps);
        v[k] = (v[k] - running_mean[ch]) * scale + beta[ch];
    }
    bn_store(y, y_fmt, first, count, v);
}

// Per (channel, chunk) of the backward: sum dz and sum dz * xhat, xhat = (x - mean) * invstd, with
// dz = dy (bn_partial_grads) or, FUSED, dz = dy * act'(z) (bn_act_partial_grads; only it reads the
// residual, gamma and beta). Summed over chunks (elementwise::channel_sum) they are dbeta and dgamma.
template <bool FUSED, int V>
__device__ __forceinline__ void bn_partial_grads_body(
    const void* __restrict__ dy, int dy_fmt, const void* __restrict__ x, int x_fmt, const void* __restrict__ residual,
    int r_fmt, const float* __restrict__ save_mean, const float* __restrict__ save_invstd,
    const float* __restrict__ gamma, const float* __restrict__ beta, float* __restrict__ part_dz,
    float* __restrict__ part_dz_xhat, int has_residual, int kind, int n, int c, int hw, int chunk, int splits) {
    __shared__ float scratch[33];
    const int ch = blockIdx.x / splits;
    const int s = blockIdx.x - ch * splits;
    const int begin = s * chunk;
    const int end = begin + chunk_len(s, chunk, n * hw);
    const float mean = save_mean[ch];
    const float invstd = save_invstd[ch];
    const float g = FUSED ? gamma[ch] : 0.0f;
    const float b = FUSED ? beta[ch] : 0.0f;

    float sum_dz = 0.0f;
    float sum_dz_xhat = 0.0f;
    for (int i = begin + V * threadIdx.x; i < end; i += V * blockDim.x) {
        const int idx = bn_index(i, ch, c, hw);
        float dz[4], xv[4], r[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        bn_load(dy, dy_fmt, idx, V, dz);
        bn_load(x, x_fmt, idx, V, xv);
        if (FUSED && has_residual) bn_load(residual, r_fmt, idx, V, r);
#pragma unroll
        for (int k = 0; k < V; ++k) {
            float xhat = (xv[k] - mean) * invstd;
            if (FUSED) dz[k] *= derivative(kind, bn_act_pre(xv[k], r[k], has_residual, mean, invstd, g, b, &xhat));
            sum_dz += dz[k];
            sum_dz_xhat += dz[k] * xhat;
        }
    }
    sum_dz = ferro_block_sum(sum_dz, scratch);
    sum_dz_xhat = ferro_block_sum(sum_dz_xhat, scratch);
    if (threadIdx.x == 0) {
        part_dz[blockIdx.x] = sum_dz;
        part_dz_xhat[blockIdx.x] = sum_dz_xhat;
    }
}

// The reductions' entry points at V = 1 and, suffixed _vec4, at V = 4.
#define BN_REDUCTION_ENTRY_POINTS(name, V)                                                                          \
    extern "C" __global__ void bn_partial_stats##name(const void* __restrict__ x, int x_fmt,                        \
                                                      float* __restrict__ part_mean, float* __restrict__ part_m2,   \
                                                      int n, int c, int hw, int chunk, int splits) {                \
        bn_partial_stats_body<V>(x, x_fmt, part_mean, part_m2, n, c, hw, chunk, splits);                            \
    }                                                                                                               \
    extern "C" __global__ void bn_partial_grads##name(                                                              \
        const void* __restrict__ dy, int dy_fmt, const void* __restrict__ x, int x_fmt,                             \
        const float* __restrict__ save_mean, const float* __restrict__ save_invstd, float* __restrict__ part_dy,    \
        float* __restrict__ part_dy_xhat, int n, int c, int hw, int chunk, int splits) {                            \
        bn_partial_grads_body<false, V>(dy, dy_fmt, x, x_fmt, nullptr, 0, save_mean, save_invstd, nullptr, nullptr, \
                                        part_dy, part_dy_xhat, 0, 0, n, c, hw, chunk, splits);                      \
    }                                                                                                               \
    extern "C" __global__ void bn_act_partial_grads##name(                                                          \
        const void* __restrict__ dy, int dy_fmt, const void* __restrict__ x, int x_fmt,                             \
        const void* __restrict__ residual, int r_fmt, const float* __restrict__ save_mean,                          \
        const float* __restrict__ save_invstd, const float* __restrict__ gamma, const float* __restrict__ beta,     \
        float* __restrict__ part_dz, float* __restrict__ part_dz_xhat, int has_residual, int kind, int n, int c,    \
        int hw, int chunk, int splits) {                                                                            \
        bn_partial_grads_body<true, V>(dy, dy_fmt, x, x_fmt, residual, r_fmt, save_mean, save_invstd, gamma, beta,  \
                                       part_dz, part_dz_xhat, has_residual, kind, n, c, hw, chunk, splits);         \
    }

BN_REDUCTION_ENTRY_POINTS(, 1)
BN_REDUCTION_ENTRY_POINTS(_vec4, 4)

// dx = gamma * invstd * (dz - dbeta / m - xhat * dgamma / m) with dz = dy, or FUSED dz = dy *
// act'(z) and dr = dz when there is a residual (bn_act_backward_apply; only it reads the residual
// and beta and writes dresidual).
template <bool FUSED>
__device__ __forceinline__ void bn_backward_group(
    const void* __restrict__ dy, int dy_fmt, const void* __restrict__ x, int x_fmt, const void* __restrict__ residual,
    int r_fmt, const float* __restrict__ gamma, const float* __restrict__ beta, const float* __restrict__ save_mean,
    const float* __restrict__ save_invstd, const float* __restrict__ dgamma, const float* __restrict__ dbeta,
    void* __restrict__ dx, int dx_fmt, void* dresidual, int dr_fmt, int has_residual, int kind, int c, int hw,
    int total, float inv_count) {
    int count;
    const int first = bn_group(total, &count);
    if (count <= 0) return;
    float d[4], v[4], r[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    bn_load(dy, dy_fmt, first, count, d);
    bn_load(x, x_fmt, first, count, v);
    if (FUSED && has_residual) bn_load(residual, r_fmt, first, count, r);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        const int ch = ((first + k) / hw) % c;
        const float invstd = save_invstd[ch];
        float xhat = (v[k] - save_mean[ch]) * invstd;
        if (FUSED) {
            const float z = bn_act_pre(v[k], r[k], has_residual, save_mean[ch], invstd, gamma[ch], beta[ch], &xhat);
            d[k] *= derivative(kind, z);
        }
        v[k] = gamma[ch] * invstd * (d[k] - dbeta[ch] * inv_count - xhat * dgamma[ch] * inv_count);
    }
    if (FUSED && has_residual) bn_store(dresidual, dr_fmt, first, count, d);
    bn_store(dx, dx_fmt, first, count, v);
}

extern "C" __global__ void bn_backward_apply(const void* __restrict__ dy, int dy_fmt, const void* __restrict__ x,
                                             int x_fmt, const float* __restrict__ gamma,
                                             const float* __restrict__ save_mean,
                                             const float* __restrict__ save_invstd, const float* __restrict__ dgamma,
                                             const float* __restrict__ dbeta, void* __restrict__ dx, int dx_fmt, int c,
                                             int hw, int total, float inv_count) {
    bn_backward_group<false>(dy, dy_fmt, x, x_fmt, nullptr, 0, gamma, nullptr, save_mean, save_invstd, dgamma, dbeta,
                             dx, dx_fmt, nullptr, 0, 0, 0, c, hw, total, inv_count);
}

// Without a residual, `dresidual` is never written.
extern "C" __global__ void bn_act_backward_apply(const void* __restrict__ dy, int dy_fmt, const void* __restrict__ x,
                                                 int x_fmt, const void* __restrict__ residual, int r_fmt,
                                                 const float* __restrict__ gamma, const float* __restrict__ beta,
                                                 const float* __restrict__ save_mean,
                                                 const float* __restrict__ save_invstd,
                                                 const float* __restrict__ dgamma, const float* __restrict__ dbeta,
                                                 void* __restrict__ dx, int dx_fmt, void* dresidual, int dr_fmt,
                                                 int has_residual, int kind, int c, int hw, int total,
                                                 float inv_count) {
    bn_backward_group<true>(dy, dy_fmt, x, x_fmt, residual, r_fmt, gamma, beta, save_mean, save_invstd, dgamma, dbeta,
                            dx, dx_fmt, dresidual, dr_fmt, has_residual, kind, c, hw, total, inv_count);
}

// ---- Channels innermost (hw == 1), x [rows, C]: one block per (row range, 32-channel chunk),
// threads along channels (channel_rows.cuh), blockIdx.x = split * chunks + chunk. Each row range
// plays the part of a chunk above: the partials are written [C, splits] in the same meaning, so
// bn_finalize_stats and the chunk totals serve both. Ranges hold rows_per_split rows, the last
// fewer but never none.

// This block's row range [begin, end) and its channel chunk's share for this thread, V
// consecutive channels per thread (V = 4 needs C a multiple of 4).
template <int V = 1>
__device__ __forceinline__ ChannelRows bn_rows(int C, int rows, int rows_per_split, int chunks, int* split,
                                               int* end) {
    *split = blockIdx.x / chunks;
    const int begin = *split * rows_per_split;
    *end = min(begin + rows_per_split, rows);
    return channel_rows<V>(C, blockIdx.x - *split * chunks, begin);
}

// Writes a block's two per-channel totals of the thread's V channels (acc[k] and acc[V + k] of
// channel cr.c + k) as the [C, splits] partials `first` and `second`.
template <int V>
__device__ __forceinline__ void bn_rows_store(const float (&acc)[2 * V], const ChannelRows& cr, int split, int splits,
                                              float* __restrict__ first, float* __restrict__ second) {
    if (threadIdx.x >= cr.lanes) return;
#pragma unroll
    for (int k = 0; k < V; ++k) {
        first[(cr.c + k) * splits + split] = acc[k];
        second[(cr.c + k) * splits + split] = acc[V + k];
    }
}

// The thread's V per-channel f32 values from channel c: one 16-byte load where p + c is aligned
// (a warp's 8 threads of 4 channels then read 128 contiguous bytes, as 32 threads of one), else
// one by one; 0 for a null p (a value the caller does not use).
template <int V>
__device__ __forceinline__ void bn_channel_values(const float* __restrict__ p, int c, float (&v)[4]) {
    if (p == nullptr) {
#pragma unroll
        for (int k = 0; k < V; ++k) v[k] = 0.0f;
        return;
    }
    if (V == 4 && (reinterpret_cast<size_t>(p + c) & 15) == 0) {
        const float4 q = *reinterpret_cast<const float4*>(p + c);
        v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
        return;
    }
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] = p[c + k];
}

// Per (row range, channel): the range's mean and M2, shifted by the range's first value of the
// channel as bn_partial_stats does. With C a multiple of 4 a thread takes 4 consecutive channels
// (8 bytes of 16-bit values per load), as the pointwise passes below.
template <int V>
__device__ __forceinline__ void bn_partial_stats_rows_body(const void* __restrict__ x, int x_fmt,
                                                           float* __restrict__ part_mean, float* __restrict__ part_m2,
                                                           int C, int rows, int rows_per_split, int chunks, int splits,
                                                           float (*scratch)[CR_THREADS]) {
    int split, end;
    const ChannelRows cr = bn_rows<V>(C, rows, rows_per_split, chunks, &split, &end);
    const int begin = split * rows_per_split;
    float shift[4];
    bn_load(x, x_fmt, begin * C + cr.c, V, shift);
    float acc[2 * V] = {};
    if (cr.active) {
        for (int r = cr.row; r < end; r += cr.step) {
            float v[4];
            bn_load(x, x_fmt, r * C + cr.c, V, v);
#pragma unroll
            for (int k = 0; k < V; ++k) {
                const float d = v[k] - shift[k];
                acc[k] += d;
                acc[V + k] += d * d;
            }
        }
    }
    channel_rows_total<2 * V>(acc, cr, scratch);
    const float len = (float)(end - begin);
    float stats[2 * V];
#pragma unroll
    for (int k = 0; k < V; ++k) {
        stats[k] = shift[k] + acc[k] / len;
        stats[V + k] = fmaxf(acc[V + k] - acc[k] * acc[k] / len, 0.0f);
    }
    bn_rows_store<V>(stats, cr, split, splits, part_mean, part_m2);
}

extern "C" __global__ void __launch_bounds__(CR_THREADS)
    bn_partial_stats_rows(const void* __restrict__ x, int x_fmt, float* __restrict__ part_mean,
                          float* __restrict__ part_m2, int C, int rows, int rows_per_split, int chunks, int splits) {
    __shared__ float scratch[2 * 4][CR_THREADS];
    if (C % 4 == 0) {
        bn_partial_stats_rows_body<4>(x, x_fmt, part_mean, part_m2, C, rows, rows_per_split, chunks, splits, scratch);
    } else {
        bn_partial_stats_rows_body<1>(x, x_fmt, part_mean, part_m2, C, rows, rows_per_split, chunks, splits, scratch);
    }
}

// The backward's dz and xhat of the thread's V channels at element i of a [rows, C] matrix:
// dz = dy, or FUSED dz = dy * act'(z) with z from x and the residual; m, s, g, b the channels'
// mean, invstd, gamma and beta.
template <bool FUSED, int V>
__device__ __forceinline__ void bn_rows_dz(const void* __restrict__ dy, int dy_fmt, const void* __restrict__ x,
                                           int x_fmt, const void* __restrict__ residual, int r_fmt, int has_residual,
                                           int kind, int i, const float (&m)[4], const float (&s)[4],
                                           const float (&g)[4], const float (&b)[4], float (&dz)[4],
                                           float (&xhat)[4]) {
    float xv[4], rv[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    bn_load(x, x_fmt, i, V, xv);
    bn_load(dy, dy_fmt, i, V, dz);
    if (FUSED && has_residual) bn_load(residual, r_fmt, i, V, rv);
#pragma unroll
    for (int k = 0; k < V; ++k) {
        xhat[k] = (xv[k] - m[k]) * s[k];
        if (FUSED) dz[k] *= derivative(kind, bn_act_pre(xv[k], rv[k], has_residual, m[k], s[k], g[k], b[k], &xhat[k]));
    }
}

// Per (row range, channel) of the backward: sum dz and sum dz * xhat, with dz = dy
// (bn_partial_grads_rows, as bn_partial_grads) or, FUSED, dz = dy * act'(z)
// (bn_act_partial_grads_rows, as bn_act_partial_grads; only it reads residual, gamma and beta).
// V consecutive channels per thread, as the statistics.
template <bool FUSED, int V>
__device__ __forceinline__ void bn_partial_grads_rows_body(
    const void* __restrict__ dy, int dy_fmt, const void* __restrict__ x, int x_fmt, const void* __restrict__ residual,
    int r_fmt, const float* __restrict__ save_mean, const float* __restrict__ save_invstd,
    const float* __restrict__ gamma, const float* __restrict__ beta, float* __restrict__ part_dz,
    float* __restrict__ part_dz_xhat, int has_residual, int kind, int C, int rows, int rows_per_split, int chunks,
    int splits, float (*scratch)[CR_THREADS]) {
    int split, end;
    const ChannelRows cr = bn_rows<V>(C, rows, rows_per_split, chunks, &split, &end);
    float m[4], s[4], g[4], b[4];
    bn_channel_values<V>(save_mean, cr.c, m);
    bn_channel_values<V>(save_invstd, cr.c, s);
    bn_channel_values<V>(FUSED ? gamma : nullptr, cr.c, g);
    bn_channel_values<V>(FUSED ? beta : nullptr, cr.c, b);
    float acc[2 * V] = {};
    if (cr.active) {
        for (int r = cr.row; r < end; r += cr.step) {
            float dz[4], xhat[4];
            bn_rows_dz<FUSED, V>(dy, dy_fmt, x, x_fmt, residual, r_fmt, has_residual, kind, r * C + cr.c, m, s, g, b, dz,
                                 xhat);
#pragma unroll
            for (int k = 0; k < V; ++k) {
                acc[k] += dz[k];
                acc[V + k] += dz[k] * xhat[k];
            }
        }
    }
    channel_rows_total<2 * V>(acc, cr, scratch);
    bn_rows_store<V>(acc, cr, split, splits, part_dz, part_dz_xhat);
}

// bn_partial_grads_rows_body at 4 channels per thread where C allows, else 1.
template <bool FUSED>
__device__ __forceinline__ void bn_partial_grads_rows_any(
    const void* __restrict__ dy, int dy_fmt, const void* __restrict__ x, int x_fmt, const void* __restrict__ residual,
    int r_fmt, const float* __restrict__ save_mean, const float* __restrict__ save_invstd,
    const float* __restrict__ gamma, const float* __restrict__ beta, float* __restrict__ part_dz,
    float* __restrict__ part_dz_xhat, int has_residual, int kind, int C, int rows, int rows_per_split, int chunks,
    int splits) {
    __shared__ float scratch[2 * 4][CR_THREADS];
    if (C % 4 == 0) {
        bn_partial_grads_rows_body<FUSED, 4>(dy, dy_fmt, x, x_fmt, residual, r_fmt, save_mean, save_invstd, gamma, beta,
                                             part_dz, part_dz_xhat, has_residual, kind, C, rows, rows_per_split, chunks,
                                             splits, scratch);
    } else {
        bn_partial_grads_rows_body<FUSED, 1>(dy, dy_fmt, x, x_fmt, residual, r_fmt, save_mean, save_invstd, gamma, beta,
                                             part_dz, part_dz_xhat, has_residual, kind, C, rows, rows_per_split, chunks,
                                             splits, scratch);
    }
}

extern "C" __global__ void __launch_bounds__(CR_THREADS)
    bn_partial_grads_rows(const void* __restrict__ dy, int dy_fmt, const void* __restrict__ x, int x_fmt,
                          const float* __restrict__ save_mean, const float* __restrict__ save_invstd,
                          float* __restrict__ part_dy, float* __restrict__ part_dy_xhat, int C, int rows,
                          int rows_per_split, int chunks, int splits) {
    bn_partial_grads_rows_any<false>(dy, dy_fmt, x, x_fmt, nullptr, 0, save_mean, save_invstd, nullptr, nullptr,
                                     part_dy, part_dy_xhat, 0, 0, C, rows, rows_per_split, chunks, splits);
}

extern "C" __global__ void __launch_bounds__(CR_THREADS)
    bn_act_partial_grads_rows(const void* __restrict__ dy, int dy_fmt, const void* __restrict__ x, int x_fmt,
                              const void* __restrict__ residual, int r_fmt, const float* __restrict__ save_mean,
                              const float* __restrict__ save_invstd, const float* __restrict__ gamma,
                              const float* __restrict__ beta, float* __restrict__ part_dz,
                              float* __restrict__ part_dz_xhat, int has_residual, int kind, int C, int rows,
                              int rows_per_split, int chunks, int splits) {
    bn_partial_grads_rows_any<true>(dy, dy_fmt, x, x_fmt, residual, r_fmt, save_mean, save_invstd, gamma, beta,
                                    part_dz, part_dz_xhat, has_residual, kind, C, rows, rows_per_split, chunks, splits);
}

// The pointwise passes with channels innermost, on the reductions' grid: each thread keeps its
// channels' per-channel values in registers over its row range, where one thread per element
// (the kernels above) would read them again for every element, 32 channels per warp apart. With
// C a multiple of 4 a thread takes 4 consecutive channels (8 bytes of 16-bit values per load).
// Same arithmetic as their per-element counterparts, element for element.

// bn_apply, or FUSED bn_act_apply.
template <bool FUSED, int V>
__device__ __forceinline__ void bn_apply_rows_body(const void* __restrict__ x, int x_fmt,
                                                   const void* __restrict__ residual, int r_fmt,
                                                   const float* __restrict__ mean, const float* __restrict__ invstd,
                                                   const float* __restrict__ gamma, const float* __restrict__ beta,
                                                   void* __restrict__ y, int y_fmt, int has_residual, int kind, int C,
                                                   int rows, int rows_per_split, int chunks) {
    int split, end;
    const ChannelRows cr = bn_rows<V>(C, rows, rows_per_split, chunks, &split, &end);
    if (!cr.active) return;
    float m[4], s[4], g[4], b[4];
    bn_channel_values<V>(mean, cr.c, m);
    bn_channel_values<V>(invstd, cr.c, s);
    bn_channel_values<V>(gamma, cr.c, g);
    bn_channel_values<V>(beta, cr.c, b);
    for (int r = cr.row; r < end; r += cr.step) {
        const int i = r * C + cr.c;
        float v[4], res[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        bn_load(x, x_fmt, i, V, v);
        if (FUSED && has_residual) bn_load(residual, r_fmt, i, V, res);
#pragma unroll
        for (int k = 0; k < V; ++k) v[k] = bn_normalise<FUSED>(v[k], res[k], has_residual, kind, m[k], s[k], g[k], b[k]);
        bn_store(y, y_fmt, i, V, v);
    }
}

extern "C" __global__ void __launch_bounds__(CR_THREADS)
    bn_apply_rows(const void* __restrict__ x, int x_fmt, const float* __restrict__ mean,
                  const float* __restrict__ invstd, const float* __restrict__ gamma, const float* __restrict__ beta,
                  void* __restrict__ y, int y_fmt, int C, int rows, int rows_per_split, int chunks) {
    if (C % 4 == 0) {
        bn_apply_rows_body<false, 4>(x, x_fmt, nullptr, 0, mean, invstd, gamma, beta, y, y_fmt, 0, 0, C, rows,
                                     rows_per_split, chunks);
    } else {
        bn_apply_rows_body<false, 1>(x, x_fmt, nullptr, 0, mean, invstd, gamma, beta, y, y_fmt, 0, 0, C, rows,
                                     rows_per_split, chunks);
    }
}

extern "C" __global__ void __launch_bounds__(CR_THREADS)
    bn_act_apply_rows(const void* __restrict__ x, int x_fmt, const void* __restrict__ residual, int r_fmt,
                      const float* __restrict__ mean, const float* __restrict__ invstd,
                      const float* __restrict__ gamma, const float* __restrict__ beta, void* __restrict__ y,
                      int y_fmt, int has_residual, int kind, int C, int rows, int rows_per_split, int chunks) {
    if (C % 4 == 0) {
        bn_apply_rows_body<true, 4>(x, x_fmt, residual, r_fmt, mean, invstd, gamma, beta, y, y_fmt, has_residual,
                                    kind, C, rows, rows_per_split, chunks);
    } else {
        bn_apply_rows_body<true, 1>(x, x_fmt, residual, r_fmt, mean, invstd, gamma, beta, y, y_fmt, has_residual,
                                    kind, C, rows, rows_per_split, chunks);
    }
}

// bn_backward_apply, or FUSED bn_act_backward_apply (only it reads residual and beta and writes
// dresidual).
template <bool FUSED, int V>
__device__ __forceinline__ void bn_backward_apply_rows_body(
    const void* __restrict__ dy, int dy_fmt, const void* __restrict__ x, int x_fmt, const void* __restrict__ residual,
    int r_fmt, const float* __restrict__ gamma, const float* __restrict__ beta, const float* __restrict__ save_mean,
    const float* __restrict__ save_invstd, const float* __restrict__ dgamma, const float* __restrict__ dbeta,
    void* __restrict__ dx, int dx_fmt, void* dresidual, int dr_fmt, int has_residual, int kind, int C, int rows,
    int rows_per_split, int chunks, float inv_count) {
    int split, end;
    const ChannelRows cr = bn_rows<V>(C, rows, rows_per_split, chunks, &split, &end);
    if (!cr.active) return;
    float m[4], s[4], g[4], b[4], db[4], dg[4];
    bn_channel_values<V>(save_mean, cr.c, m);
    bn_channel_values<V>(save_invstd, cr.c, s);
    bn_channel_values<V>(gamma, cr.c, g);
    bn_channel_values<V>(FUSED ? beta : nullptr, cr.c, b);
    bn_channel_values<V>(dbeta, cr.c, db);
    bn_channel_values<V>(dgamma, cr.c, dg);
#pragma unroll
    for (int k = 0; k < V; ++k) db[k] *= inv_count;
    for (int r = cr.row; r < end; r += cr.step) {
        const int i = r * C + cr.c;
        float d[4], xhat[4], v[4];
        bn_rows_dz<FUSED, V>(dy, dy_fmt, x, x_fmt, residual, r_fmt, has_residual, kind, i, m, s, g, b, d, xhat);
#pragma unroll
        for (int k = 0; k < V; ++k) v[k] = g[k] * s[k] * (d[k] - db[k] - xhat[k] * dg[k] * inv_count);
        if (FUSED && has_residual) bn_store(dresidual, dr_fmt, i, V, d);
        bn_store(dx, dx_fmt, i, V, v);
    }
}

extern "C" __global__ void __launch_bounds__(CR_THREADS)
    bn_backward_apply_rows(const void* __restrict__ dy, int dy_fmt, const void* __restrict__ x, int x_fmt,
                           const float* __restrict__ gamma, const float* __restrict__ save_mean,
                           const float* __restrict__ save_invstd, const float* __restrict__ dgamma,
                           const float* __restrict__ dbeta, void* __restrict__ dx, int dx_fmt, int C, int rows,
                           int rows_per_split, int chunks, float inv_count) {
    if (C % 4 == 0) {
        bn_backward_apply_rows_body<false, 4>(dy, dy_fmt, x, x_fmt, nullptr, 0, gamma, nullptr, save_mean, save_invstd,
                                              dgamma, dbeta, dx, dx_fmt, nullptr, 0, 0, 0, C, rows, rows_per_split,
                                              chunks, inv_count);
    } else {
        bn_backward_apply_rows_body<false, 1>(dy, dy_fmt, x, x_fmt, nullptr, 0, gamma, nullptr, save_mean, save_invstd,
                                              dgamma, dbeta, dx, dx_fmt, nullptr, 0, 0, 0, C, rows, rows_per_split,
                                              chunks, inv_count);
    }
}

extern "C" __global__ void __launch_bounds__(CR_THREADS)
    bn_act_backward_apply_rows(const void* __restrict__ dy, int dy_fmt, const void* __restrict__ x, int x_fmt,
                               const void* __restrict__ residual, int r_fmt, const float* __restrict__ gamma,
                               const float* __restrict__ beta, const float* __restrict__ save_mean,
                               const float* __restrict__ save_invstd, const float* __restrict__ dgamma,
                               const float* __restrict__ dbeta, void* __restrict__ dx, int dx_fmt, void* dresidual,
                               int dr_fmt, int has_residual, int kind, int C, int rows, int rows_per_split,
                               int chunks, float inv_count) {
    if (C % 4 == 0) {
        bn_backward_apply_rows_body<true, 4>(dy, dy_fmt, x, x_fmt, residual, r_fmt, gamma, beta, save_mean,
                                             save_invstd, dgamma, dbeta, dx, dx_fmt, dresidual, dr_fmt, has_residual,
                                             kind, C, rows, rows_per_split, chunks, inv_count);
    } else {
        bn_backward_apply_rows_body<true, 1>(dy, dy_fmt, x, x_fmt, residual, r_fmt, gamma, beta, save_mean,
                                             save_invstd, dgamma, dbeta, dx, dx_fmt, dresidual, dr_fmt, has_residual,
                                             kind, C, rows, rows_per_split, chunks, inv_count);
    }
}
