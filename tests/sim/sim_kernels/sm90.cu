// sm_90 idioms (compute_90): an mbarrier phase that also waits for transaction bytes, and
// elect.sync.

__device__ __forceinline__ unsigned smem(const void* p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ bool phase_done(unsigned long long* bar, unsigned parity) {
    unsigned done;
    asm volatile("{\n\t.reg .pred p;\n\tmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n\tselp.u32 %0, 1, 0, p;\n\t}"
                 : "=r"(done) : "r"(smem(bar)), "r"(parity) : "memory");
    return done;
}

// Thread 0 arrives expecting 4 bytes from each of the 64 threads, which report them with
// complete_tx after writing their element; everyone waits for phase 0 to complete, then reads
// the elements reversed. `phases[t]` records whether the phase was complete before this
// thread's report (it never is: the last report completes it).
extern "C" __global__ void transaction_barrier(float* out, unsigned* early) {
    __shared__ unsigned long long bar;
    __shared__ float data[64];
    const int t = threadIdx.x;
    if (t == 0) asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem(&bar)) : "memory");
    __syncthreads();
    if (t == 0) {
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], 256;" ::"r"(smem(&bar)) : "memory");
    }
    __syncthreads();
    data[t] = 2.0f * t;
    early[t] = phase_done(&bar, 0);
    asm volatile("mbarrier.complete_tx.shared::cta.b64 [%0], 4;" ::"r"(smem(&bar)) : "memory");
    while (!phase_done(&bar, 0)) {
    }
    out[t] = data[63 - t];
}

// Per thread: the leader's lane and whether this thread leads, for the whole warp and for the
// odd lanes only (99 where a thread did not take part).
extern "C" __global__ void elect_leaders(unsigned* out) {
    const int t = threadIdx.x;
    unsigned* o = out + 4 * t;
    unsigned lane, leads;
    asm volatile("{\n\t.reg .pred p;\n\telect.sync %0|p, %2;\n\tselp.u32 %1, 1, 0, p;\n\t}" : "=r"(lane), "=r"(leads) : "r"(0xffffffffu));
    o[0] = lane;
    o[1] = leads;
    o[2] = o[3] = 99;
    if (t & 1) {
        asm volatile("{\n\t.reg .pred p;\n\telect.sync %0|p, %2;\n\tselp.u32 %1, 1, 0, p;\n\t}" : "=r"(lane), "=r"(leads) : "r"(0xaaaaaaaau));
        o[2] = lane;
        o[3] = leads;
    }
}
