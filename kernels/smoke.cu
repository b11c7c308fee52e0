#include "common.cuh"
extern "C" __global__ void fill_f32(float* out, float v, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = v;
}
