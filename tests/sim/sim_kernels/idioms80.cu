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

// 16-bit floats (values chosen so every result is exact): f16 and bf16 arithmetic, packed
// pairs, conversions from f32, and a half-precision atomicAdd; plus dp4a, fns, lop3 and a
// 16-bit atomicCAS.
#include <cuda_fp16.h>
#include <cuda_bf16.h>

extern "C" __global__ void half_math(__half* h, __nv_bfloat16* b, __nv_bfloat162* packed, int* ints) {
    const int t = threadIdx.x;
    const __half x = __float2half(0.5f * t), y = __float2half(0.25f * (t % 8));
    h[t] = __hfma(x, y, __hadd(x, y));
    h[32 + t] = __hmax(x, y);
    const __half2 p = __hmul2(__halves2half2(x, y), __halves2half2(y, x));
    h[64 + t] = __low2half(p);
    h[96 + t] = __hneg(__high2half(p));
    atomicAdd(&h[128], __float2half((float)(t % 4)));
    const __nv_bfloat16 c = __float2bfloat16((float)t), d = __float2bfloat16(0.5f);
    b[t] = __hfma(c, d, c);
    b[32 + t] = __hmax(c, __hmul(d, __float2bfloat16(40.0f)));
    packed[t] = __floats2bfloat162_rn(t + 0.5f, t + 1.5f);
    ints[t] = __dp4a(t * 0x01010101, 0x02fe0103, 5 * t);
    ints[32 + t] = __fns(0xf0f0f0f0u, t, 2);
    unsigned l;
    asm("lop3.b32 %0, %1, %2, %3, 0xe8;" : "=r"(l) : "r"(t), "r"(0x0f), "r"(0x33));
    ints[64 + t] = l;
    atomicCAS((unsigned short*)&ints[96] + 1, (unsigned short)0, (unsigned short)7);
}
