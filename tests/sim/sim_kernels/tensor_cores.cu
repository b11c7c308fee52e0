// Tensor-core instructions as inline PTX (compute_80): each lane loads its own fragment of
// A, B and C from global memory by the PTX ISA's layout for the shape, one warp runs the mma,
// and each lane stores its fragment of D back where the layout puts it. ldmatrix reads
// matrices from shared memory with one row address per lane.
#include <cuda_bf16.h>

// Lane l is thread t = l % 4 of group g = l / 4.
#define LANE_COORDS const int l = threadIdx.x, g = l / 4, t = l % 4;

// Two consecutive 16-bit elements (the lower column or row in the lower half).
__device__ unsigned pair(const unsigned short* m, int first, int second) {
    return (unsigned)m[first] | ((unsigned)m[second] << 16);
}

// D (16x8, row-major) = A (16xK, row-major) * B (Kx8, row-major) + C, for each 16-bit form.
#define MMA_HALF_K16(NAME, TYPE)                                                                            \
    extern "C" __global__ void NAME(const unsigned short* a, const unsigned short* b, const float* c, float* d) { \
        LANE_COORDS                                                                                         \
        unsigned ra[4], rb[2];                                                                              \
        float rc[4], rd[4];                                                                                 \
        for (int j = 0; j < 4; ++j) {                                                                       \
            const int row = g + 8 * (j % 2), col = 2 * t + 8 * (j / 2);                                      \
            ra[j] = pair(a, row * 16 + col, row * 16 + col + 1);                                            \
        }                                                                                                   \
        for (int j = 0; j < 2; ++j) {                                                                       \
            const int k = 2 * t + 8 * j;                                                                    \
            rb[j] = pair(b, k * 8 + g, (k + 1) * 8 + g);                                                    \
        }                                                                                                   \
        for (int j = 0; j < 4; ++j) rc[j] = c[(g + 8 * (j / 2)) * 8 + 2 * t + j % 2];                         \
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." TYPE "." TYPE ".f32 "                         \
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};"                           \
                     : "=f"(rd[0]), "=f"(rd[1]), "=f"(rd[2]), "=f"(rd[3])                                  \
                     : "r"(ra[0]), "r"(ra[1]), "r"(ra[2]), "r"(ra[3]), "r"(rb[0]), "r"(rb[1]),              \
                       "f"(rc[0]), "f"(rc[1]), "f"(rc[2]), "f"(rc[3]));                                     \
        for (int j = 0; j < 4; ++j) d[(g + 8 * (j / 2)) * 8 + 2 * t + j % 2] = rd[j];                         \
    }

MMA_HALF_K16(mma_bf16_k16, "bf16")
MMA_HALF_K16(mma_f16_k16, "f16")

// The m16n8k8 f16 form: A is 16x8, B 8x8.
extern "C" __global__ void mma_f16_k8(const unsigned short* a, const unsigned short* b, const float* c, float* d) {
    LANE_COORDS
    unsigned ra[2], rb;
    float rc[4], rd[4];
    for (int j = 0; j < 2; ++j) ra[j] = pair(a, (g + 8 * j) * 8 + 2 * t, (g + 8 * j) * 8 + 2 * t + 1);
    rb = pair(b, (2 * t) * 8 + g, (2 * t + 1) * 8 + g);
    for (int j = 0; j < 4; ++j) rc[j] = c[(g + 8 * (j / 2)) * 8 + 2 * t + j % 2];
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%7,%8,%9,%10};"
                 : "=f"(rd[0]), "=f"(rd[1]), "=f"(rd[2]), "=f"(rd[3])
                 : "r"(ra[0]), "r"(ra[1]), "r"(rb), "f"(rc[0]), "f"(rc[1]), "f"(rc[2]), "f"(rc[3]));
    for (int j = 0; j < 4; ++j) d[(g + 8 * (j / 2)) * 8 + 2 * t + j % 2] = rd[j];
}

// The m16n8k8 tf32 form on f32 inputs (A 16x8, B 8x8, one element per register).
extern "C" __global__ void mma_tf32_k8(const float* a, const float* b, const float* c, float* d) {
    LANE_COORDS
    unsigned ra[4], rb[2];
    float rc[4], rd[4];
    for (int j = 0; j < 4; ++j) ra[j] = __float_as_uint(a[(g + 8 * (j % 2)) * 8 + t + 4 * (j / 2)]);
    for (int j = 0; j < 2; ++j) rb[j] = __float_as_uint(b[(t + 4 * j) * 8 + g]);
    for (int j = 0; j < 4; ++j) rc[j] = c[(g + 8 * (j / 2)) * 8 + 2 * t + j % 2];
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};"
                 : "=f"(rd[0]), "=f"(rd[1]), "=f"(rd[2]), "=f"(rd[3])
                 : "r"(ra[0]), "r"(ra[1]), "r"(ra[2]), "r"(ra[3]), "r"(rb[0]), "r"(rb[1]),
                   "f"(rc[0]), "f"(rc[1]), "f"(rc[2]), "f"(rc[3]));
    for (int j = 0; j < 4; ++j) d[(g + 8 * (j / 2)) * 8 + 2 * t + j % 2] = rd[j];
}

// ldmatrix of `count` (1, 2 or 4) 8x8 matrices, stacked as rows 8i..8i+7 of a 32x8 matrix of
// 16-bit values copied into shared memory with a row pitch of `pitch` elements; lane l gives
// row l's address, `skew` bytes past it (0 for a valid read). out[4 * l + i] is register i of
// lane l.
extern "C" __global__ void load_matrices(const unsigned short* m, int count, int trans, int pitch, int skew, unsigned* out) {
    __shared__ __align__(16) unsigned short tile[32 * 16];
    const int l = threadIdx.x;
    for (int i = l; i < 32 * 16; i += 32) tile[i] = i / pitch < 32 && i % pitch < 8 ? m[(i / pitch) * 8 + i % pitch] : 0;
    __syncwarp();
    const unsigned addr = (unsigned)__cvta_generic_to_shared(&tile[l * pitch]) + (l == 5 ? skew : 0);
    unsigned r[4] = {0, 0, 0, 0};
    if (count == 1 && !trans) asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];" : "=r"(r[0]) : "r"(addr));
    if (count == 2 && !trans) asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];" : "=r"(r[0]), "=r"(r[1]) : "r"(addr));
    if (count == 4 && !trans)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
    if (count == 1 && trans) asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];" : "=r"(r[0]) : "r"(addr));
    if (count == 2 && trans) asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];" : "=r"(r[0]), "=r"(r[1]) : "r"(addr));
    if (count == 4 && trans)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
    for (int i = 0; i < 4; ++i) out[4 * l + i] = r[i];
}
