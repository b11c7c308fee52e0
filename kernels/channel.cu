// Channel-axis data movement on [N, C, HW] tensors, each buffer in its stored format
// (kernels/stored.cuh): a move between equal formats copies the value exactly. A thread moves V
// values: V = 4 (`vec`, chosen by the host where every run of values moved together is whole
// groups of 4 and the buffers are 16-byte aligned) in one access each way, 16 bytes of f32 or 8
// of 16-bit values; else V = 1, consecutive threads on consecutive values.
#include "common.cuh"
#include "pointwise.cuh"

// Values i .. i + V - 1 of src to j .. j + V - 1 of dst (i and j multiples of V).
template <int V>
__device__ __forceinline__ void move_values(const void* __restrict__ src, int src_format, int i,
                                            void* __restrict__ dst, int dst_format, int j) {
    if constexpr (V == 4) {
        ferro_store4(dst, j, ferro_load4(src, i, src_format), dst_format);
    } else {
        ferro_store(dst, j, ferro_load(src, i, src_format), dst_format);
    }
}

template <int V>
__device__ __forceinline__ void copy_channels_body(const void* __restrict__ src, int src_format,
                                                   void* __restrict__ dst, int dst_format, int n, int hw, int count,
                                                   int src_c, int src_first, int dst_c, int dst_first) {
    const int slab = count * hw;
    const int i = (int)ferro_group_start<V>(n * slab);  // below n * slab, or -1
    if (i < 0) return;
    const int img = i / slab;
    const int within = i - img * slab;
    move_values<V>(src, src_format, (img * src_c + src_first) * hw + within, dst, dst_format,
                   (img * dst_c + dst_first) * hw + within);
}

// Copies channels [src_first, src_first + count) of src ([N, src_c, HW]) into channels
// [dst_first, dst_first + count) of dst ([N, dst_c, HW]): each image's run is one slab of
// count * HW values. Concat is one launch per input, split one per output. `vec` needs every
// slab's length and start in both tensors a multiple of 4 (HW, or the channel counts and firsts
// channels last, where the host passes HW = 1).
extern "C" __global__ void copy_channels(const void* __restrict__ src, int src_format, void* __restrict__ dst,
                                         int dst_format, int n, int hw, int count, int src_c, int src_first,
                                         int dst_c, int dst_first, int vec) {
    if (vec) {
        copy_channels_body<4>(src, src_format, dst, dst_format, n, hw, count, src_c, src_first, dst_c, dst_first);
    } else {
        copy_channels_body<1>(src, src_format, dst, dst_format, n, hw, count, src_c, src_first, dst_c, dst_first);
    }
}

template <int V>
__device__ __forceinline__ void channel_shuffle_body(const void* __restrict__ x, int x_format, void* __restrict__ y,
                                                     int y_format, int c, int hw, int groups, int total) {
    const int e = (int)ferro_group_start<V>(total);  // below total, or -1
    if (e < 0) return;
    const int plane = e / hw;
    const int pos = e - plane * hw;
    const int img = plane / c;
    const int j = plane - img * c;
    const int per_group = c / groups;
    const int src_ch = (j % groups) * per_group + j / groups;
    move_values<V>(x, x_format, (img * c + src_ch) * hw + pos, y, y_format, e);
}

// PyTorch's channel_shuffle: output channel j = i * groups + g reads input channel
// g * (c / groups) + i. Its inverse is the same shuffle with c / groups groups. `vec` needs HW a
// multiple of 4 (a group of 4 values then lies in one plane).
extern "C" __global__ void channel_shuffle(const void* __restrict__ x, int x_format, void* __restrict__ y,
                                           int y_format, int c, int hw, int groups, int total, int vec) {
    if (vec) {
        channel_shuffle_body<4>(x, x_format, y, y_format, c, hw, groups, total);
    } else {
        channel_shuffle_body<1>(x, x_format, y, y_format, c, hw, groups, total);
    }
}
