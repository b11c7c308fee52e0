// Device runtime hooks: assert and printf (both built into NVRTC).

extern "C" __global__ void checked_index(const int* idx, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    assert(idx[i] >= 0 && idx[i] < n);
    out[i] = (float)idx[i];
}

extern "C" __global__ void hello(const float* x) {
    int t = threadIdx.x;
    if (t < 3) printf("block %d thread %d: x=%.2f %s|%5d|%g\n", blockIdx.x, t, x[t], "ok", -t, 1e-5 * (t + 1));
}
