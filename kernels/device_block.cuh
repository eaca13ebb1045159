// DeviceBlock: the block-collective primitives of the row-math drivers on a real CUDA block
// (threads stride the row, shared-memory halving tree), the device twin of HostBlock
// (host_block.h). In its own header so every kernel file (dynpose_kernels.cu,
// simcc_kernels.cu) launches the shared drivers on the same block, not a copy of it.
#pragma once

#include "dynpose_rowmath.cuh"

namespace dynpose {

// Block-collective primitives on a real CUDA block. The methods are __host__ __device__
// only so the shared drivers type-check for both compilation passes; they run on the device.
struct DeviceBlock {
    unsigned char* scratch;  // kBlockThreads * 8 bytes of shared memory

    DP_HD bool leader() const {
#ifdef __CUDA_ARCH__
        return threadIdx.x == 0;
#else
        return true;
#endif
    }

    template <class T, class F, class Op>
    DP_HD T reduce(int n, T init, F f, Op op) {
#ifdef __CUDA_ARCH__
        T acc = init;
        for (int i = threadIdx.x; i < n; i += blockDim.x) acc = op(acc, f(i));
        T* sh = reinterpret_cast<T*>(scratch);
        sh[threadIdx.x] = acc;
        __syncthreads();
        for (int s = blockDim.x / 2; s > 0; s >>= 1) {
            if (threadIdx.x < s) sh[threadIdx.x] = op(sh[threadIdx.x], sh[threadIdx.x + s]);
            __syncthreads();
        }
        const T r = sh[0];
        __syncthreads();
        return r;
#else
        return init;
#endif
    }

    template <class F>
    DP_HD void for_each(int n, F f) {
#ifdef __CUDA_ARCH__
        for (int i = threadIdx.x; i < n; i += blockDim.x) f(i);
        __syncthreads();
#endif
    }
};

}  // namespace dynpose
