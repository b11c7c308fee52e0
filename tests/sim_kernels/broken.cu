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

// Warp reduction after an early exit of half the warp: the full-mask shuffle names exited lanes'
// partners... the broken variant shuffles inside a branch only half the warp takes.
extern "C" __global__ void shuffle_in_branch(const float* x, float* y, int split) {
    int t = threadIdx.x;
    float v = x[t];
    if (t < split) v += __shfl_xor_sync(0xffffffffu, v, 1);
    y[t] = v;
}
