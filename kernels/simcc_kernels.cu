// CUDA kernel of the SimCC decode: one thread block per keypoint (one image x keypoint),
// reading its x and y rows straight from global memory (nothing staged: the argmax needs
// one pass per axis), so only keypoints [N*K, 2] and scores [N*K] are written.
// The math is simcc_rowmath.cuh, shared with the host build.
#include "device_block.cuh"
#include "dynpose_kernels.h"
#include "simcc_rowmath.cuh"

namespace dynpose {
namespace {

template <class TIn>
__global__ void __launch_bounds__(kSimCCThreads) simcc_decode_kernel(const TIn* x, const TIn* y, float* kpts,
                                                                     float* scores, SimCCParams p) {
    __shared__ __align__(16) unsigned char scratch[kSimCCScratchBytes];
    DeviceBlock blk{scratch};
    const size_t row = blockIdx.x;
    simcc_decode_row(blk, p, x + row * p.Wx, y + row * p.Hy, kpts + 2 * row, scores + row);
}

template <class TIn>
int simcc_decode_as(const void* x, const void* y, float* keypoints, float* scores, int rows, const SimCCParams& p,
                    cudaStream_t stream) {
    simcc_decode_kernel<TIn><<<rows, kSimCCThreads, 0, stream>>>(static_cast<const TIn*>(x),
                                                                static_cast<const TIn*>(y), keypoints, scores, p);
    return static_cast<int>(cudaGetLastError());
}

}  // namespace

int launch_simcc_decode(const void* x, const void* y, bool in_half, float* keypoints, float* scores, int rows,
                        const SimCCParams& p, cudaStream_t stream) {
    if (rows == 0) return 0;
    if (rows < 0 || p.Wx < 1 || p.Hy < 1 || !(p.split_ratio > 0.0f)) return static_cast<int>(cudaErrorInvalidValue);
    if (in_half) return simcc_decode_as<uint16_t>(x, y, keypoints, scores, rows, p, stream);
    return simcc_decode_as<float>(x, y, keypoints, scores, rows, p, stream);
}

}  // namespace dynpose
