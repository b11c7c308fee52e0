// Deliberately broken kernels and their correct twins, for the simulator's sanitizer tests.

// y = a * x. The broken guard `i <= n` lets thread n touch one element past the end.
extern "C" __global__ void scale_ok(const float* x, float* y, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i];
}
extern "C" __global__ void scale_off_by_one(const float* x, float* y, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) y[i] = a * x[i];
}

// float4 copy from x + offset: misaligned unless offset is a multiple of 4 floats.
extern "C" __global__ void copy4(const float* x, float* y, int offset, int n4) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n4) reinterpret_cast<float4*>(y)[i] = *reinterpret_cast<const float4*>(x + offset + 4 * i);
}

// Threads below `split` take an extra barrier that the others never reach.
extern "C" __global__ void divergent_barrier(const float* x, float* y, int split) {
    __shared__ float s[64];
    int t = threadIdx.x;
    s[t] = x[t];
    if (t < split) __syncthreads();
    __syncthreads();
    y[t] = s[63 - t];
}

// Full-mask shuffles on both sides of a branch that splits the warp: each side waits for lanes
// that are waiting at the other shuffle. With split = 32 the warp stays converged.
extern "C" __global__ void shuffle_in_branch(const float* x, float* y, int split) {
    int t = threadIdx.x;
    float v = x[t];
    if (t < split) v += __shfl_xor_sync(0xffffffffu, v, 1);
    else v -= __shfl_xor_sync(0xffffffffu, v, 2);
    y[t] = v;
}

// Half the warp returns early; the other half shuffles among itself with the full mask. Exited
// lanes do not hold up a .sync instruction, and no lane reads from an exited one.
extern "C" __global__ void shuffle_after_exit(const float* x, float* y, int live) {
    int t = threadIdx.x;
    if (t >= live) return;
    float v = x[t];
    y[t] = v + __shfl_xor_sync(0xffffffffu, v, 1);
}
