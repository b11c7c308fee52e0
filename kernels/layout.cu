// Channels-first <-> channels-last conversion as a batched transpose: image blockIdx.z's
// [rows, cols] matrix x becomes the [cols, rows] matrix y. A 32 x 8 block moves one 32x32 tile
// through shared memory, so a warp reads 32 consecutive columns of x and writes 32 consecutive
// rows of y; the tile's extra column keeps the transposed reads off a single bank. x and y are in
// their stored formats (kernels/stored.cuh): a move rounds nothing, so y equals x bit for bit.
#include "common.cuh"
#include "stored.cuh"

#define TILE 32
#define ROWS_PER_PASS 8

extern "C" __global__ void transpose_images(const void* __restrict__ x, int x_format, void* __restrict__ y, int y_format,
                                            int rows, int cols) {
    __shared__ float tile[TILE][TILE + 1];
    const size_t image = (size_t)blockIdx.z * rows * cols;
    const int r0 = blockIdx.y * TILE;
    const int c0 = blockIdx.x * TILE;
    for (int r = threadIdx.y; r < TILE; r += ROWS_PER_PASS) {
        int row = r0 + r, col = c0 + threadIdx.x;
        if (row < rows && col < cols) tile[r][threadIdx.x] = ferro_load(x, image + (size_t)row * cols + col, x_format);
    }
    __syncthreads();
    for (int c = threadIdx.y; c < TILE; c += ROWS_PER_PASS) {
        int col = c0 + c, row = r0 + threadIdx.x;
        if (row < rows && col < cols) ferro_store(y, image + (size_t)col * rows + row, tile[threadIdx.x][c], y_format);
    }
}
