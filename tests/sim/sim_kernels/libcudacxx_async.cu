// Asynchronous copies through the libraries (CCCL's libcu++ and cooperative groups), compiled
// for compute_80: cuda::memcpy_async completing on a cuda::barrier, a two-stage cuda::pipeline,
// and cooperative_groups::memcpy_async.
#include <cooperative_groups.h>
#include <cooperative_groups/memcpy_async.h>
#include <cuda/barrier>
#include <cuda/pipeline>
namespace cg = cooperative_groups;

// out[t] = x[255 - t] for a block of 256 threads, through a shared copy of x.
extern "C" __global__ void barrier_copy(const float* x, float* out) {
    __shared__ float s[256];
#pragma nv_diag_suppress static_var_with_dynamic_init
    __shared__ cuda::barrier<cuda::thread_scope_block> bar;
    auto block = cg::this_thread_block();
    if (block.thread_rank() == 0) init(&bar, block.size());
    block.sync();
    cuda::memcpy_async(block, s, x, sizeof(float) * 256, bar);
    bar.arrive_and_wait();
    out[threadIdx.x] = s[255 - threadIdx.x];
}

// out[t] = sum over tiles k of x[256k + 255 - t], the tiles staged through a two-stage pipeline.
extern "C" __global__ void pipeline_sum(const float* x, int tiles, float* out) {
    constexpr int stages = 2;
    __shared__ float s[stages][256];
    __shared__ cuda::pipeline_shared_state<cuda::thread_scope_block, stages> state;
    auto block = cg::this_thread_block();
    auto pipe = cuda::make_pipeline(block, &state);
    float acc = 0.0f;
    for (int fetch = 0, k = 0; k < tiles; ++k) {
        for (; fetch < tiles && fetch < k + stages; ++fetch) {
            pipe.producer_acquire();
            cuda::memcpy_async(block, s[fetch % stages], x + 256 * fetch, sizeof(float) * 256, pipe);
            pipe.producer_commit();
        }
        pipe.consumer_wait();
        acc += s[k % stages][255 - threadIdx.x];
        pipe.consumer_release();
    }
    out[threadIdx.x] = acc;
}

// out[t] = x[255 - t], copied by cooperative groups' memcpy_async and waited for with cg::wait.
extern "C" __global__ void group_copy(const float* x, float* out) {
    __shared__ float s[256];
    auto block = cg::this_thread_block();
    cg::memcpy_async(block, s, x, sizeof(float) * 256);
    cg::wait(block);
    out[threadIdx.x] = s[255 - threadIdx.x];
}
