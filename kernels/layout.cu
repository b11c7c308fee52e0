// Channels-first <-> channels-last conversion as a batched transpose: image blockIdx.z's
// [rows, cols] matrix x becomes the [cols, rows] matrix y. A block of 256 threads moves one
// 64x64 tile through shared memory, each thread 4 consecutive values per access: 16 bytes of f32
// or 8 of bf16/fp16 where the host's `vec_x` / `vec_y` say the matrix's rows are multiples of 4
// values and its buffer 16-byte aligned (else, and past a partial group at an edge, value by
// value). x and y are in their stored formats (kernels/stored.cuh): a move rounds nothing, so y
// equals x bit for bit.
//
// Each warp pass reads 4 rows x 32 columns (lane / 8 the row, lane % 8 the group of 4 columns)
// and writes 4 columns x 32 rows (lane / 8 the column, lane % 8 the group of 4 rows). With the
// tile's row of 65 floats, a lane's shared address is congruent mod 32 banks to its row + 4 x its
// group (+ the value's place in the group): the 32 lanes of every shared access hit 32 banks.
// A matrix of fewer than 64 columns that cannot move 4 values per access (a convolution weight's
// taps) is read (or written) flat instead, its whole rows being one contiguous run.
#include "common.cuh"
#include "stored.cuh"

#define TILE 64
#define GROUP 4
#define PASSES 4  // (TILE * TILE / GROUP) / 256 threads

// Pass p's piece of this thread in a matrix side's 64x64 tile: `line` (of the 4 lines of 32
// values a warp pass takes; a row when reading x, a column of x when writing y) and `group`, the
// first of its 4 consecutive values along that line.
__device__ __forceinline__ void transpose_piece(int p, int& line, int& group) {
    const int lane = threadIdx.x % 32, piece = threadIdx.x / 32 + 8 * p;  // 32 pieces of 4 x 32
    line = (piece / 2) * 4 + lane / 8;
    group = (piece % 2) * 32 + (lane % 8) * GROUP;
}

// Whether a tile moves flat on the side whose lines are `len` values (the tile starting at
// `start` along them): all of each line in the tile, fewer than TILE values that cannot move 4
// per access, so the tile's part of the matrix is one contiguous run.
__device__ __forceinline__ bool transpose_flat(int start, int len, int vec) { return start == 0 && len < TILE && !vec; }

// Reads image `image`'s tile (r0, c0) of x into `tile`.
__device__ __forceinline__ void transpose_read(float (*tile)[TILE + 1], const void* __restrict__ x, int x_format,
                                               long long image, int rows, int cols, int r0, int c0, int vec_x) {
    if (transpose_flat(c0, cols, vec_x)) {
        // The tile is whole rows of x, one contiguous run: read flat, so a warp reads 32
        // consecutive values (a convolution weight's [C_in, KH * KW] matrices, rows of 9).
        const int run = min(TILE, rows - r0) * cols;
        for (int e = threadIdx.x; e < run; e += blockDim.x)
            tile[e / cols][e % cols] = ferro_load(x, image + (long long)r0 * cols + e, x_format);
        return;
    }
#pragma unroll
    for (int p = 0; p < PASSES; ++p) {
        int r, c;
        transpose_piece(p, r, c);
        const int row = r0 + r, col = c0 + c;
        if (row >= rows) continue;
        const long long i = image + (long long)row * cols + col;
        if (vec_x && col + GROUP <= cols) {
            const float4 v = ferro_load4(x, i, x_format);
            tile[r][c] = v.x;
            tile[r][c + 1] = v.y;
            tile[r][c + 2] = v.z;
            tile[r][c + 3] = v.w;
        } else {
            for (int j = 0; j < GROUP && col + j < cols; ++j) tile[r][c + j] = ferro_load(x, i + j, x_format);
        }
    }
}

// Writes `tile` transposed as image `image`'s tile (c0, r0) of y.
__device__ __forceinline__ void transpose_write(const float (*tile)[TILE + 1], void* __restrict__ y, int y_format,
                                                long long image, int rows, int cols, int r0, int c0, int vec_y) {
    if (transpose_flat(r0, rows, vec_y)) {
        // Likewise the tile's part of y is whole rows of fewer than TILE values: written flat.
        const int run = min(TILE, cols - c0) * rows;
        for (int e = threadIdx.x; e < run; e += blockDim.x)
            ferro_store(y, image + (long long)c0 * rows + e, tile[e % rows][e / rows], y_format);
        return;
    }
#pragma unroll
    for (int p = 0; p < PASSES; ++p) {
        int c, r;
        transpose_piece(p, c, r);
        const int col = c0 + c, row = r0 + r;
        if (col >= cols) continue;
        const long long i = image + (long long)col * rows + row;
        if (vec_y && row + GROUP <= rows) {
            ferro_store4(y, i, make_float4(tile[r][c], tile[r + 1][c], tile[r + 2][c], tile[r + 3][c]), y_format);
        } else {
            for (int j = 0; j < GROUP && row + j < rows; ++j) ferro_store(y, i + j, tile[r + j][c], y_format);
        }
    }
}

extern "C" __global__ void __launch_bounds__(256)
    transpose_images(const void* __restrict__ x, int x_format, void* __restrict__ y, int y_format, int rows, int cols,
                     int vec_x, int vec_y) {
    __shared__ float tile[TILE][TILE + 1];
    const long long image = (long long)blockIdx.z * rows * cols;
    const int r0 = blockIdx.y * TILE, c0 = blockIdx.x * TILE;
    transpose_read(tile, x, x_format, image, rows, cols, r0, c0, vec_x);
    __syncthreads();
    transpose_write(tile, y, y_format, image, rows, cols, r0, c0, vec_y);
}
