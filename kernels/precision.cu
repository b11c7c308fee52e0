// ferronet: compute_75 compute_80
// Rounding stored values to a reduced-precision format, kept in f32 containers: what a
// reduced-precision engine's stores do to its values, emulated (src/precision.rs). The
// conversions are the ones a bf16/fp16/tf32 kernel stores or feeds tensor cores with
// (tensor_core.cuh): sm_80's cvt.rn.bf16.f32 and cvt.rna.tf32.f32, the same roundings on the
// bit patterns in the compute_75 module.
#include "common.cuh"
#include "tensor_core.cuh"
#include "pointwise.cuh"

// format: 0 fp32 (a copy), 1 tf32, 2 bf16, 3 fp16.
__device__ __forceinline__ float round_to(float x, int format) {
    if (format == 1) return __uint_as_float(tc_to_tf32(__float_as_uint(x)));
    if (format == 2) {
        // bf16 is the upper half of an f32: widening is exact.
        return __uint_as_float(static_cast<unsigned>(tc_to_16bit(x, TC_BF16)) << 16);
    }
    if (format == 3) {
        float y;
        asm("cvt.f32.f16 %0, %1;" : "=f"(y) : "h"(tc_to_16bit(x, TC_F16)));
        return y;
    }
    return x;
}

// y[i] = x[i] rounded to `format`, 4 values per thread (kernels/pointwise.cuh's groups: one
// 16-byte access each way when `vec`); x and y may be the same buffer (in place), so neither is
// __restrict__ and each group is read whole before it is written.
extern "C" __global__ void round_to_format(const float* x, float* y, int n, int format, int vec) {
    const long long i = ferro_group_start(n);
    if (i < 0) return;
    if (ferro_group_whole(i, n, vec)) {
        const float4 v = reinterpret_cast<const float4*>(x)[i / 4];
        reinterpret_cast<float4*>(y)[i / 4] =
            make_float4(round_to(v.x, format), round_to(v.y, format), round_to(v.z, format), round_to(v.w, format));
        return;
    }
    for (long long k = i; k < n && k < i + FERRO_GROUP; ++k) y[k] = round_to(x[k], format);
}

// y[i] = x[i] in y's stored format (kernels/stored.cuh): exact widening, or rounding to nearest
// even when y is narrower. How a bf16/fp16 run stores a value an f32-only kernel produced, and
// widens a stored value for one. 4 values per thread (kernels/pointwise.cuh).
extern "C" __global__ void convert_stored(const void* __restrict__ x, int x_format, void* __restrict__ y,
                                          int y_format, int n, int vec) {
    ferro_map1(x, x_format, y, y_format, n, vec, [](float v) { return v; });
}
