// Pointwise kernels over values in their stored formats (kernels/stored.cuh), 4 values per
// thread: a whole group of 4 moves in one access per buffer (16 bytes of f32, 8 of 16-bit
// values) when the host found every buffer 16-byte aligned (`vec`), else, and for the last
// partial group, value by value. Launch ceil(n / 4) threads.
#pragma once
#include "stored.cuh"

#define FERRO_GROUP 4

// The first value of this thread's group of V consecutive values (FERRO_GROUP here; 1 where a
// kernel's fallback moves values singly), or -1 past the end.
template <int V = FERRO_GROUP>
__device__ __forceinline__ long long ferro_group_start(int n) {
    const long long i = V * ((long long)blockIdx.x * blockDim.x + threadIdx.x);
    return i < n ? i : -1;
}

// Whether the group starting at i moves in single accesses.
__device__ __forceinline__ bool ferro_group_whole(long long i, int n, int vec) { return vec && i + FERRO_GROUP <= n; }

// y = op(x) per value.
template <typename Op>
__device__ __forceinline__ void ferro_map1(const void* __restrict__ x, int x_format, void* __restrict__ y,
                                           int y_format, int n, int vec, Op op) {
    const long long i = ferro_group_start(n);
    if (i < 0) return;
    if (ferro_group_whole(i, n, vec)) {
        const float4 a = ferro_load4(x, i, x_format);
        ferro_store4(y, i, make_float4(op(a.x), op(a.y), op(a.z), op(a.w)), y_format);
        return;
    }
    for (long long k = i; k < n && k < i + FERRO_GROUP; ++k) ferro_store(y, k, op(ferro_load(x, k, x_format)), y_format);
}

// y = op(a, b) per value.
template <typename Op>
__device__ __forceinline__ void ferro_map2(const void* __restrict__ a, int a_format, const void* __restrict__ b,
                                           int b_format, void* __restrict__ y, int y_format, int n, int vec, Op op) {
    const long long i = ferro_group_start(n);
    if (i < 0) return;
    if (ferro_group_whole(i, n, vec)) {
        const float4 u = ferro_load4(a, i, a_format), v = ferro_load4(b, i, b_format);
        ferro_store4(y, i, make_float4(op(u.x, v.x), op(u.y, v.y), op(u.z, v.z), op(u.w, v.w)), y_format);
        return;
    }
    for (long long k = i; k < n && k < i + FERRO_GROUP; ++k)
        ferro_store(y, k, op(ferro_load(a, k, a_format), ferro_load(b, k, b_format)), y_format);
}
