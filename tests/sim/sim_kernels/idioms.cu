// Idioms of public CUDA code the simulator must run (compute_75): predefined constants, inline
// asm with block-scoped registers, spin-waits between warps, warp votes and matches, named
// barriers and atomics of every width and operation.

__device__ __forceinline__ unsigned load_acquire(const unsigned* p) {
    unsigned v;
    asm volatile("ld.acquire.cta.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}
__device__ __forceinline__ void store_release(unsigned* p, unsigned v) {
    asm volatile("st.release.cta.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

// out[3t..3t+3] = warpSize, (t > 15), t + 100: two asm blocks declare the same scoped register.
extern "C" __global__ void warp_size_and_scoped_regs(unsigned* out) {
    unsigned t = threadIdx.x, above, plus;
    asm("{\n\t.reg .u32 t;\n\t.reg .pred p;\n\tmov.u32 t, %1;\n\tsetp.gt.u32 p, t, 15;\n\tselp.u32 %0, 1, 0, p;\n\t}"
        : "=r"(above) : "r"(t));
    asm("{\n\t.reg .u32 t;\n\tadd.u32 t, %1, 100;\n\tmov.u32 %0, t;\n\t}" : "=r"(plus) : "r"(t));
    out[3 * t] = warpSize;
    out[3 * t + 1] = above;
    out[3 * t + 2] = plus;
}

// Warp 0 waits for warp 1's data through a flag (mode 0: acquire/release, 1: volatile + fence).
extern "C" __global__ void spin_wait(float* out, int mode) {
    __shared__ unsigned flag;
    __shared__ float data[32];
    const unsigned lane = threadIdx.x % 32;
    if (threadIdx.x == 0) flag = 0;
    __syncthreads();
    if (threadIdx.x < 32) {
        if (lane == 0) {
            if (mode == 0) {
                while (load_acquire(&flag) == 0) {}
            } else {
                while (*(volatile unsigned*)&flag == 0) {}
            }
        }
        __syncwarp();
        out[lane] = data[lane];
    } else {
        data[lane] = 2.0f * lane + 1.0f;
        __syncwarp();
        if (lane == 0) {
            if (mode == 0) {
                store_release(&flag, 1);
            } else {
                __threadfence_block();
                *(volatile unsigned*)&flag = 1;
            }
        }
    }
}

// Every thread of the block stores its index into one shared word; warps = blockDim.x / 32.
extern "C" __global__ void one_word_store(unsigned* out) {
    __shared__ unsigned word;
    word = threadIdx.x;
    __syncthreads();
    if (threadIdx.x == 0) out[0] = word;
}

// ferro_block_reduce (kernels/common.cuh) with its first __syncthreads() optional.
extern "C" __global__ void block_sum(const float* x, float* out, int first_barrier) {
    __shared__ float scratch[33];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    float v = x[threadIdx.x];
    for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffff, v, o);
    if (lane == 0) scratch[warp] = v;
    if (first_barrier) __syncthreads();
    if (warp == 0) {
        float w = lane < warps ? scratch[lane] : 0.0f;
        for (int o = 16; o > 0; o /= 2) w += __shfl_xor_sync(0xffffffff, w, o);
        if (lane == 0) scratch[32] = w;
    }
    __syncthreads();
    if (threadIdx.x == 0) out[0] = scratch[32];
}

// Reads shared memory no thread wrote.
extern "C" __global__ void read_unwritten_shared(float* out) {
    __shared__ float s[64];
    __syncthreads();
    out[threadIdx.x] = s[threadIdx.x];
}

// Per thread: ballot, all, any, match.any mask, activemask, and an 8-lane
// tile's shuffle-down sum (cooperative groups' tiled_partition<8> shfl).
extern "C" __global__ void warp_votes(const unsigned* x, unsigned* out) {
    const unsigned t = threadIdx.x, v = x[t];
    unsigned* o = out + 6 * t;
    o[0] = __ballot_sync(0xffffffff, v & 1);
    o[1] = __all_sync(0xffffffff, v < 100);
    o[2] = __any_sync(0xffffffff, v == 7);
    o[3] = __match_any_sync(0xffffffff, v % 4);
    o[4] = __activemask();
    const unsigned tile_mask = 0xffu << (t & 24);
    unsigned s = v;
    for (int d = 4; d > 0; d /= 2) s += __shfl_down_sync(tile_mask, s, d, 8);
    o[5] = s;
}

// Warps 0-1 and 2-3 exchange through named barriers 1 and 2 (64 threads each); warp 1 hands
// warp 0 data with bar.arrive on barrier 3.
extern "C" __global__ void named_barriers(float* out) {
    __shared__ float a[64], b[64], c[32];
    const unsigned t = threadIdx.x;
    if (t < 64) {
        a[t] = t;
        asm volatile("bar.sync 1, 64;" ::: "memory");
        out[t] = a[63 - t];
    } else {
        b[t - 64] = 10.0f * t;
        asm volatile("bar.sync 2, 64;" ::: "memory");
        out[t] = b[127 - t];
    }
    if (t >= 32 && t < 64) {
        c[t - 32] = 0.5f * t;
        asm volatile("bar.arrive 3, 64;" ::: "memory");
    } else if (t < 32) {
        asm volatile("bar.sync 3, 64;" ::: "memory");
        out[128 + t] = c[31 - t];
    }
}

// Every atomic operation on global (g) and shared memory; each thread adds its index.
extern "C" __global__ void atomics(int* gi, unsigned* gu, unsigned long long* gull, float* gf, double* gd, long long* gll) {
    __shared__ int si[4];
    __shared__ unsigned su[2];
    const int t = threadIdx.x;
    if (t < 4) si[t] = 0;
    if (t < 2) su[t] = 0;
    __syncthreads();
    atomicAdd(&gi[0], t);
    atomicMin(&gi[1], 50 - t);
    atomicMax(&gi[2], t - 50);
    atomicAnd(&gi[3], ~(1 << (t % 31)));
    atomicOr(&gi[4], 1 << (t % 31));
    atomicXor(&gi[5], t);
    atomicAdd(&gu[0], (unsigned)t);
    atomicInc(&gu[1], 16u);
    atomicDec(&gu[2], 16u);
    atomicCAS(&gu[3], 5u, 99u);
    atomicExch(&gu[4], 7u);
    atomicMin(&gu[5], 1000u + t);
    atomicMax(&gu[6], 1000u + t);
    atomicAdd(&gull[0], (unsigned long long)t << 33);
    atomicCAS(&gull[1], 5ull << 40, 9ull << 40);
    atomicMin(&gull[2], 5000ull + t);
    atomicMax(&gull[3], 5000ull + t);
    atomicAdd(&gf[0], 0.25f * t);
    atomicAdd(&gd[0], 0.125 * t);
    atomicMin(&gll[0], -1000ll * t);
    atomicMax(&gll[1], -1000ll * t);
    atomicAdd(&si[0], t);
    atomicMax(&si[1], t);
    atomicOr(&si[2], 1 << (t % 32));
    atomicCAS(&si[3], 0, 7);
    atomicInc(&su[0], 8u);
    atomicExch(&su[1], 42u);
    __syncthreads();
    if (t < 4) gi[6 + t] = si[t];
    if (t < 2) gu[7 + t] = su[t];
}

// __syncthreads_count/and/or over a block of 64 (bar.red).
extern "C" __global__ void barrier_reductions(const int* x, int* out) {
    const int t = threadIdx.x, v = x[t];
    const int count = __syncthreads_count(v > 10);
    const int all = __syncthreads_and(v >= 0);
    const int any = __syncthreads_or(v == 13);
    if (t == 0) {
        out[0] = count;
        out[1] = all;
        out[2] = any;
    }
}

// Spins on shared memory nothing writes.
extern "C" __global__ void spin_on_unwritten_shared(int* out) {
    __shared__ int s[32];
    int n = 0;
    while (((volatile int*)s)[threadIdx.x] == 0) ++n;
    out[threadIdx.x] = n;
}
