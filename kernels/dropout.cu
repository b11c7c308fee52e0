// Inverted dropout with the counter-based mask of crate::ops::dropout: element i is kept when the
// top 24 bits of splitmix64(seed + (i + 1) * golden) reach `threshold` = ceil(p * 2^24), which is
// exactly dropout_uniform(seed, i) >= p since that uniform is (hash >> 40) / 2^24. The seed is
// mask_seed(step seed, node), with the step seed read from device memory so that a replayed CUDA
// graph gets the seed the host wrote for its step. The backward is elementwise::mul of dy and the
// mask.
#include "common.cuh"

__device__ __forceinline__ unsigned long long dropout_hash(unsigned long long seed, unsigned long long i) {
    unsigned long long z = seed + (i + 1ull) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

extern "C" __global__ void dropout_forward(const float* __restrict__ x, float* __restrict__ y,
                                           float* __restrict__ mask, const unsigned long long* __restrict__ step_seed,
                                           unsigned long long node, unsigned int threshold, float keep_scale, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const unsigned long long seed = dropout_hash(*step_seed, node);
    const unsigned int bits = (unsigned int)(dropout_hash(seed, (unsigned long long)i) >> 40);
    const float m = bits >= threshold ? keep_scale : 0.0f;
    mask[i] = m;
    y[i] = x[i] * m;
}
