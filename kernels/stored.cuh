// Values as a buffer stores them: f32, bf16 or fp16, chosen at run time per pointer (the codes of
// src/precision.rs StoredFormat). Kernels compute in f32: they read any format widened exactly
// and store rounded to nearest even, so a bf16/fp16 run's tensors take 2 bytes per value and
// equal the CPU's emulation of those stores (f32 containers rounded by Precision::round).
// No sm_80 instruction: bf16 rounds on the bit pattern, fp16 through cvt.rn.f16.f32 (sm_53).
#pragma once

#define FERRO_F32 0
#define FERRO_BF16 1
#define FERRO_F16 2

__device__ __forceinline__ float ferro_widen16(unsigned short h, int format) {
    if (format == FERRO_BF16) return __uint_as_float(static_cast<unsigned>(h) << 16);
    float y;
    asm("cvt.f32.f16 %0, %1;" : "=f"(y) : "h"(h));
    return y;
}

__device__ __forceinline__ unsigned short ferro_narrow16(float x, int format) {
    if (format == FERRO_BF16) {
        unsigned u = __float_as_uint(x);
        // A NaN keeps its sign and top payload bits, made quiet (adding the rounding bias could
        // carry it into infinity).
        if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<unsigned short>((u >> 16) | 0x40u);
        // Half a bf16 ulp, less one unless the kept lowest bit is odd: ties go to even, and a
        // carry out of the mantissa steps the exponent (to infinity past the largest finite).
        u += 0x7fffu + ((u >> 16) & 1u);
        return static_cast<unsigned short>(u >> 16);
    }
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x));
    return h;
}

__device__ __forceinline__ float ferro_load(const void* p, long long i, int format) {
    if (format == FERRO_F32) return static_cast<const float*>(p)[i];
    return ferro_widen16(static_cast<const unsigned short*>(p)[i], format);
}

__device__ __forceinline__ void ferro_store(void* p, long long i, float v, int format) {
    if (format == FERRO_F32) {
        static_cast<float*>(p)[i] = v;
    } else {
        static_cast<unsigned short*>(p)[i] = ferro_narrow16(v, format);
    }
}

// Values i .. i+3 in one load: 16 bytes of f32 or 8 of 16-bit values. i is a multiple of 4 and
// the buffer's start aligned to 4 values (every allocation is).
__device__ __forceinline__ float4 ferro_load4(const void* p, long long i, int format) {
    if (format == FERRO_F32) return reinterpret_cast<const float4*>(p)[i / 4];
    const uint2 h = reinterpret_cast<const uint2*>(p)[i / 4];
    return make_float4(ferro_widen16(static_cast<unsigned short>(h.x & 0xffffu), format),
                       ferro_widen16(static_cast<unsigned short>(h.x >> 16), format),
                       ferro_widen16(static_cast<unsigned short>(h.y & 0xffffu), format),
                       ferro_widen16(static_cast<unsigned short>(h.y >> 16), format));
}

__device__ __forceinline__ void ferro_store4(void* p, long long i, float4 v, int format) {
    if (format == FERRO_F32) {
        reinterpret_cast<float4*>(p)[i / 4] = v;
        return;
    }
    uint2 h;
    h.x = static_cast<unsigned>(ferro_narrow16(v.x, format)) | (static_cast<unsigned>(ferro_narrow16(v.y, format)) << 16);
    h.y = static_cast<unsigned>(ferro_narrow16(v.z, format)) | (static_cast<unsigned>(ferro_narrow16(v.w, format)) << 16);
    reinterpret_cast<uint2*>(p)[i / 4] = h;
}
