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

// Dynamic loss scaling with its state on the device, so that a replayed CUDA graph scales each
// step by the scale the steps before it left (src/ops/precision/mod.rs, `LOSS_SCALE_STATE_LEN`):
// state = {scale, finite steps since the scale last changed, steps skipped for an overflow}.

// x[i] *= the factor `state` gives: (weight * scale) / ranks, or 1 / scale when `invert`; each
// computed in f64 and rounded to f32 once, as the host computed the factor it passed `scale`
// (kernels/elementwise.cu), which this multiplies by in the same way. In place, 4 values per
// thread (kernels/pointwise.cuh's groups), x in its stored format; x is read and written by
// the same thread, so it is not __restrict__.
extern "C" __global__ void scale_by_loss_scale(void* x, int x_format, int n, const float* __restrict__ state,
                                               double weight, double ranks, int invert, int vec) {
    const long long i = ferro_group_start(n);
    if (i < 0) return;
    const double scale = (double)state[0];
    const float f = invert ? (float)(1.0 / scale) : (float)(weight * scale / ranks);
    if (ferro_group_whole(i, n, vec)) {
        const float4 v = ferro_load4(x, i, x_format);
        ferro_store4(x, i, make_float4(v.x * f, v.y * f, v.z * f, v.w * f), x_format);
        return;
    }
    for (long long k = i; k < n && k < i + FERRO_GROUP; ++k) ferro_store(x, k, ferro_load(x, k, x_format) * f, x_format);
}

// After an optimiser step, from its clip state {norm, ...} (kernels/optim.cu): a non-finite
// norm is an overflow (the update was skipped): the scale halves, the run of finite steps
// restarts and the skip is counted; a finite one extends the run, and `growth_interval` finite
// steps in a row double the scale. PyTorch's GradScaler.update, in f32 as its scale is. One
// thread.
extern "C" __global__ void update_loss_scale(float* __restrict__ state, const float* __restrict__ clip,
                                             int growth_interval) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    if (!(fabsf(clip[0]) < FERRO_INF)) {
        state[0] *= 0.5f;
        state[1] = 0.0f;
        state[2] += 1.0f;
        return;
    }
    const float good = state[1] + 1.0f;
    if (good == (float)growth_interval) {
        state[0] *= 2.0f;
        state[1] = 0.0f;
    } else {
        state[1] = good;
    }
}
