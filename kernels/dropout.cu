// Inverted dropout with the counter-based mask of crate::ops::dropout: element i is kept when the
// top 24 bits of splitmix64(seed + (i + 1) * golden) reach `threshold` = ceil(p * 2^24), which is
// exactly dropout_uniform(seed, i) >= p since that uniform is (hash >> 40) / 2^24. The seed is
// mask_seed(step seed, node), with the step seed read from device memory so that a replayed CUDA
// graph gets the seed the host wrote for its step. The backward is elementwise::mul of dy and the
// mask (dx in dy's stored format).
#include "common.cuh"
#include "pointwise.cuh"

__device__ __forceinline__ unsigned long long dropout_hash(unsigned long long seed, unsigned long long i) {
    unsigned long long z = seed + (i + 1ull) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// y (in x's stored format) = x * mask, mask f32; 4 values per thread (kernels/pointwise.cuh).
extern "C" __global__ void dropout_forward(const void* __restrict__ x, int x_format, void* __restrict__ y, int y_format,
                                           float* __restrict__ mask, const unsigned long long* __restrict__ step_seed,
                                           unsigned long long node, unsigned int threshold, float keep_scale, int n,
                                           int vec) {
    const long long i = ferro_group_start(n);
    if (i < 0) return;
    const unsigned long long seed = dropout_hash(*step_seed, node);
    float m[FERRO_GROUP];
#pragma unroll
    for (int j = 0; j < FERRO_GROUP; ++j) {
        const unsigned int bits = (unsigned int)(dropout_hash(seed, (unsigned long long)(i + j)) >> 40);
        m[j] = bits >= threshold ? keep_scale : 0.0f;
    }
    if (ferro_group_whole(i, n, vec)) {
        const float4 v = ferro_load4(x, i, x_format);
        reinterpret_cast<float4*>(mask)[i / FERRO_GROUP] = make_float4(m[0], m[1], m[2], m[3]);
        ferro_store4(y, i, make_float4(v.x * m[0], v.y * m[1], v.z * m[2], v.w * m[3]), y_format);
        return;
    }
    for (int j = 0; j < FERRO_GROUP && i + j < n; ++j) {
        mask[i + j] = m[j];
        ferro_store(y, i + j, ferro_load(x, i + j, x_format) * m[j], y_format);
    }
}
