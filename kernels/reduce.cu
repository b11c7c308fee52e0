// Full reductions. One kernel does both passes: with G blocks each block writes the scaled sum of
// its grid-stride share to out[blockIdx.x]; the host launches G blocks into a partials buffer and
// then one block over the partials. The fixed partition keeps results deterministic (no atomics).
#include "common.cuh"

extern "C" __global__ void reduce_sum(const float* __restrict__ x, float* __restrict__ out, int n, int square,
                                      float scale) {
    __shared__ float scratch[33];
    float acc = 0.0f;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const float v = x[i];
        acc += square ? v * v : v;
    }
    acc = ferro_block_sum(acc, scratch);
    if (threadIdx.x == 0) out[blockIdx.x] = acc * scale;
}
