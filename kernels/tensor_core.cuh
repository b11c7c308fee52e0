// The tensor-core building blocks shared by the tensor-core GEMM (gemm_tc.cu) and the implicit-
// GEMM convolution (conv_tc.cu): 16-byte copies (cp.async on Ampere), ldmatrix, mma.sync with f32
// accumulators, and the copy pipelines they run. Compiled for compute_80 and for
// compute_75 (Turing: fp16 only, see tc_mma); where Turing lacks an instruction, the
// __CUDA_ARCH__ < 800 branch does the same work another way.
#pragma once
#include "stored.cuh"

#if __CUDA_ARCH__ >= 800
#define TC_AMPERE 1
#else
#define TC_AMPERE 0
#endif

enum TcIn { TC_BF16, TC_F16, TC_TF32 };

// The 16-bit pattern of x in bf16 (TC_BF16) or f16 (TC_F16), rounded to nearest even: exact for
// a value already rounded to the format, as stored values are at bf16/fp16 (src/precision.rs).
__device__ __forceinline__ unsigned short tc_to_16bit(float x, int format) {
    unsigned short h;
    if (format == TC_BF16) {
#if TC_AMPERE
        asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(x));
#else
        h = ferro_narrow16(x, FERRO_BF16);  // cvt.rn.bf16.f32 is sm_80's; the same rounding
#endif
    } else {
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x));
    }
    return h;
}

// One stage's COPIES 16-byte copies of a thread from global to shared memory: `issue(i, dst_offset,
// src, inside)` copies 16 bytes from src to byte dst_offset of the stage's shared buffer as copy i
// of the thread, or zeros when !inside (no global read at all, for operands past an edge or in a
// convolution's padding).
#if TC_AMPERE
// By cp.async into the buffer at shared address `base` (COPIES sizes Turing's only).
template <int COPIES>
struct TcCopies {
    unsigned base;

    __device__ __forceinline__ void issue(int, unsigned dst_offset, const void* src, bool inside) const {
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(base + dst_offset), "l"(src), "r"(inside ? 16 : 0));
    }
};
#else
// Turing has no cp.async: the copies are held in registers between their global reads (`issue`)
// and their shared stores (`stash`), so that the math of the previous stage runs while the reads
// are in flight. The held values cost 4 registers per copy, their offsets one each.
template <int COPIES>
struct TcCopies {
    uint4 value[COPIES];
    unsigned offset[COPIES];

    __device__ __forceinline__ void issue(int i, unsigned dst_offset, const void* src, bool inside) {
        value[i] = inside ? *static_cast<const uint4*>(src) : make_uint4(0u, 0u, 0u, 0u);
        offset[i] = dst_offset;
    }

    // Every held copy into the stage buffer at shared address `base`.
    __device__ __forceinline__ void stash(unsigned base) const {
#pragma unroll
        for (int i = 0; i < COPIES; ++i)
            asm volatile("st.shared.v4.u32 [%0], {%1, %2, %3, %4};" ::"r"(base + offset[i]), "r"(value[i].x), "r"(value[i].y),
                         "r"(value[i].z), "r"(value[i].w)
                         : "memory");
    }
};
#endif

__device__ __forceinline__ void tc_ldmatrix_x4(unsigned (&r)[4], unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

__device__ __forceinline__ void tc_ldmatrix_x4_trans(unsigned (&r)[4], unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// cvt.rna.tf32.f32 of the f32 with bits `f32_bits`: the tf32 value a tensor core multiplies.
__device__ __forceinline__ unsigned tc_to_tf32(unsigned f32_bits) {
#if TC_AMPERE
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(__uint_as_float(f32_bits)));
    return r;
#else
    // cvt.rna.tf32.f32 is sm_80's (Turing only rounds for the emulation, src/precision.rs):
    // half a tf32 step added to the magnitude rounds ties away from zero and carries into the
    // exponent where it must; infinities and NaNs pass unchanged.
    if ((f32_bits & 0x7f800000u) == 0x7f800000u) return f32_bits;
    return (f32_bits & 0x80000000u) | (((f32_bits & 0x7fffffffu) + 0x1000u) & ~0x1fffu);
#endif
}

// Shared tiles of 64-byte rows (4 chunks of 16 bytes) are XOR-swizzled: chunk c of row r is stored
// at chunk c ^ ((r >> 1) & 3), so that ldmatrix's eight rows of one chunk (and rows 2 apart, which
// share banks unswizzled) hit distinct banks. The byte offset of (row, chunk).
constexpr int TC_ROW_BYTES = 64;
__device__ __forceinline__ unsigned tc_swizzled(int row, int chunk) {
    return row * TC_ROW_BYTES + ((chunk ^ ((row >> 1) & 3)) << 4);
}

// d += a b for one 16x8 tile: m16n8k16 for bf16/f16 operands, m16n8k8 for tf32. Turing has
// only f16's m16n8k8 (bf16 and tf32 tensor cores are sm_80's; no such kernel is built for it):
// the 16x16 a fragment's registers 0-1 hold k 0-7 and 2-3 k 8-15, b's register 0 k 0-7 and 1
// k 8-15, so two m16n8k8 in k order make the m16n8k16.
template <TcIn IN>
__device__ __forceinline__ void tc_mma(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
#if TC_AMPERE
    if (IN == TC_BF16) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    } else if (IN == TC_F16) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    } else {
        asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
#else
    static_assert(IN == TC_F16, "Turing's tensor cores take f16 only");
#pragma unroll
    for (int half = 0; half < 2; ++half)
        asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[2 * half]), "r"(a[2 * half + 1]), "r"(b[half]));
#endif
}

// The four 8x8 matrices of one x4 ldmatrix (k 0-7 and 8-15 of columns 0-7, then of columns
// 8-15) as the b fragments of column tiles 2j and 2j + 1.
template <int NT>
__device__ __forceinline__ void tc_b_fragment_pair(unsigned (&bf)[NT][2], int j, const unsigned (&r)[4]) {
    bf[2 * j][0] = r[0];
    bf[2 * j][1] = r[1];
    bf[2 * j + 1][0] = r[2];
    bf[2 * j + 1][1] = r[3];
}

// The B fragments of k-step `ks` (of a stage's two) of a warp's NT column tiles from a shared B
// tile stored k-contiguous like A (row n = column n of B, 64-byte swizzled rows), the warp's
// columns starting at row col0: lanes 0-7 and 8-15 give columns 0-7 at the two 16-byte halves of
// the k-step (b0, b1 of the first 8 columns), lanes 16-31 columns 8-15 likewise. For tf32 a half
// is 4 k, so the same addresses give m16n8k8's b0 (k = t) and b1 (k = t + 4), converted.
template <TcIn IN, int NT>
__device__ __forceinline__ void tc_load_b_k_contiguous(unsigned (&bf)[NT][2], unsigned b_base, int col0, int ks, int lane) {
    const int b_row = (lane & 7) + ((lane >> 4) << 3), b_half = (lane >> 3) & 1;
#pragma unroll
    for (int j = 0; j < NT / 2; ++j) {
        unsigned r[4];
        tc_ldmatrix_x4(r, b_base + tc_swizzled(col0 + j * 16 + b_row, 2 * ks + b_half));
        if (IN == TC_TF32) {
#pragma unroll
            for (int e = 0; e < 4; ++e) r[e] = tc_to_tf32(r[e]);
        }
        tc_b_fragment_pair(bf, j, r);
    }
}

// Every pair of a warp's MT row fragments and NT column fragments multiplied into its
// accumulators.
template <TcIn IN, int MT, int NT>
__device__ __forceinline__ void tc_mma_tiles(float (&acc)[MT][NT][4], const unsigned (&a)[MT][4], const unsigned (&b)[NT][2]) {
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j) tc_mma<IN>(acc[i][j], a[i], b[j]);
}

// One pipeline stage (64 bytes of K per row: two mma k-steps) of a warp's MT x NT tiles: the A
// fragments by ldmatrix from the swizzled A tile at shared address a_base, rows a_row0 + 16 i
// (lanes 0-15 give rows 0-15 of a 16x16 block's first 16-byte half, lanes 16-31 those of the
// second; converted to tf32 for TC_TF32), the B fragments from `load_b(ks, bf)`, multiplied into
// acc.
template <TcIn IN, int MT, int NT, class LoadB>
__device__ __forceinline__ void tc_mma_stage(float (&acc)[MT][NT][4], unsigned a_base, int a_row0, int lane, LoadB& load_b) {
    const int a_row = lane & 15, a_half = lane >> 4;
#pragma unroll
    for (int ks = 0; ks < 2; ++ks) {
        unsigned af[MT][4];
#pragma unroll
        for (int i = 0; i < MT; ++i) {
            tc_ldmatrix_x4(af[i], a_base + tc_swizzled(a_row0 + i * 16 + a_row, 2 * ks + a_half));
            if (IN == TC_TF32) {
#pragma unroll
                for (int e = 0; e < 4; ++e) af[i][e] = tc_to_tf32(af[i][e]);
            }
        }
        unsigned bf[NT][2];
        load_b(ks, bf);
        tc_mma_tiles<IN>(acc, af, bf);
    }
}

// Hands each accumulator pair of a warp's MT x NT tiles, whose first row and column are row0 and
// col0, to `store(row, col, v0, v1)`: lane (g, t) holds rows g and g + 8, columns 2t and 2t + 1
// of each 16x8 tile. Pairs whose first element lies outside the m x n matrix are skipped; the
// second may lie past column n - 1, which `store` checks.
template <int MT, int NT, class Store>
__device__ __forceinline__ void tc_store_tiles(const float (&acc)[MT][NT][4], int row0, int col0, int lane, int m, int n,
                                               Store& store) {
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int i = 0; i < MT; ++i) {
#pragma unroll
        for (int j = 0; j < NT; ++j) {
            const int col = col0 + j * 8 + 2 * t;
#pragma unroll
            for (int half = 0; half < 2; ++half) {
                const int row = row0 + i * 16 + g + 8 * half;
                if (row < m && col < n) store(row, col, acc[i][j][2 * half], acc[i][j][2 * half + 1]);
            }
        }
    }
}

template <int MT, int NT>
__device__ __forceinline__ void tc_zero(float (&acc)[MT][NT][4]) {
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;
}

// The two-buffer pipeline of copies staged in registers, over the stages of K that start at
// k = k_begin, k_begin + step, ... < k_end: `fetch(k)` reads the stage at k from global memory
// into registers (in that order), `stash(buffer)` stores what the last fetch read into shared
// buffer 0 or 1, `compute(buffer)` multiplies a buffer. The next stage's reads are in flight
// while the tensor cores multiply the current one; its stores follow the math, into the buffer
// every warp finished reading before the previous barrier. One barrier per stage: it orders the
// stores before the next stage's reads of them, and this stage's reads before the stores of the
// stage after next into the same buffer.
template <class Fetch, class Stash, class Compute>
__device__ __forceinline__ void tc_staged_pipeline(int k_begin, int k_end, int step, Fetch& fetch, Stash& stash,
                                                   Compute& compute) {
    if (k_begin < k_end) {
        fetch(k_begin);
        stash(0);
    }
    __syncthreads();
    int buffer = 0;
    for (int k = k_begin; k < k_end; k += step) {
        const bool more = k + step < k_end;
        if (more) fetch(k + step);
        compute(buffer);
        if (more) stash(buffer ^ 1);
        __syncthreads();
        buffer ^= 1;
    }
}

// The shared buffers of stage_bytes each that tc_pipeline<STAGES> fills: Turing's copies are
// staged in registers, which two buffers suffice for.
template <int STAGES>
constexpr int tc_pipeline_buffers = TC_AMPERE ? STAGES : 2;

// The copy pipeline over `ktiles` stages of K into tc_pipeline_buffers<STAGES> shared buffers of
// stage_bytes from smem_base: `load(kt, copies)` issues the copies of K stage kt through
// `copies` (a TcCopies<COPIES>), and must be called for kt = 0, 1, 2, ... in order;
// `compute(buffer)` multiplies a buffer.
//
// On Ampere, STAGES buffers filled by cp.async. One barrier per stage: it follows the wait for
// stage kt's copies, so every warp sees all of them, and precedes the refill of the buffer of
// stage kt - 1, which every warp has finished reading. Stages past K commit empty groups, so no
// copy is left in flight at the end. On Turing, tc_staged_pipeline with the copies held in
// registers.
template <int STAGES, int COPIES, class Load, class Compute>
__device__ __forceinline__ void tc_pipeline(int ktiles, unsigned smem_base, int stage_bytes, Load& load, Compute& compute) {
#if TC_AMPERE
    auto load_into = [&](int buffer, int kt) {
        TcCopies<COPIES> copies{smem_base + buffer * stage_bytes};
        load(kt, copies);
    };
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < ktiles) load_into(s, s);
        asm volatile("cp.async.commit_group;");
    }
    for (int kt = 0; kt < ktiles; ++kt) {
        asm volatile("cp.async.wait_group %0;" ::"n"(STAGES - 2));
        __syncthreads();
        const int next = kt + STAGES - 1;
        if (next < ktiles) load_into(next % STAGES, next);
        asm volatile("cp.async.commit_group;");
        compute(kt % STAGES);
    }
#else
    TcCopies<COPIES> held;
    auto fetch = [&](int kt) { load(kt, held); };
    auto stash = [&](int buffer) { held.stash(smem_base + buffer * stage_bytes); };
    tc_staged_pipeline(0, ktiles, 1, fetch, stash, compute);
#endif
}
