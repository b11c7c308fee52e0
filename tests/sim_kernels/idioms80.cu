// sm_80 idioms (compute_80): warp reductions (redux.sync) and cuda::barrier's mbarrier.

// Per thread: sum, min, max, and, or, xor over the warp, and a 16-lane (tile) sum.
extern "C" __global__ void warp_reductions(const unsigned* x, unsigned* out) {
    const unsigned t = threadIdx.x, v = x[t];
    unsigned* o = out + 7 * t;
    o[0] = __reduce_add_sync(0xffffffff, v);
    o[1] = __reduce_min_sync(0xffffffff, v);
    o[2] = __reduce_max_sync(0xffffffff, (int)v - 40);
    o[3] = __reduce_and_sync(0xffffffff, v | 0xf0);
    o[4] = __reduce_or_sync(0xffffffff, v);
    o[5] = __reduce_xor_sync(0xffffffff, v);
    o[6] = __reduce_add_sync(0xffffu << (t & 16), v);
}

__device__ __forceinline__ unsigned smem(const void* p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// Warp 1 produces data for warp 0 through an mbarrier both warps arrive on, twice (two phases).
extern "C" __global__ void mbarrier_handoff(float* out, unsigned* pending) {
    __shared__ unsigned long long bar;
    __shared__ float data[32];
    const unsigned t = threadIdx.x, lane = t % 32;
    if (t == 0) asm volatile("mbarrier.init.shared.b64 [%0], %1;" ::"r"(smem(&bar)), "r"(64u) : "memory");
    __syncthreads();
    for (int phase = 0; phase < 2; ++phase) {
        if (t >= 32) data[lane] = 3.0f * lane + phase;
        unsigned long long token;
        asm volatile("mbarrier.arrive.shared.b64 %0, [%1];" : "=l"(token) : "r"(smem(&bar)) : "memory");
        unsigned done = 0;
        while (!done) {
            asm volatile("{\n\t.reg .pred p;\n\tmbarrier.test_wait.shared.b64 p, [%1], %2;\n\tselp.u32 %0, 1, 0, p;\n\t}"
                         : "=r"(done) : "r"(smem(&bar)), "l"(token) : "memory");
        }
        if (t < 32) out[32 * phase + lane] = data[31 - lane];
        if (phase == 0 && t < 64) {
            unsigned count;
            asm("mbarrier.pending_count.b64 %0, %1;" : "=r"(count) : "l"(token));
            pending[t] = count;
        }
        __syncthreads();
    }
}
