// Conversions with every rounding mode and saturation that CUDA's intrinsics emit, and the
// special byte-permute modes. Compiled for compute_75 (bf16 conversions in integer code) and
// compute_80 (cvt.*.bf16.f32).
#include <cuda_fp16.h>
#include <cuda_bf16.h>

// Per thread, from v = x[t], d = xd[t], i = xi[t] and h = hx[t]: float-to-integer (10 ints),
// integer- and double-to-float (11 floats), float-to-half and -bfloat16 in four rounding modes
// (8 halves) and integer-to-double (3 doubles).
extern "C" __global__ void conversions(const float* x, const double* xd, const int* xi, const float* hx, int* ints, float* floats,
                                       unsigned short* halves, double* doubles) {
    const int t = threadIdx.x;
    const float v = x[t];
    const double d = xd[t];
    const int i = xi[t];
    const float h = hx[t];
    int* oi = ints + 10 * t;
    oi[0] = __float2int_rn(v);
    oi[1] = __float2int_rz(v);
    oi[2] = __float2int_rd(v);
    oi[3] = __float2int_ru(v);
    oi[4] = (int)__float2uint_rn(v);
    oi[5] = (int)(__float2ll_rd(v) >> 8);
    oi[6] = __double2int_rn(d);
    oi[7] = __double2int_ru(d);
    oi[8] = (int)__double2uint_rz(d);
    oi[9] = (int)(__float2ull_ru(v) >> 8);
    float* of = floats + 11 * t;
    of[0] = __int2float_rn(i);
    of[1] = __int2float_rz(i);
    of[2] = __int2float_rd(i);
    of[3] = __int2float_ru(i);
    of[4] = __double2float_rn(d);
    of[5] = __double2float_rz(d);
    of[6] = __double2float_rd(d);
    of[7] = __double2float_ru(d);
    of[8] = __saturatef(v);
    of[9] = __uint2float_rd((unsigned)i);
    of[10] = __ll2float_ru((long long)i * 3);
    unsigned short* oh = halves + 8 * t;
    oh[0] = __half_as_ushort(__float2half_rn(h));
    oh[1] = __half_as_ushort(__float2half_rz(h));
    oh[2] = __half_as_ushort(__float2half_rd(h));
    oh[3] = __half_as_ushort(__float2half_ru(h));
    oh[4] = __bfloat16_as_ushort(__float2bfloat16_rn(h));
    oh[5] = __bfloat16_as_ushort(__float2bfloat16_rz(h));
    oh[6] = __bfloat16_as_ushort(__float2bfloat16_rd(h));
    oh[7] = __bfloat16_as_ushort(__float2bfloat16_ru(h));
    double* od = doubles + 3 * t;
    od[0] = __int2double_rn(i);
    od[1] = __ll2double_rz(((long long)i << 30) + 1);
    od[2] = __ull2double_ru(~0ull - (unsigned)i);
}

// Per thread (selector t), the byte-permute modes that have a plain meaning: f4e (a byte
// funnel shift of b:a), b4e, rc8 (a byte broadcast) and rc16 (a half-word broadcast).
extern "C" __global__ void permutes(unsigned a, unsigned b, unsigned* out) {
    const unsigned t = threadIdx.x;
    unsigned* o = out + 4 * t;
    asm("prmt.b32.f4e %0, %1, %2, %3;" : "=r"(o[0]) : "r"(a), "r"(b), "r"(t));
    asm("prmt.b32.b4e %0, %1, %2, %3;" : "=r"(o[1]) : "r"(a), "r"(b), "r"(t));
    asm("prmt.b32.rc8 %0, %1, %2, %3;" : "=r"(o[2]) : "r"(a), "r"(b), "r"(t));
    asm("prmt.b32.rc16 %0, %1, %2, %3;" : "=r"(o[3]) : "r"(a), "r"(b), "r"(t));
}
