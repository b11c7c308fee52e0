// ferronet: compute_75 compute_80
// Rounding stored values to a reduced-precision format, kept in f32 containers: what a
// reduced-precision engine's stores do to its values, emulated (src/precision.rs). The
// conversions are the ones a bf16/fp16/tf32 kernel stores or feeds tensor cores with
// (tensor_core.cuh): sm_80's cvt.rn.bf16.f32 and cvt.rna.tf32.f32, the same roundings on the
// bit patterns in the compute_75 module.
#include "common.cuh"
#include "tensor_core.cuh"
#include "stored.cuh"

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

// y[i] = x[i] rounded to `format`; x and y may be the same buffer (in place).
extern "C" __global__ void round_to_format(const float* x, float* y, int n, int format) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = round_to(x[i], format);
}

// y[i] = x[i] in y's stored format (kernels/stored.cuh): exact widening, or rounding to nearest
// even when y is narrower. How a bf16/fp16 run stores a value an f32-only kernel produced, and
// widens a stored value for one.
extern "C" __global__ void convert_stored(const void* x, int x_format, void* y, int y_format, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) ferro_store(y, i, ferro_load(x, i, x_format), y_format);
}
