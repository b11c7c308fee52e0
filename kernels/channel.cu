// Channel-axis data movement on [N, C, HW] tensors, one thread per element moved, each buffer in
// its stored format (kernels/stored.cuh): a move between equal formats copies the value exactly.
#include "common.cuh"
#include "stored.cuh"

// Copies channels [src_first, src_first + count) of src ([N, src_c, HW]) into channels
// [dst_first, dst_first + count) of dst ([N, dst_c, HW]). Concat is one launch per input, split
// one per output.
extern "C" __global__ void copy_channels(const void* __restrict__ src, int src_format, void* __restrict__ dst,
                                         int dst_format, int n, int hw,
                                         int count, int src_c, int src_first, int dst_c, int dst_first) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const int slab = count * hw;
    if (i >= n * slab) return;
    const int img = i / slab;
    const int within = i - img * slab;
    const int ch = within / hw;
    const int pos = within - ch * hw;
    const float v = ferro_load(src, (img * src_c + src_first + ch) * hw + pos, src_format);
    ferro_store(dst, (img * dst_c + dst_first + ch) * hw + pos, v, dst_format);
}

// PyTorch's channel_shuffle: output channel j = i * groups + g reads input channel
// g * (c / groups) + i. Its inverse is the same shuffle with c / groups groups.
extern "C" __global__ void channel_shuffle(const void* __restrict__ x, int x_format, void* __restrict__ y,
                                           int y_format, int c, int hw, int groups, int total) {
    const int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= total) return;
    const int plane = e / hw;
    const int pos = e - plane * hw;
    const int img = plane / c;
    const int j = plane - img * c;
    const int per_group = c / groups;
    const int src_ch = (j % groups) * per_group + j / groups;
    ferro_store(y, e, ferro_load(x, (img * c + src_ch) * hw + pos, x_format), y_format);
}
