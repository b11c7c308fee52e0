// Convolution kernels: the fp32 GEMMs of the convolution (conv_gemm.cuh's operands and bodies:
// activations in any stored format, accumulation in f32) on gemm_tile.cuh's SGEMM tiles, and the
// dedicated depthwise kernels.
#include "conv_gemm.cuh"

// Each GEMM comes as NAME (64x64 tiles), NAME_64x128 and NAME_128 (128x128), the host picks as
// for gemm.cu.
// The 64x64 ones promise three blocks per SM, as the split GEMMs (the geometry needs the registers
// a cap of 64 would spill), the data gradient's two (two image-major address computations, or the
// flipped weight's and the im2col gather's, spill at three's 80 registers); the 128x128 ones
// promise one, as gemm.cu's, the 64x128 ones two (one for the data gradient's columns, which
// spill at 128 registers).
#define CONV_SGEMM_KERNELS(NAME, KIND, MIN_BLOCKS, MIN_BLOCKS_WIDE)                                \
    GEMM_KERNEL(NAME, NAME##_body, CONV_##KIND##_PARAMS, CONV_##KIND##_ARGS, MIN_BLOCKS,        \
                     SgemmTile<64, 64>)                                                            \
    GEMM_KERNEL(NAME##_64x128, NAME##_body, CONV_##KIND##_PARAMS, CONV_##KIND##_ARGS,          \
                     MIN_BLOCKS_WIDE, SgemmTile<64, 128>)                                          \
    GEMM_KERNEL(NAME##_128, NAME##_body, CONV_##KIND##_PARAMS, CONV_##KIND##_ARGS, 1,          \
                     SgemmTile<128, 128>)
CONV_SGEMM_KERNELS(conv_forward_gemm, FORWARD, 3, 2)
CONV_SGEMM_KERNELS(conv_filter_gemm, FILTER, 3, 2)
CONV_SGEMM_KERNELS(conv_data_direct_gemm, DATA_DIRECT, 2, 2)
CONV_SGEMM_KERNELS(conv_pointwise_gemm, POINTWISE, 3, 2)
CONV_SGEMM_KERNELS(conv_pointwise_data_gemm, POINTWISE, 3, 2)

// The phase GEMM's body also needs the tile's width (its blocks past a phase's columns return).
GEMM_KERNEL(conv_data_phase_gemm, conv_data_phase_gemm_body, CONV_DATA_PHASE_PARAMS, CONV_DATA_PHASE_ARGS, 2,
                 SgemmTile<64, 64>, 64)
GEMM_KERNEL(conv_data_phase_gemm_64x128, conv_data_phase_gemm_body, CONV_DATA_PHASE_PARAMS,
                 CONV_DATA_PHASE_ARGS, 1, SgemmTile<64, 128>, 128)
GEMM_KERNEL(conv_data_phase_gemm_128, conv_data_phase_gemm_body, CONV_DATA_PHASE_PARAMS,
                 CONV_DATA_PHASE_ARGS, 1, SgemmTile<128, 128>, 128)

// The channels-last GEMMs (conv_gemm.cuh): forward and stride-1 data gradient share one body
// (an NHWC im2col times a packed weight), the weight gradient and the strided data gradient by
// phase. Blocks per SM as the NCHW data gradient's, the weight gradient's one fewer than its
// NCHW counterpart's (its two gathers' index arithmetic spills at three's 85 registers, and at
// two's 128 on the 64x128 tile).
CONV_SGEMM_KERNELS(conv_nhwc_gemm, NHWC, 2, 2)
CONV_SGEMM_KERNELS(conv_nhwc_filter_gemm, NHWC_FILTER, 2, 1)
CONV_SGEMM_KERNELS(conv_nhwc_data_phase_gemm, NHWC_DATA_PHASE, 2, 1)

// ---- The data gradient's weights packed as its GEMMs read them: each group's (and phase's)
// [C_in/g, K] matrix of GemmFlippedWeights or GemmPhaseWeights written densely, so the GEMM's
// every block reads it with 16-byte loads instead of gathering it from the filters. One thread
// per packed element of blockIdx.z's matrix; the grid covers the weight's elements, the threads
// past a smaller phase's return.

// Row c, column r of group blockIdx.z's flipped weight, at its place in `flipped` (K in the
// channels-last GEMM's order when channels_last).
extern "C" __global__ void pack_flipped_weights(float* __restrict__ flipped, const float* __restrict__ w,
                                                int cin, int cout, int taps, int channels_last) {
    int K = cout * taps;
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= cin * K) return;
    size_t group = (size_t)blockIdx.z * cin * K;
    GemmFlippedWeights weights{w + group, cin, cout, taps, channels_last};
    int c = idx / K;
    flipped[group + idx] = weights.at(c, idx - c * K);
}

// Row c, column r of group blockIdx.z / phases' weight of phase blockIdx.z % phases, at its place
// in `packed` (ConvPhase::taps_before; K in the channels-last GEMM's order when channels_last).
extern "C" __global__ void pack_phase_weights(float* __restrict__ packed, const float* __restrict__ w,
                                              int cin, int cout, int phases, int H, int W, int KH, int KW,
                                              int sh, int sw, int ph, int pw, int dh, int dw, int channels_last) {
    int group = blockIdx.z / phases;
    int p = blockIdx.z - group * phases;
    ConvPhase phase(p, H, W, KH, KW, sh, sw, ph, pw, dh, dw);
    int K = cout * phase.taps();
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= cin * K) return;
    size_t base = (size_t)group * cin * cout * KH * KW;
    GemmPhaseWeights weights{w + base, cin, KH, KW, phase, cout, channels_last};
    int c = idx / K;
    size_t before = (size_t)ConvPhase::taps_before(p, H, W, KH, KW, sh, sw, ph, pw, dh, dw) * cin * cout;
    packed[base + before + idx] = weights.at(c, idx - c * K);
}

// The output index along one axis whose tap `k` reads input index `i`, or -1 when none does
// (the stride skips it, or it falls outside the output).
__device__ __forceinline__ int conv_output_of_tap(int i, int k, int s, int p, int d, int out) {
    int t = i + p - k * d;
    if (t < 0 || t % s != 0) return -1;
    int o = t / s;
    return o < out ? o : -1;
}

// ---- Depthwise convolution (groups == C_in, C_out = multiplier * C_in): output channel co reads
// input channel co / multiplier through its own KH x KW filter. x and dy are read in their stored
// formats (kernels/stored.cuh), y written in x's and dx in dy's; the weight, bias and filter
// gradient are f32 and every sum is f32, rounded once as it is stored. These three kernels, one
// thread per element (one block per tap for the filter gradient), take any geometry; the host
// runs them only where the tiled kernels below would need more shared memory than a block may
// take.

// One thread per output element.
extern "C" __global__ void depthwise_forward(const void* __restrict__ x, int x_format, const float* __restrict__ w,
                                             const float* __restrict__ bias, void* __restrict__ y, int y_format,
                                             int N, int C, int H, int W, int mult, int KH, int KW,
                                             int sh, int sw, int ph, int pw, int dh, int dw, int OH,
                                             int OW, int has_bias) {
    int C_out = C * mult;
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= N * C_out * OH * OW) return;
    int ow = idx % OW;
    int oh = (idx / OW) % OH;
    int co = (idx / (OW * OH)) % C_out;
    int n = idx / (OW * OH * C_out);
    long long plane = ((long long)n * C + co / mult) * H * W;
    const float* filt = w + (size_t)co * KH * KW;
    float sum = has_bias ? bias[co] : 0.f;
    for (int ki = 0; ki < KH; ++ki) {
        int ih = oh * sh - ph + ki * dh;
        if (ih < 0 || ih >= H) continue;
        for (int kj = 0; kj < KW; ++kj) {
            int iw = ow * sw - pw + kj * dw;
            if (iw < 0 || iw >= W) continue;
            sum = fmaf(ferro_load(x, plane + ih * W + iw, x_format), filt[ki * KW + kj], sum);
        }
    }
    ferro_store(y, idx, sum, y_format);
}

// One thread per input element: gathers dy over every (output channel of its group, tap, output
// position) that read it.
extern "C" __global__ void depthwise_backward_data(const void* __restrict__ dy, int dy_format,
                                                   const float* __restrict__ w, void* __restrict__ dx,
                                                   int dx_format, int N, int C, int H, int W, int mult, int KH,
                                                   int KW, int sh, int sw, int ph, int pw, int dh,
                                                   int dw, int OH, int OW) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= N * C * H * W) return;
    int iw = idx % W;
    int ih = (idx / W) % H;
    int c = (idx / (W * H)) % C;
    int n = idx / (W * H * C);
    float sum = 0.f;
    for (int m = 0; m < mult; ++m) {
        int co = c * mult + m;
        long long grad = ((long long)n * C * mult + co) * OH * OW;
        const float* filt = w + (size_t)co * KH * KW;
        for (int ki = 0; ki < KH; ++ki) {
            int oh = conv_output_of_tap(ih, ki, sh, ph, dh, OH);
            if (oh < 0) continue;
            for (int kj = 0; kj < KW; ++kj) {
                int ow = conv_output_of_tap(iw, kj, sw, pw, dw, OW);
                if (ow < 0) continue;
                sum = fmaf(ferro_load(dy, grad + oh * OW + ow, dy_format), filt[ki * KW + kj], sum);
            }
        }
    }
    ferro_store(dx, idx, sum, dx_format);
}

// ---- The tiled depthwise kernels: a block of 8 warps computes a tile of one plane 32 columns
// wide (a lane per column, so its loads and stores are row segments), after copying the window
// of the plane its tile reads into shared memory once, widened to f32. The per-element kernels
// above read each input value once per tap that reaches it (9 or 25 times for 3x3 or 5x5, each a
// partly used row of sectors), and the per-tap filter gradient reads dy and x once per tap; these
// read them about once. The host sizes the windows (PH x PW, passed in) and falls back to the
// per-element kernels when they would not fit in shared memory.
//
// The forward and data-gradient kernels come as NAME, a warp per row of an 8 x 32 tile and a
// value per thread, and NAME_vec4, which the host runs where the rows they write are whole quads
// (OW or W % 4 == 0) in a 16-byte aligned buffer: a warp per 4 rows of a 32 x 32 tile, each
// thread summing its column of them (the window read as NAME reads it, a lane per column, so
// without bank conflicts; each filter tap loaded once for 4 outputs), staging its 4 sums in
// shared memory and storing 4 consecutive outputs of one row in one access (16 bytes of f32, 8
// of 16-bit values), after its warp's other lanes staged them.
//
// With `vec` (the host's promise that the plane's rows are whole quads, W % 4 == 0, and the
// buffer 16-byte aligned) a window starts at the column left of its first one that is a multiple
// of 4, and PW (a multiple of 4, 3 columns wider than the window needs) holds whole quads: each
// is one load of 4 values (16 bytes of f32, 8 of 16-bit values) and one 16-byte shared store, in
// the plane or in the padding entirely, as the rows start at multiples of 4. The kernels declare
// their shared memory 16-byte aligned for those stores (a float array need only be 4-aligned).
#define DW_TILE_ROWS 8
#define DW_TILE_COLS 32
// Floats the _vec4 kernels stage their sums in, before their windows: a warp's 4 rows of 32.
#define DW_STAGED (DW_TILE_ROWS * 4 * DW_TILE_COLS)

// a / b rounded down (b > 0), for indices that may start left of 0.
__device__ __forceinline__ int dw_floor_div(int a, int b) { return a >= 0 ? a / b : -((b - 1 - a) / b); }

// The first column a window whose first needed column is iw0 holds.
__device__ __forceinline__ int dw_window_start(int iw0, int vec) { return vec ? iw0 & ~3 : iw0; }

// The block copies `count` PH x PW windows, window k from the H x W plane at element
// first + k * H * W of `src`, rows from ih0 and columns from iw0 (dw_window_start's), into
// consecutive windows of `patch`, zero outside the plane.
__device__ __forceinline__ void dw_load_windows(float* patch, const void* src, int format, long long first, int count,
                                                int H, int W, int ih0, int iw0, int PH, int PW, int vec) {
    int plane = H * W;
    if (vec) {
        int quads = PW / 4;
        int window = PH * quads;
        for (int i = threadIdx.x; i < count * window; i += blockDim.x) {
            int k = i / window;
            int r = (i - k * window) / quads;
            int ih = ih0 + r;
            int iw = iw0 + 4 * (i - k * window - r * quads);
            float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
            if (ih >= 0 && ih < H && iw >= 0 && iw < W) v = ferro_load4(src, first + (long long)k * plane + ih * W + iw, format);
            reinterpret_cast<float4*>(patch)[i] = v;
        }
        return;
    }
    int window = PH * PW;
    for (int i = threadIdx.x; i < count * window; i += blockDim.x) {
        int k = i / window;
        int r = (i - k * window) / PW;
        int ih = ih0 + r;
        int iw = iw0 + i - k * window - r * PW;
        bool inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
        patch[i] = inside ? ferro_load(src, first + (long long)k * plane + ih * W + iw, format) : 0.f;
    }
}

// Stores the thread's Q sums, rows r0 + Q * warp + k (k < Q) of column c0 + lane, into the
// R x S plane at element `first` of dst, those inside it. With Q = 4 through the warp's 128
// floats of `staged`: every lane of the warp takes part (none may have returned), and R x S's
// rows are whole quads.
template <int Q>
__device__ __forceinline__ void dw_store_tile(void* dst, int format, float* staged, long long first, int R, int S,
                                              int r0, int c0, const float (&sum)[Q]) {
    int warp = threadIdx.x / DW_TILE_COLS;
    int lane = threadIdx.x % DW_TILE_COLS;
    if constexpr (Q == 1) {
        int r = r0 + warp;
        int c = c0 + lane;
        if (r < R && c < S) ferro_store(dst, first + (long long)r * S + c, sum[0], format);
    } else {
        static_assert(Q == 4, "the staged store moves quads");
        float* mine = staged + warp * 4 * DW_TILE_COLS;
        for (int k = 0; k < 4; ++k) mine[k * DW_TILE_COLS + lane] = sum[k];
        __syncwarp();
        // Lane l takes row l / 8 of the warp's 4, columns 4 * (l % 8) .. + 3: one 16-byte read
        // of the staged rows, consecutive across the warp.
        float4 v = reinterpret_cast<const float4*>(mine)[lane];
        int r = r0 + 4 * warp + lane / 8;
        int c = c0 + 4 * (lane % 8);
        if (r < R && c < S) ferro_store4(dst, first + (long long)r * S + c, v, format);
    }
}

// Output tile (blockIdx.x: plane n * C_out + co, then tile) of y, 8 * Q rows. The patch holds
// the input window at ih = oh0 * sh - ph + r, iw = dw_window_start(ow0 * sw - pw) + c, zero in
// the padding: PH = (8 * Q - 1) * sh + (KH - 1) * dh + 1 rows, PW = 31 * sw + (KW - 1) * dw + 1
// columns (or more, with vec).
template <int Q>
__device__ __forceinline__ void depthwise_forward_tile(const void* __restrict__ x, int x_format, const float* __restrict__ w,
                                                       const float* __restrict__ bias, void* __restrict__ y, int y_format,
                                                       int C, int H, int W, int mult, int KH, int KW, int sh, int sw,
                                                       int ph, int pw, int dh, int dw, int OH, int OW, int has_bias,
                                                       int PH, int PW, int vec) {
    extern __shared__ __align__(16) float smem[];
    float* patch = smem + (Q == 1 ? 0 : DW_STAGED);
    const int rows = DW_TILE_ROWS * Q;
    int C_out = C * mult;
    int tiles_w = (OW + DW_TILE_COLS - 1) / DW_TILE_COLS;
    int tiles = tiles_w * ((OH + rows - 1) / rows);
    int plane = blockIdx.x / tiles;
    int tile = blockIdx.x - plane * tiles;
    int co = plane % C_out;
    int n = plane / C_out;
    int oh0 = tile / tiles_w * rows;
    int ow0 = tile % tiles_w * DW_TILE_COLS;
    int iw0 = ow0 * sw - pw;
    int start = dw_window_start(iw0, vec);
    dw_load_windows(patch, x, x_format, ((long long)n * C + co / mult) * H * W, 1, H, W, oh0 * sh - ph, start, PH, PW, vec);
    __syncthreads();
    int ty = Q * (threadIdx.x / DW_TILE_COLS);
    int tx = threadIdx.x % DW_TILE_COLS;
    float sum[Q];
    for (int k = 0; k < Q; ++k) sum[k] = 0.f;
    // Threads whose rows all lie below the plane, or whose column right of it, sum nothing (their
    // window reads would stay inside the patch, but their loads of the filter would be wasted).
    if (oh0 + ty < OH && ow0 + tx < OW) {
        const float* filt = w + (size_t)co * KH * KW;
        if (has_bias) {
            float b = bias[co];
            for (int k = 0; k < Q; ++k) sum[k] = b;
        }
        for (int ki = 0; ki < KH; ++ki) {
            const float* row = patch + (ty * sh + ki * dh) * PW + tx * sw + iw0 - start;
            for (int kj = 0; kj < KW; ++kj) {
                float f = filt[ki * KW + kj];
                for (int k = 0; k < Q; ++k) sum[k] = fmaf(row[k * sh * PW + kj * dw], f, sum[k]);
            }
        }
    }
    dw_store_tile<Q>(y, y_format, smem, (long long)plane * OH * OW, OH, OW, oh0, ow0, sum);
}

#define DEPTHWISE_FORWARD_TILED(NAME, Q)                                                                       \
    extern "C" __global__ void __launch_bounds__(DW_TILE_ROWS * DW_TILE_COLS)                                 \
        NAME(const void* __restrict__ x, int x_format, const float* __restrict__ w,                          \
             const float* __restrict__ bias, void* __restrict__ y, int y_format, int N, int C, int H, int W,  \
             int mult, int KH, int KW, int sh, int sw, int ph, int pw, int dh, int dw, int OH, int OW,       \
             int has_bias, int PH, int PW, int vec) {                                                        \
        depthwise_forward_tile<Q>(x, x_format, w, bias, y, y_format, C, H, W, mult, KH, KW, sh, sw, ph, pw, dh, \
                                  dw, OH, OW, has_bias, PH, PW, vec);                                          \
    }
DEPTHWISE_FORWARD_TILED(depthwise_forward_tiled, 1)
DEPTHWISE_FORWARD_TILED(depthwise_forward_tiled_vec4, 4)

// Input-gradient tile (blockIdx.x: plane n * C + c, then tile) of dx, 8 * Q rows. The patches
// hold, for each of the channel's `mult` output channels, the dy window the tile's taps reach:
// rows from oh_lo = floor((ih0 + ph - (KH - 1) * dh) / sh), PH = (8 * Q - 1 + (KH - 1) * dh) / sh
// + 2 of them, and columns likewise from dw_window_start(ow_lo) (PW = (31 + (KW - 1) * dw) / sw
// + 2, or more with vec), zero outside dy.
template <int Q>
__device__ __forceinline__ void depthwise_backward_data_tile(const void* __restrict__ dy, int dy_format,
                                                             const float* __restrict__ w, void* __restrict__ dx,
                                                             int dx_format, int C, int H, int W, int mult, int KH,
                                                             int KW, int sh, int sw, int ph, int pw, int dh, int dw,
                                                             int OH, int OW, int PH, int PW, int vec) {
    extern __shared__ __align__(16) float smem[];
    float* patch = smem + (Q == 1 ? 0 : DW_STAGED);
    const int rows = DW_TILE_ROWS * Q;
    int tiles_w = (W + DW_TILE_COLS - 1) / DW_TILE_COLS;
    int tiles = tiles_w * ((H + rows - 1) / rows);
    int plane = blockIdx.x / tiles;
    int tile = blockIdx.x - plane * tiles;
    int c = plane % C;
    int ih0 = tile / tiles_w * rows;
    int iw0 = tile % tiles_w * DW_TILE_COLS;
    int oh_lo = dw_floor_div(ih0 + ph - (KH - 1) * dh, sh);
    int ow_lo = dw_window_start(dw_floor_div(iw0 + pw - (KW - 1) * dw, sw), vec);
    // The channel's output planes are consecutive: n * C * mult + c * mult + m = plane * mult + m.
    dw_load_windows(patch, dy, dy_format, (long long)plane * mult * OH * OW, mult, OH, OW, oh_lo, ow_lo, PH, PW, vec);
    __syncthreads();
    int ih = ih0 + Q * (threadIdx.x / DW_TILE_COLS);
    int iw = iw0 + threadIdx.x % DW_TILE_COLS;
    float sum[Q];
    for (int k = 0; k < Q; ++k) sum[k] = 0.f;
    if (ih < H && iw < W) {
        int window = PH * PW;
        for (int m = 0; m < mult; ++m) {
            const float* filt = w + ((size_t)c * mult + m) * KH * KW;
            const float* p = patch + m * window;
            for (int ki = 0; ki < KH; ++ki) {
                // The patch row tap ki reads for each of the thread's rows, or -1 where the
                // stride skips it.
                int row[Q];
                bool any = false;
                for (int k = 0; k < Q; ++k) {
                    int t = ih + k + ph - ki * dh;
                    row[k] = t < 0 || t % sh != 0 ? -1 : (t / sh - oh_lo) * PW;
                    any |= row[k] >= 0;
                }
                if (!any) continue;
                for (int kj = 0; kj < KW; ++kj) {
                    int u = iw + pw - kj * dw;
                    if (u < 0 || u % sw != 0) continue;
                    float f = filt[ki * KW + kj];
                    for (int k = 0; k < Q; ++k) {
                        if (row[k] >= 0) sum[k] = fmaf(p[row[k] + u / sw - ow_lo], f, sum[k]);
                    }
                }
            }
        }
    }
    dw_store_tile<Q>(dx, dx_format, smem, (long long)plane * H * W, H, W, ih0, iw0, sum);
}

#define DEPTHWISE_BACKWARD_DATA_TILED(NAME, Q)                                                                 \
    extern "C" __global__ void __launch_bounds__(DW_TILE_ROWS * DW_TILE_COLS)                                 \
        NAME(const void* __restrict__ dy, int dy_format, const float* __restrict__ w, void* __restrict__ dx,  \
             int dx_format, int N, int C, int H, int W, int mult, int KH, int KW, int sh, int sw, int ph,     \
             int pw, int dh, int dw, int OH, int OW, int PH, int PW, int vec) {                              \
        depthwise_backward_data_tile<Q>(dy, dy_format, w, dx, dx_format, C, H, W, mult, KH, KW, sh, sw, ph, pw, \
                                        dh, dw, OH, OW, PH, PW, vec);                                          \
    }
DEPTHWISE_BACKWARD_DATA_TILED(depthwise_backward_data_tiled, 1)
DEPTHWISE_BACKWARD_DATA_TILED(depthwise_backward_data_tiled_vec4, 4)

// Filter-gradient partial sums (blockIdx.x: output channel co, then chunk of images): over the
// chunk's images and output tiles, every tap's dy[n][co][oh][ow] * x[n][co / mult][ih][iw],
// with the tile's input window in shared memory as depthwise_forward_tiled holds it (PH x PW;
// two buffers, alternate tiles, so one barrier per tile orders both the window's writes before
// its reads and the reads of the window two tiles back before its overwrite) and each thread's
// running sum of each tap in its own column of `acc` (taps x blockDim.x),
// summed over the block at the end into out[(chunk * C_out + co) * taps + tap]. The host sums
// the chunks (splitk_reduce) when there are several.
extern "C" __global__ void __launch_bounds__(DW_TILE_ROWS * DW_TILE_COLS)
    depthwise_backward_filter_tiled(const void* __restrict__ x, int x_format, const void* __restrict__ dy,
                                    int dy_format, float* __restrict__ out, int N, int C, int H, int W, int mult,
                                    int KH, int KW, int sh, int sw, int ph, int pw, int dh, int dw,
                                    int OH, int OW, int PH, int PW, int vec, int chunks) {
    extern __shared__ __align__(16) float smem[];
    __shared__ float scratch[33];
    int taps = KH * KW;
    float* acc = smem;
    float* windows = smem + taps * blockDim.x;
    int C_out = C * mult;
    int co = blockIdx.x / chunks;
    int chunk = blockIdx.x - co * chunks;
    int per_chunk = (N + chunks - 1) / chunks;
    int n_begin = chunk * per_chunk;
    int n_end = min(N, n_begin + per_chunk);
    for (int t = 0; t < taps; ++t) acc[t * blockDim.x + threadIdx.x] = 0.f;
    int tiles_w = (OW + DW_TILE_COLS - 1) / DW_TILE_COLS;
    int tiles = tiles_w * ((OH + DW_TILE_ROWS - 1) / DW_TILE_ROWS);
    int ty = threadIdx.x / DW_TILE_COLS;
    int tx = threadIdx.x % DW_TILE_COLS;
    for (int job = n_begin * tiles; job < n_end * tiles; ++job) {
        int n = job / tiles;
        int tile = job - n * tiles;
        int oh0 = tile / tiles_w * DW_TILE_ROWS;
        int ow0 = tile % tiles_w * DW_TILE_COLS;
        int iw0 = ow0 * sw - pw;
        int start = dw_window_start(iw0, vec);
        float* patch = windows + (job & 1) * PH * PW;
        dw_load_windows(patch, x, x_format, ((long long)n * C + co / mult) * H * W, 1, H, W, oh0 * sh - ph, start, PH, PW, vec);
        __syncthreads();
        int oh = oh0 + ty;
        int ow = ow0 + tx;
        if (oh < OH && ow < OW) {
            float g = ferro_load(dy, (((long long)n * C_out + co) * OH + oh) * OW + ow, dy_format);
            for (int ki = 0; ki < KH; ++ki) {
                const float* row = patch + (ty * sh + ki * dh) * PW + tx * sw + iw0 - start;
                for (int kj = 0; kj < KW; ++kj) {
                    float* a = &acc[(ki * KW + kj) * blockDim.x + threadIdx.x];
                    *a = fmaf(g, row[kj * dw], *a);
                }
            }
        }
    }
    for (int t = 0; t < taps; ++t) {
        float total = ferro_block_sum(acc[t * blockDim.x + threadIdx.x], scratch);
        if (threadIdx.x == 0) out[((size_t)chunk * C_out + co) * taps + t] = total;
    }
}

// dw[co][ki][kj] = sum over n, oh, ow of dy[n][co][oh][ow] * x[n][co / mult][ih][iw]. One block of
// up to 256 threads per filter tap; overwrites dw.
extern "C" __global__ void __launch_bounds__(256)
    depthwise_backward_filter(const void* __restrict__ x, int x_format, const void* __restrict__ dy, int dy_format,
                              float* __restrict__ dw_out, int N, int C, int H, int W, int mult,
                              int KH, int KW, int sh, int sw, int ph, int pw, int dh, int dw, int OH,
                              int OW) {
    __shared__ float scratch[33];
    int tap = blockIdx.x;
    int kj = tap % KW;
    int ki = (tap / KW) % KH;
    int co = tap / (KW * KH);
    int C_out = C * mult;
    int ci = co / mult;
    int positions = OH * OW;
    float sum = 0.f;
    for (int idx = threadIdx.x; idx < N * positions; idx += blockDim.x) {
        int n = idx / positions;
        int p = idx - n * positions;
        int oh = p / OW;
        int ow = p - oh * OW;
        int ih = oh * sh - ph + ki * dh;
        int iw = ow * sw - pw + kj * dw;
        if (ih >= 0 && ih < H && iw >= 0 && iw < W) {
            sum = fmaf(ferro_load(dy, ((long long)n * C_out + co) * positions + p, dy_format),
                       ferro_load(x, (((long long)n * C + ci) * H + ih) * W + iw, x_format), sum);
        }
    }
    float total = ferro_block_sum(sum, scratch);
    if (threadIdx.x == 0) dw_out[tap] = total;
}
