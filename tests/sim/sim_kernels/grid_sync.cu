// Grid-wide synchronisation through cooperative groups (it needs a cooperative launch): each
// thread reads what a neighbour, often in another block, wrote before the grid synced.
#include <cooperative_groups.h>
namespace cg = cooperative_groups;

// out[i] = 2 x[i] + 2 x[(i + 1) % n] over the whole grid of n threads, in three phases.
extern "C" __global__ void grid_neighbours(const float* x, float* a, float* out) {
    cg::grid_group grid = cg::this_grid();
    const unsigned n = grid.size(), i = grid.thread_rank();
    a[i] = 2.0f * x[i];
    grid.sync();
    const float left = a[(i + n - 1) % n];
    grid.sync();
    a[i] = left + a[i];
    grid.sync();
    out[i] = a[(i + 1) % n];
}

// order[k] = the k-th block to reach the grid barrier (thread 0 of each block takes a ticket).
extern "C" __global__ void arrival_order(unsigned* tickets, unsigned* order) {
    cg::grid_group grid = cg::this_grid();
    if (threadIdx.x == 0) order[atomicAdd(tickets, 1u)] = blockIdx.x;
    grid.sync();
}

// Block 0 leaves before the grid sync the others wait at.
extern "C" __global__ void one_block_skips_the_sync(float* out) {
    cg::grid_group grid = cg::this_grid();
    if (blockIdx.x == 0) return;
    grid.sync();
    out[grid.thread_rank()] = 1.0f;
}
