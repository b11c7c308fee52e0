// SGEMM kernels for the simulator tests: C[M,N] = A[M,K] * B[K,N], row-major.
#define TILE 16

// Shared-memory tiled SGEMM, one output per thread, 16x16 blocks. With SYNC_LOAD false the
// barrier between filling the tiles and reading them is missing (a deliberate race).
template <bool SYNC_LOAD>
__device__ void tiled(const float* A, const float* B, float* C, int M, int N, int K) {
    __shared__ float As[TILE][TILE];
    __shared__ float Bs[TILE][TILE];
    int row = blockIdx.y * TILE + threadIdx.y, col = blockIdx.x * TILE + threadIdx.x;
    float acc = 0.f;
    for (int t = 0; t < K; t += TILE) {
        As[threadIdx.y][threadIdx.x] = (row < M && t + threadIdx.x < K) ? A[row * K + t + threadIdx.x] : 0.f;
        Bs[threadIdx.y][threadIdx.x] = (col < N && t + threadIdx.y < K) ? B[(t + threadIdx.y) * N + col] : 0.f;
        if (SYNC_LOAD) __syncthreads();
        for (int k = 0; k < TILE; k++) acc += As[threadIdx.y][k] * Bs[k][threadIdx.x];
        __syncthreads();
    }
    if (row < M && col < N) C[row * N + col] = acc;
}

extern "C" __global__ void sgemm_tiled(const float* A, const float* B, float* C, int M, int N, int K) {
    tiled<true>(A, B, C, M, N, K);
}

extern "C" __global__ void sgemm_missing_sync(const float* A, const float* B, float* C, int M, int N, int K) {
    tiled<false>(A, B, C, M, N, K);
}

// Register-blocked SGEMM: 64x64 tiles per 256-thread block, 4x4 outputs per thread, float4
// loads of A and B into shared memory (M, N, K multiples of 64/64/16).
extern "C" __global__ void sgemm_reg4x4(const float* A, const float* B, float* C, int M, int N, int K) {
    __shared__ float As[16][64];
    __shared__ float Bs[16][64];
    int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    int row0 = blockIdx.y * 64, col0 = blockIdx.x * 64;
    float acc[4][4] = {};
    for (int t = 0; t < K; t += 16) {
        // 256 threads load 64x16 of A (transposed into As[k][m]) and 16x64 of B as float4.
        int ar = threadIdx.x / 4, ac = (threadIdx.x % 4) * 4;
        float4 a4 = *reinterpret_cast<const float4*>(&A[(row0 + ar) * K + t + ac]);
        As[ac + 0][ar] = a4.x; As[ac + 1][ar] = a4.y; As[ac + 2][ar] = a4.z; As[ac + 3][ar] = a4.w;
        int br = threadIdx.x / 16, bc = (threadIdx.x % 16) * 4;
        *reinterpret_cast<float4*>(&Bs[br][bc]) = *reinterpret_cast<const float4*>(&B[(t + br) * N + col0 + bc]);
        __syncthreads();
        for (int k = 0; k < 16; k++) {
            float4 a = *reinterpret_cast<const float4*>(&As[k][ty * 4]);
            float4 b = *reinterpret_cast<const float4*>(&Bs[k][tx * 4]);
            float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) acc[i][j] += av[i] * bv[j];
        }
        __syncthreads();
    }
    for (int i = 0; i < 4; i++) {
        float4 out = make_float4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
        *reinterpret_cast<float4*>(&C[(row0 + ty * 4 + i) * N + col0 + tx * 4]) = out;
    }
}
