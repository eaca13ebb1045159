// The crop kernel: every crop of one frame in one launch, one thread per output pixel
// (grid.y = crop). The arithmetic lives in dynpose_crop.cuh, shared with the host build.
#include "dynpose_kernels.h"

namespace dynpose {
namespace {

template <class TOut>
__global__ void __launch_bounds__(kBlockThreads) crop_kernel(const uint8_t* frame, const double* affines, TOut* out,
                                                             CropParams c) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= c.H * c.W) return;
    const int n = blockIdx.y, y = i / c.W, x = i - y * c.W;
    crop_pixel(c, frame, affines + 6 * n, x, y, out + static_cast<size_t>(n) * 3 * c.H * c.W);
}

}  // namespace

int launch_crops(const uint8_t* frame, const double* affines, int n, void* out, bool out_half, const CropParams& c,
                 cudaStream_t stream) {
    if (n == 0) return 0;
    if (n < 0 || n > 65535 || c.H < 1 || c.W < 1) return static_cast<int>(cudaErrorInvalidValue);
    const dim3 grid((c.H * c.W + kBlockThreads - 1) / kBlockThreads, n);
    if (out_half) crop_kernel<<<grid, kBlockThreads, 0, stream>>>(frame, affines, static_cast<uint16_t*>(out), c);
    else crop_kernel<<<grid, kBlockThreads, 0, stream>>>(frame, affines, static_cast<float*>(out), c);
    return static_cast<int>(cudaGetLastError());
}

}  // namespace dynpose
