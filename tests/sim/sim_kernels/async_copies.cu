// Asynchronous copies and barriers of sm_80/sm_90 code we did not write: cp.async through the
// pipeline primitives of cuda_pipeline.h and as inline PTX, cp.async tracked by an mbarrier,
// an mbarrier with transaction counts, and elect.sync.
#include <cuda_pipeline.h>

__device__ __forceinline__ unsigned smem(const void* p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// The pipeline's mistakes, for the sanitizer.
enum PipelineBug { NONE = 0, NO_WAIT = 1, NO_BARRIER_BEFORE_REFILL = 2 };

// out[t] = sum over tiles k of x[64k + 63 - t] * (k + 1), with x zero-padded to whole tiles:
// tile k + 1 is copied into one shared buffer while tile k is read from the other. With `bug`
// NO_WAIT the kernel reads each tile before waiting for its copies; with
// NO_BARRIER_BEFORE_REFILL it refills a buffer while other threads may still read it.
extern "C" __global__ void pipelined_tiles(const float* x, int n, int tiles, float* out, int bug) {
    __shared__ float stage[2][64];
    const int t = threadIdx.x;
    auto load = [&](int k) {
        const int i = 64 * k + t;
        // Past the end of x the copy reads nothing and zero-fills its 4 bytes.
        __pipeline_memcpy_async(&stage[k & 1][t], &x[i < n ? i : 0], 4, i < n ? 0 : 4);
        __pipeline_commit();
    };
    load(0);
    float acc = 0.0f;
    for (int k = 0; k < tiles; ++k) {
        if (k + 1 < tiles) {
            load(k + 1);
        } else {
            __pipeline_commit();
        }
        if (bug != NO_WAIT) __pipeline_wait_prior(1);
        __syncthreads();
        acc += stage[k & 1][63 - t] * (k + 1);
        if (bug != NO_BARRIER_BEFORE_REFILL) __syncthreads();
    }
    out[t] = acc;
}

// 16-byte (cp.async.cg, the upper half zero-filled for odd threads), 8-byte (with an L2 cache
// policy) and 4-byte copies (the last ignoring its source, so zero-filling, where t & 2),
// awaited with cp.async.wait_all;
// the outputs receive the shared buffers reversed.
extern "C" __global__ void wide_copies(const float4* in4, const double* in8, const float* in1, float4* out4, double* out8, float* out1) {
    __shared__ float4 s4[32];
    __shared__ double s8[32];
    __shared__ float s1[32];
    const int t = threadIdx.x;
    const unsigned src_bytes = (t & 1) ? 8 : 16;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem(&s4[t])), "l"(__cvta_generic_to_global(&in4[t])), "r"(src_bytes) : "memory");
    asm volatile("{\n\t.reg .b64 policy;\n\tcreatepolicy.fractional.L2::evict_last.b64 policy, 1.0;\n\t"
                 "cp.async.ca.shared.global.L2::cache_hint [%0], [%1], 8, policy;\n\t}"
                 ::"r"(smem(&s8[t])), "l"(__cvta_generic_to_global(&in8[t])) : "memory");
    asm volatile("{\n\t.reg .pred p;\n\tsetp.ne.u32 p, %2, 0;\n\tcp.async.ca.shared.global [%0], [%1], 4, p;\n\t}"
                 ::"r"(smem(&s1[t])), "l"(__cvta_generic_to_global(&in1[t])), "r"(t & 2) : "memory");
    asm volatile("cp.async.wait_all;" ::: "memory");
    __syncthreads();
    out4[t] = s4[31 - t];
    out8[t] = s8[31 - t];
    out1[t] = s1[31 - t];
}

// Each thread copies one float and has an mbarrier track the copy (with `.noinc` the tracked
// arrival is one of the expected ones), then arrives and waits for the phase.
extern "C" __global__ void mbarrier_tracked_copies(const float* x, float* out, int noinc) {
    __shared__ unsigned long long bar;
    __shared__ float s[128];
    const int t = threadIdx.x;
    if (t == 0) {
        asm volatile("mbarrier.init.shared.b64 [%0], %1;" ::"r"(smem(&bar)), "r"(noinc ? 256u : 128u) : "memory");
    }
    __syncthreads();
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(smem(&s[t])), "l"(__cvta_generic_to_global(&x[t])) : "memory");
    if (noinc) {
        asm volatile("cp.async.mbarrier.arrive.noinc.shared.b64 [%0];" ::"r"(smem(&bar)) : "memory");
    } else {
        asm volatile("cp.async.mbarrier.arrive.shared.b64 [%0];" ::"r"(smem(&bar)) : "memory");
    }
    // Arrive, then poll with try_wait until the phase of the arrival completes (a loop in PTX).
    asm volatile("{\n\t.reg .b64 state;\n\t.reg .pred done;\n\tmbarrier.arrive.shared.b64 state, [%0];\n"
                 "tracked_wait:\n\tmbarrier.try_wait.shared.b64 done, [%0], state;\n\t@!done bra tracked_wait;\n\t}"
                 ::"r"(smem(&bar)) : "memory");
    out[t] = s[127 - t];
}
