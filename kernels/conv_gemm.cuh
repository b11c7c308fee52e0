// The convolution GEMMs shared by the fp32 kernels (conv.cu, on gemm_tile.cuh's SGEMM tiles) and
// the tensor-core ones (conv_tc.cu, on tc_gemm_tile.cuh's): the operands that read NCHW tensors in
// place (the input's im2col matrix gathered on the fly, never stored; NCHW activations as
// [channels, images * OH * OW] matrices; the weight flipped, or one stride phase's taps of it, for
// the data gradient), and each GEMM's body, written once over a tile engine `Tile`. The
// activations of either layout (x, dy, y, dx) are each read or written in their own stored format
// (f32, or a 16-bit run's bf16/fp16: in place, y in x's format and dx in dy's); the weights, dW
// and the split-K partial products are f32.
// Tile::template run<A_IN_K, B_IN_K>(a, b, out, M, N, k_begin, k_end, 1, 0, vec_a, vec_b, vec_out)
// computes blockIdx's tile of out = op(A) op(B) over k_begin <= k < k_end (alpha 1, beta 0).
// The gathered im2col layout is the one fixed in src/ops/conv/mod.rs: row (c * KH + ki) * KW +
// kj, column n * OH * OW + oh * OW + ow.
#pragma once
#include "gemm_tile.cuh"

// The arguments every convolution GEMM starts with, and where it writes. blockIdx.z = group *
// splits + split; the block sums its tile over K-slice `split` (the whole K when splits == 1).
// Unsplit, C of group g goes to `out` (stored as out_format: a 16-bit run's activations) + g *
// out_group as GemmOutStored (out_plane, out_image) places it, plus the group's values of `bias`
// when not null (the forward's: per row of an NCHW output, BIAS_ROWS, whose rows are channels;
// per column of an NHWC one) before its one rounding; split, the plain partial product goes to
// partial matrix blockIdx.z (M x N, row-major, f32) for splitk_reduce (gemm.cu) to sum, bias and
// store. vec_out allows 4-value stores to whichever is written.
#define CONV_GEMM_PARAMS                                                                          \
    void *out, int out_format, const float *bias, float *partial, int M, int N, int K, int splits, \
        int k_per_split, long long out_group, int out_plane, long long out_image, int vec_out
#define CONV_GEMM_ARGS                                                                            \
    out, out_format, bias, partial, M, N, K, splits, k_per_split, out_group, out_plane, out_image, vec_out
#define CONV_GEMM_SETUP(BIAS_ROWS)                                                                \
    int group = blockIdx.z / splits;                                                              \
    int k_begin = (blockIdx.z - group * splits) * k_per_split;                                    \
    int k_end = min(K, k_begin + k_per_split);                                                    \
    GemmOutStored dest =                                                                          \
        splits > 1 ? GemmOutStored{partial + (size_t)blockIdx.z * M * N, N, 0, FERRO_F32, nullptr, 0} \
                   : GemmOutStored{const_cast<void*>(gemm_stored_at(out, group * out_group, out_format)), out_plane, \
                                   out_image, out_format, bias ? bias + (size_t)group * (BIAS_ROWS ? M : N) : nullptr, \
                                   BIAS_ROWS};
// The window geometry of an im2col operand (GemmIm2col's fields after the input and its format).
#define CONV_WINDOW_PARAMS                                                                        \
    int H, int W, int KH, int KW, int sh, int sw, int ph, int pw, int dh, int dw, int OW, int plane, \
        long long x_image
#define CONV_WINDOW H, W, KH, KW, sh, sw, ph, pw, dh, dw, OW, plane, x_image

// The data gradient of a stride-1 convolution is itself a convolution: dy convolved with the
// window reversed and the weight transposed (the columns of W_g^T x dy would overlap, which
// col2im sums). Row c, column (o * KH + ki) * KW + kj of that weight holds
// W[o][c][KH-1-ki][KW-1-kj] of W [C_out/g, C_in/g, KH, KW]. Read in place, a warp's 16-deep
// slice of it would scatter over several output channels' filters, so pack_flipped_weights
// (conv.cu) packs it once per pass into a dense [C_in/g, C_out/g * KH * KW] matrix per group,
// which the GEMM reads with 16-byte loads.
// The channels-last stride-1 data gradient reads it with the output channel innermost: there
// column (ki * KW + kj) * C_out/g + o holds W[o][c][KH-1-ki][KW-1-kj].
struct GemmFlippedWeights {
    static constexpr bool vectorizable = false;
    const float* w;
    int cin;
    int cout;
    int taps;
    int channels_last;
    __device__ __forceinline__ float at(int c, int r) const {
        int o, tap;
        if (channels_last) {
            tap = r / cout;
            o = r - tap * cout;
        } else {
            o = r / taps;
            tap = r - o * taps;
        }
        return w[((size_t)o * cin + c) * taps + (taps - 1 - tap)];
    }
};

// The data gradient of a strided convolution by output phase (as CUTLASS's strided dgrad): the
// input positions ih = rh + sh * a of one row phase rh are reached only by the taps ki with
// ih + ph - ki * dh a multiple of sh, which form the progression ki_first + t * step (step =
// sh / gcd(sh, dh)), each reading dy row oh = a + offset - t * advance. So each of the sh * sw
// phases of dx is a GEMM over its own taps only, and no multiply-add is spent on taps whose
// offset the stride does not divide.
struct ConvPhaseAxis {
    int first;    // first tap of the phase (meaningless when taps == 0)
    int step;     // tap index step between the phase's taps
    int taps;     // taps of the window that reach this phase
    int offset;   // dy index minus phase index a for the first tap
    int advance;  // how much the dy index drops per later tap
    int size;     // phase positions inside the input: ceil((extent - phase) / stride)
    int phase;
    int stride;

    __device__ __forceinline__ ConvPhaseAxis(int r, int extent, int k, int s, int p, int d) {
        phase = r;
        stride = s;
        int g = s, b = d;
        while (b != 0) {
            int t = g % b;
            g = b;
            b = t;
        }
        step = s / g;
        first = -1;
        for (int t = 0; t < step && t < k; ++t)
            if ((r + p - t * d) % s == 0) {
                first = t;
                break;
            }
        taps = first < 0 ? 0 : (k - 1 - first) / step + 1;
        offset = first < 0 ? 0 : (r + p - first * d) / s;
        advance = step * d / s;
        size = r < extent ? (extent - r + s - 1) / s : 0;
    }
};

// Block z of the launch: group * phases + phase, phase = rh * sw + rw. Its GEMM's K index r is
// (o * h.taps + t) * w.taps + u (output channel o, the phase's t-th row tap and u-th column tap)
// and its column index image * plane + a * w.size + b (dx pixel (h.phase + a * sh,
// w.phase + b * sw) of that image).
struct ConvPhase {
    ConvPhaseAxis h, w;
    __device__ __forceinline__ ConvPhase(int phase, int H, int W, int KH, int KW, int sh, int sw, int ph,
                                         int pw, int dh, int dw)
        : h(phase / sw, H, KH, sh, ph, dh), w(phase % sw, W, KW, sw, pw, dw) {}
    __device__ __forceinline__ int taps() const { return h.taps * w.taps; }
    // Where phase `p`'s block starts in pack_phase_weights' packing of one group, in units of
    // C_in/g x C_out/g: the taps of the phases before it (every tap reaches exactly one phase,
    // so the packing is as large as the weight).
    static __device__ __forceinline__ int taps_before(int p, int H, int W, int KH, int KW, int sh, int sw,
                                                      int ph, int pw, int dh, int dw) {
        int taps = 0;
        for (int q = 0; q < p; ++q) taps += ConvPhase(q, H, W, KH, KW, sh, sw, ph, pw, dh, dw).taps();
        return taps;
    }
    __device__ __forceinline__ int plane() const { return h.size * w.size; }
    __device__ __forceinline__ void tap_of(int r, int& o, int& t, int& u) const {
        int per_channel = taps();
        o = r / per_channel;
        int tap = r - o * per_channel;
        t = tap / w.taps;
        u = tap - t * w.taps;
    }
    // The channels-last phase GEMMs' K order, the output channel innermost: r = (t * w.taps +
    // u) * cout + o.
    __device__ __forceinline__ void tap_of_channels_last(int r, int cout, int& o, int& t, int& u) const {
        int tap = r / cout;
        o = r - tap * cout;
        t = tap / w.taps;
        u = tap - t * w.taps;
    }
    __device__ __forceinline__ void pixel_of(int c, int& image, int& a, int& b) const {
        int per_image = plane();
        image = c / per_image;
        int q = c - image * per_image;
        a = q / w.size;
        b = q - a * w.size;
    }
};

// A phase's weight [C_in/g, C_out/g * taps]: row c, column r = (o, t, u) (or (t, u, o) for the
// channels-last GEMM) holds W[o][c][h.first + t * h.step][w.first + u * w.step]. pack_phase_weights (conv.cu) packs every
// phase's densely, one after the other (ConvPhase::taps_before), for the phase GEMM's 16-byte
// loads.
struct GemmPhaseWeights {
    static constexpr bool vectorizable = false;
    const float* w;
    int cin, KH, KW;
    ConvPhase phase;
    int cout;
    int channels_last;  // K in the channels-last phase GEMM's order (tap_of_channels_last)
    __device__ __forceinline__ float at(int c, int r) const {
        int o, t, u;
        if (channels_last)
            phase.tap_of_channels_last(r, cout, o, t, u);
        else
            phase.tap_of(r, o, t, u);
        int ki = phase.h.first + t * phase.h.step;
        int kj = phase.w.first + u * phase.w.step;
        return w[(((size_t)o * cin + c) * KH + ki) * KW + kj];
    }
};

// The phase's gather of dy [C_out/g * taps, images * phase plane]: row (o, t, u), column
// (image, a, b) holds dy[image][o][a + h.offset - t * h.advance][b + w.offset - u * w.advance],
// 0 outside dy; dy stored as `format`.
struct GemmPhaseGather {
    static constexpr bool vectorizable = false;
    const void* dy;
    int format;
    int OH, OW;
    long long image_stride;
    ConvPhase phase;
    __device__ __forceinline__ float at(int r, int c) const {
        int o, t, u, image, a, b;
        phase.tap_of(r, o, t, u);
        phase.pixel_of(c, image, a, b);
        int oh = a + phase.h.offset - t * phase.h.advance;
        int ow = b + phase.w.offset - u * phase.w.advance;
        if (oh < 0 || oh >= OH || ow < 0 || ow >= OW) return 0.f;
        return ferro_load(dy, image * image_stride + ((long long)o * OH + oh) * OW + ow, format);
    }
};

// Where a phase's dx tile goes: (c, (image, a, b)) at
// dx[image][c][h.phase + a * sh][w.phase + b * sw]; dx stored as `format`, through
// gemm_store_stored (no bias).
struct GemmPhaseOut {
    static constexpr bool stored = true;
    static constexpr const float* bias = nullptr;
    static constexpr int bias_rows = 0;
    void* base;
    int format;
    int H, W;
    long long image_stride;
    ConvPhase phase;
    __device__ __forceinline__ long long index(int c, int col) const {
        int image, a, b;
        phase.pixel_of(col, image, a, b);
        int ih = phase.h.phase + a * phase.h.stride;
        int iw = phase.w.phase + b * phase.w.stride;
        return image * image_stride + ((long long)c * H + ih) * W + iw;
    }
};

// ---- The GEMM bodies. Each kernel's parameter list is its *_PARAMS macro, and its body passes
// them on in that order (*_ARGS).

// Forward: y_g [C_out/g, n * OH * OW] = W_g [C_out/g, K] x im2col(x)_g (+ the bias per row),
// written into NCHW y.
#define CONV_FORWARD_PARAMS                                                                       \
    CONV_GEMM_PARAMS, const float *w, const void *x, int x_format, long long w_group,             \
        long long x_group, CONV_WINDOW_PARAMS, int vec_w
#define CONV_FORWARD_ARGS CONV_GEMM_ARGS, w, x, x_format, w_group, x_group, CONV_WINDOW, vec_w
template <class Tile>
__device__ __forceinline__ void conv_forward_gemm_body(CONV_FORWARD_PARAMS) {
    CONV_GEMM_SETUP(1)
    GemmDense a{w + group * w_group, K};
    GemmIm2col b{gemm_stored_at(x, group * x_group, x_format), x_format, CONV_WINDOW};
    Tile::template run<true, false>(a, b, dest, M, N, k_begin, k_end, 1.f, 0.f, vec_w, 0, vec_out);
}

// Weight gradient: dW_g [C_out/g, K] = dy_g [C_out/g, n * OH * OW] x im2col(x)_g^T, dy read in
// place from NCHW.
#define CONV_FILTER_PARAMS                                                                        \
    CONV_GEMM_PARAMS, const void *dy, int dy_format, const void *x, int x_format, long long dy_group, \
        long long dy_image, long long x_group, CONV_WINDOW_PARAMS, int vec_dy
#define CONV_FILTER_ARGS                                                                          \
    CONV_GEMM_ARGS, dy, dy_format, x, x_format, dy_group, dy_image, x_group, CONV_WINDOW, vec_dy
template <class Tile>
__device__ __forceinline__ void conv_filter_gemm_body(CONV_FILTER_PARAMS) {
    CONV_GEMM_SETUP(0)
    GemmImageMajor a{gemm_stored_at(dy, group * dy_group, dy_format), dy_format, plane, dy_image};
    GemmIm2col b{gemm_stored_at(x, group * x_group, x_format), x_format, CONV_WINDOW};
    Tile::template run<true, true>(a, b, dest, M, N, k_begin, k_end, 1.f, 0.f, vec_dy, 0, vec_out);
}

// Data gradient of a stride-1 convolution: dx_g [C_in/g, n * H * W] = flipped W_g^T x
// im2col(dy)_g with the reversed window (stride 1, padding dilation * (kernel - 1) - padding),
// written into NCHW dx: no columns, no col2im.
// `flipped` is pack_flipped_weights' packing of the weight.
#define CONV_DATA_DIRECT_PARAMS                                                                   \
    CONV_GEMM_PARAMS, const float *flipped, const void *dy, int dy_format, long long w_group,     \
        long long dy_group, CONV_WINDOW_PARAMS, int vec_w
#define CONV_DATA_DIRECT_ARGS CONV_GEMM_ARGS, flipped, dy, dy_format, w_group, dy_group, CONV_WINDOW, vec_w
template <class Tile>
__device__ __forceinline__ void conv_data_direct_gemm_body(CONV_DATA_DIRECT_PARAMS) {
    CONV_GEMM_SETUP(0)
    GemmDense a{flipped + group * w_group, K};
    GemmIm2col b{gemm_stored_at(dy, group * dy_group, dy_format), dy_format, CONV_WINDOW};
    Tile::template run<true, false>(a, b, dest, M, N, k_begin, k_end, 1.f, 0.f, vec_w, 0, vec_out);
}

// Data gradient of a strided convolution: per group and phase, dx_phase [C_in/g, n * phase
// plane] = phase weights x phase gather of dy, written into NCHW dx (in dy's stored format). One launch for every group
// and phase (blockIdx.z); the grid covers the largest phase, the blocks past a smaller phase's
// columns return. A phase no tap reaches (a 1x1 stride-2 convolution's odd rows) gets zeros.
// `packed` is pack_phase_weights' packing of the weight.
#define CONV_DATA_PHASE_PARAMS                                                                    \
    void *dx, int dx_format, const float *packed, const void *dy, int dy_format, int M, int images, \
        int phases, long long w_group, long long dy_group, long long dx_group, int cout, int H,     \
        int W, int KH, int KW, int sh, int sw, int ph, int pw, int dh, int dw, int OH, int OW,     \
        long long dy_image, long long dx_image, int vec_w
#define CONV_DATA_PHASE_ARGS                                                                      \
    dx, dx_format, packed, dy, dy_format, M, images, phases, w_group, dy_group, dx_group, cout, H, \
        W, KH, KW, sh, sw, ph, pw, dh, dw, OH, OW, dy_image, dx_image, vec_w
template <class Tile, int BN>
__device__ __forceinline__ void conv_data_phase_gemm_body(CONV_DATA_PHASE_PARAMS) {
    int group = blockIdx.z / phases;
    int p = blockIdx.z - group * phases;
    ConvPhase phase(p, H, W, KH, KW, sh, sw, ph, pw, dh, dw);
    int N = images * phase.plane();
    if ((int)blockIdx.x * BN >= N) return;
    int K = cout * phase.taps();
    size_t before = (size_t)ConvPhase::taps_before(p, H, W, KH, KW, sh, sw, ph, pw, dh, dw) * M * cout;
    GemmDense a{packed + group * w_group + before, K};
    GemmPhaseGather b{gemm_stored_at(dy, group * dy_group, dy_format), dy_format, OH, OW, dy_image, phase};
    GemmPhaseOut out{const_cast<void*>(gemm_stored_at(dx, group * dx_group, dx_format)), dx_format, H, W, dx_image, phase};
    Tile::template run<true, false>(a, b, out, M, N, 0, K, 1.f, 0.f, vec_w, 0, 0);
}

// A pointwise convolution (1x1, stride 1, no padding, one group): x (forward) or dy (data
// gradient) already is the [channels, images * H * W] matrix im2col would gather, read in place
// as an image-major matrix (4 values per load where vec_src: planes a multiple of 4), against the
// weight [C_out, C_in]: forward y = W x (+ the bias per row), data gradient dx = W^T dy (W read
// as K x M), written into NCHW y or dx.
#define CONV_POINTWISE_PARAMS                                                                     \
    CONV_GEMM_PARAMS, const float *w, const void *src, int src_format, int plane,                 \
        long long src_image, int vec_w, int vec_src
#define CONV_POINTWISE_ARGS CONV_GEMM_ARGS, w, src, src_format, plane, src_image, vec_w, vec_src
template <class Tile, bool FORWARD>
__device__ __forceinline__ void conv_pointwise_body(CONV_POINTWISE_PARAMS) {
    CONV_GEMM_SETUP(1)
    GemmDense a{w, FORWARD ? K : M};
    GemmImageMajor b{src, src_format, plane, src_image};
    Tile::template run<FORWARD, false>(a, b, dest, M, N, k_begin, k_end, 1.f, 0.f, vec_w, vec_src, vec_out);
}
template <class Tile>
__device__ __forceinline__ void conv_pointwise_gemm_body(CONV_POINTWISE_PARAMS) {
    conv_pointwise_body<Tile, true>(CONV_POINTWISE_ARGS);
}
template <class Tile>
__device__ __forceinline__ void conv_pointwise_data_gemm_body(CONV_POINTWISE_PARAMS) {
    conv_pointwise_body<Tile, false>(CONV_POINTWISE_ARGS);
}

// ---- Channels-last (NHWC) convolution GEMMs. A GEMM's K is ordered (ki, kj, c) with the
// channels innermost, so the gather of one tap's channels reads consecutive addresses of a pixel;
// GEMM rows (forward, data gradient) are pixels and columns channels, so each output row is one
// pixel's channels, written in place with the tensor's row stride (all its channels) and the
// group's first channel as the base. The activations (x, dy, y, dx) are each stored as their own
// format argument (f32, or a 16-bit run's bf16/fp16: read and written in place, 8 bytes per 4
// values where vectorised); the packed weights and the weight gradient stay f32.

// at and load4 of a gathered operand over `base` stored as `format` whose index(r, c) is the
// element's index, or -1 where it reads 0 (the padding); the 4 elements of a load4 from a
// multiple of 4 are contiguous and inside or outside together (one 16-byte or 8-byte load).
template <class Operand>
__device__ __forceinline__ float gemm_nullable_at(const Operand& op, int r, int c) {
    const long long i = op.index(r, c);
    return i < 0 ? 0.f : ferro_load(op.base, i, op.format);
}
template <class Operand>
__device__ __forceinline__ float4 gemm_nullable_load4(const Operand& op, int r, int c, int avail) {
    if (avail < 4) return gemm_gather4(op, r, c, avail);
    const long long i = op.index(r, c);
    return i < 0 ? make_float4(0.f, 0.f, 0.f, 0.f) : ferro_load4(op.base, i, op.format);
}

// The im2col matrix of an NHWC tensor read as pixels x K: row image * OH * OW + oh * OW + ow,
// column k = (ki * KW + kj) * Cg + c holds x[image][ih][iw][c] of the group's channels (x points at
// the group's first channel, C is the pixel stride) with ih = oh * sh - ph + ki * dh and
// iw = ow * sw - pw + kj * dw, 0 in the padding. The same struct gathers dy for the stride-1 data
// gradient (its reversed window: stride 1, padding dilation * (kernel - 1) - padding, which may be
// negative). GEMMs read it as M x K (rows pixels) or, for the filter gradient, as K x N (rows K).
// Vectorised (the host's flag: x 16-byte aligned, C and Cg multiples of 4), the 4 consecutive k
// from a multiple of 4 that load4 reads are one tap's consecutive channels of one pixel, inside
// the image or in the padding together: one bounds check and one 16-byte load.
struct GemmIm2colNhwc {
    static constexpr bool vectorizable = true;
    const void* base;  // x, stored as `format`
    int format;
    int H, W, C, Cg, KW, sh, sw, ph, pw, dh, dw, OW, plane;
    // Where (pixel, k) lies in x, or -1 in the padding.
    __device__ __forceinline__ long long index(int pixel, int k) const {
        int tap = k / Cg;
        int ki = tap / KW;
        int image, ih, iw;
        if (!conv_tap_input(pixel, ki, tap - ki * KW, H, W, sh, sw, ph, pw, dh, dw, OW, plane, image, ih, iw))
            return -1;
        return ((long long)(image * H + ih) * W + iw) * C + k - tap * Cg;
    }
    __device__ __forceinline__ float at(int pixel, int k) const { return gemm_nullable_at(*this, pixel, k); }
    __device__ __forceinline__ float4 load4(int pixel, int k, int avail) const {
        return gemm_nullable_load4(*this, pixel, k, avail);
    }
};
// The window of a GemmIm2colNhwc (its fields after the pointer).
#define CONV_NHWC_WINDOW_PARAMS                                                                   \
    int H, int W, int C, int Cg, int KW, int sh, int sw, int ph, int pw, int dh, int dw, int OW, int plane
#define CONV_NHWC_WINDOW H, W, C, Cg, KW, sh, sw, ph, pw, dh, dw, OW, plane

// Forward and stride-1 data gradient: out_g [pixels, cols] = im2col(src)_g [pixels, K] x
// packed_g^T, packed_g [cols, K] row-major. Forward: src x, cols C_out/g, packed the weight as
// [C_out, KH, KW, C_in/g] (each output channel's weight transposed, layout.cu). Stride-1 data
// gradient: src dy with the reversed window, cols C_in/g, packed the flipped weight
// [C_in/g, KH, KW, C_out/g] per group (pack_flipped_weights, channels last). `src` advances
// src_group per group.
// vec_src: 16-byte gathers of src (GemmIm2colNhwc).
#define CONV_NHWC_PARAMS                                                                          \
    CONV_GEMM_PARAMS, const float *packed, const void *src, int src_format, long long w_group,    \
        long long src_group, CONV_NHWC_WINDOW_PARAMS, int vec_w, int vec_src
#define CONV_NHWC_ARGS                                                                            \
    CONV_GEMM_ARGS, packed, src, src_format, w_group, src_group, CONV_NHWC_WINDOW, vec_w, vec_src
template <class Tile>
__device__ __forceinline__ void conv_nhwc_gemm_body(CONV_NHWC_PARAMS) {
    CONV_GEMM_SETUP(0)
    GemmIm2colNhwc a{gemm_stored_at(src, group * src_group, src_format), src_format, CONV_NHWC_WINDOW};
    GemmDense b{packed + group * w_group, K};
    Tile::template run<true, true>(a, b, dest, M, N, k_begin, k_end, 1.f, 0.f, vec_src, vec_w, vec_out);
}

// Weight gradient: dW_g [C_out/g, K] = dy_g^T x im2col(x)_g over every pixel of the batch, K in
// (ki, kj, c) order (the inverse transpose puts it in PyTorch's order); dy [pixels, C_out] read in
// place as K x M (rows its channels, ld C_out), im2col(x) as K x N.
// vec_x: 16-byte gathers of x (GemmIm2colNhwc).
#define CONV_NHWC_FILTER_PARAMS                                                                   \
    CONV_GEMM_PARAMS, const void *dy, int dy_format, const void *x, int x_format, int dy_ld,       \
        long long x_group, CONV_NHWC_WINDOW_PARAMS, int vec_dy, int vec_x
#define CONV_NHWC_FILTER_ARGS                                                                     \
    CONV_GEMM_ARGS, dy, dy_format, x, x_format, dy_ld, x_group, CONV_NHWC_WINDOW, vec_dy, vec_x
template <class Tile>
__device__ __forceinline__ void conv_nhwc_filter_gemm_body(CONV_NHWC_FILTER_PARAMS) {
    CONV_GEMM_SETUP(0)
    GemmDenseStored a{gemm_stored_at(dy, (long long)group * M, dy_format), dy_ld, dy_format};
    GemmIm2colNhwc b{gemm_stored_at(x, group * x_group, x_format), x_format, CONV_NHWC_WINDOW};
    Tile::template run<false, false>(a, b, dest, M, N, k_begin, k_end, 1.f, 0.f, vec_dy, vec_x, vec_out);
}

// The phase's gather of NHWC dy as [images * phase plane, taps * C_out/g]: row (image, a, b),
// column (t, u, o) holds dy[image][a + h.offset - t * h.advance][b + w.offset - u * w.advance][o]
// of the group's channels (dy at the group's first, C its pixel stride), 0 outside dy.
// Vectorised as GemmIm2colNhwc (dy 16-byte aligned, C and cout multiples of 4): 4 consecutive r
// from a multiple of 4 are one tap's consecutive channels of one dy pixel.
struct GemmPhaseGatherNhwc {
    static constexpr bool vectorizable = true;
    const void* base;  // dy, stored as `format`
    int format;
    int OH, OW, C, cout;
    ConvPhase phase;
    // Where (pixel, r) lies in dy, or -1 outside it.
    __device__ __forceinline__ long long index(int pixel, int r) const {
        int o, t, u, image, a, b;
        phase.tap_of_channels_last(r, cout, o, t, u);
        phase.pixel_of(pixel, image, a, b);
        int oh = a + phase.h.offset - t * phase.h.advance;
        int ow = b + phase.w.offset - u * phase.w.advance;
        if (oh < 0 || oh >= OH || ow < 0 || ow >= OW) return -1;
        return ((long long)(image * OH + oh) * OW + ow) * C + o;
    }
    __device__ __forceinline__ float at(int pixel, int r) const { return gemm_nullable_at(*this, pixel, r); }
    __device__ __forceinline__ float4 load4(int pixel, int r, int avail) const {
        return gemm_nullable_load4(*this, pixel, r, avail);
    }
};

// Where a phase's NHWC dx tile goes: (pixel (image, a, b), c) at
// dx[image][h.phase + a * sh][w.phase + b * sw][c] of the group's channels.
// dx stored as `format`, through gemm_store_stored (no bias).
struct GemmPhaseOutNhwc {
    static constexpr bool stored = true;
    static constexpr const float* bias = nullptr;
    static constexpr int bias_rows = 0;
    void* base;
    int format;
    int H, W, C;
    ConvPhase phase;
    __device__ __forceinline__ long long index(int pixel, int c) const {
        int image, a, b;
        phase.pixel_of(pixel, image, a, b);
        int ih = phase.h.phase + a * phase.h.stride;
        int iw = phase.w.phase + b * phase.w.stride;
        return ((long long)(image * H + ih) * W + iw) * C + c;
    }
};

// Data gradient of a strided convolution, channels-last: per group and phase, dx_phase
// [images * phase plane, C_in/g] = phase gather of dy x packed phase weight^T
// (pack_phase_weights, channels last: [C_in/g, taps * C_out/g] per phase, ConvPhase::taps_before
// apart), written into NHWC dx (vec_dx: float4 stores of 4 channels; vec_dy: 16-byte gathers of
// dy). As conv_data_phase_gemm, one launch for every group and phase (blockIdx.z) whose grid
// covers the largest phase; a smaller phase's tile rows past its pixels are the tiles' own edge
// (gathered as zeros, never stored), and a phase no tap reaches (K = 0) gets zeros.
#define CONV_NHWC_DATA_PHASE_PARAMS                                                               \
    void *dx, int dx_format, const float *packed, const void *dy, int dy_format, int cin,          \
        int images, int phases,                                                                   \
        long long w_group, int cout, int C_in, int C_out, int H, int W, int KH, int KW, int sh,     \
        int sw, int ph, int pw, int dh, int dw, int OH, int OW, int vec_w, int vec_dx, int vec_dy
#define CONV_NHWC_DATA_PHASE_ARGS                                                                 \
    dx, dx_format, packed, dy, dy_format, cin, images, phases, w_group, cout, C_in, C_out, H, W, KH, KW, sh, sw, ph, pw, \
        dh, dw, OH, OW, vec_w, vec_dx, vec_dy
template <class Tile>
__device__ __forceinline__ void conv_nhwc_data_phase_gemm_body(CONV_NHWC_DATA_PHASE_PARAMS) {
    int group = blockIdx.z / phases;
    int p = blockIdx.z - group * phases;
    ConvPhase phase(p, H, W, KH, KW, sh, sw, ph, pw, dh, dw);
    int K = cout * phase.taps();
    size_t before = (size_t)ConvPhase::taps_before(p, H, W, KH, KW, sh, sw, ph, pw, dh, dw) * cin * cout;
    GemmPhaseGatherNhwc a{gemm_stored_at(dy, (long long)group * cout, dy_format), dy_format, OH, OW, C_out, cout, phase};
    GemmDense b{packed + group * w_group + before, K};
    GemmPhaseOutNhwc out{const_cast<void*>(gemm_stored_at(dx, (long long)group * cin, dx_format)), dx_format, H, W, C_in, phase};
    Tile::template run<true, true>(a, b, out, images * phase.plane(), cin, 0, K, 1.f, 0.f, vec_dy, vec_w, vec_dx);
}
