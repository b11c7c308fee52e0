// Full reductions. One kernel does both passes: with G blocks each block writes the scaled sum of
// its grid-stride share (4 values per 16-byte load where x is aligned) to out[blockIdx.x]; the host launches G blocks into a partials buffer and
// then one block over the partials. The fixed partition keeps results deterministic (no atomics).
#include "common.cuh"

// vec: x starts 16-byte aligned and is read 4 values at a time (the host sets it for a first
// pass over an aligned buffer; the second pass reads its partials one at a time, as the
// optimiser's gradient norm does).
extern "C" __global__ void reduce_sum(const float* __restrict__ x, float* __restrict__ out, int n, int square,
                                      float scale, int vec) {
    __shared__ float scratch[33];
    float acc = ferro_share_sum(x, n, blockIdx.x * blockDim.x + threadIdx.x, gridDim.x * blockDim.x, square, vec);
    acc = ferro_block_sum(acc, scratch);
    if (threadIdx.x == 0) out[blockIdx.x] = acc * scale;
}
