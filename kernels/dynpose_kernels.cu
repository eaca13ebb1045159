// CUDA kernels: one thread block per row (one image x keypoint map).
// The math lives in dynpose_rowmath.cuh and is shared with the host build; this file only
// supplies the kernels and their launchers; DeviceBlock (device_block.cuh) plays the block.
#include "device_block.cuh"
#include "dynpose_kernels.h"

namespace dynpose {
namespace {

template <class TIn, class TOut>
__global__ void __launch_bounds__(kBlockThreads) sparsemax_kernel(const TIn* in, TOut* out, int n, float scale) {
    extern __shared__ __align__(16) unsigned char smem[];
    DeviceBlock blk{smem};
    float* buf = reinterpret_cast<float*>(smem + kScratchBytes);
    const size_t base = static_cast<size_t>(blockIdx.x) * n;
    blk.for_each(n, [&](int i) { buf[i] = to_float(in[base + i]) * scale; });
    sparsemax_row(blk, buf, n);
    for (int i = threadIdx.x; i < n; i += blockDim.x) from_float(buf[i], &out[base + i]);
}

template <class TIn>
__global__ void __launch_bounds__(kBlockThreads) decode_kernel(const TIn* in, float* kpts, float* scores,
                                                               DecodeParams p) {
    extern __shared__ __align__(16) unsigned char smem[];
    DeviceBlock blk{smem};
    const int n = p.H * p.W;
    float* P = reinterpret_cast<float*>(smem + kScratchBytes);
    float* T = P + n;
    const int row = blockIdx.x;
    decode_map(blk, p, row % p.K, in + static_cast<size_t>(row) * n, P, T, kpts + 2 * row, scores + row);
}

template <class TIn, class TOut>
int sparsemax_as(const void* in, void* out, int rows, int n, float scale, cudaStream_t s) {
    const size_t smem = sparsemax_smem_bytes(n);
    sparsemax_kernel<TIn, TOut><<<rows, kBlockThreads, smem, s>>>(static_cast<const TIn*>(in), static_cast<TOut*>(out),
                                                                  n, scale);
    return static_cast<int>(cudaGetLastError());
}

}  // namespace

int launch_sparsemax(const void* in, bool in_half, void* out, bool out_half, int rows, int n, float scale,
                     cudaStream_t stream) {
    if (rows == 0) return 0;
    if (n < 1 || n > kMaxSparsemaxRow) return static_cast<int>(cudaErrorInvalidValue);
    if (in_half) return out_half ? sparsemax_as<uint16_t, uint16_t>(in, out, rows, n, scale, stream)
                                 : sparsemax_as<uint16_t, float>(in, out, rows, n, scale, stream);
    return out_half ? sparsemax_as<float, uint16_t>(in, out, rows, n, scale, stream)
                    : sparsemax_as<float, float>(in, out, rows, n, scale, stream);
}

namespace {

template <class TIn>
int decode_as(const TIn* in, float* keypoints, float* scores, int rows, const DecodeParams& p, cudaStream_t stream) {
    const size_t smem = decode_smem_bytes(p.H, p.W);
    if (smem > kDefaultSmemBytes) {
        // Above 48 KB a kernel must opt in, per kernel and device; the call is cheap
        // next to the launch, so it is made every time rather than cached per device.
        const cudaError_t e = cudaFuncSetAttribute(decode_kernel<TIn>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                   static_cast<int>(smem));
        if (e != cudaSuccess) return static_cast<int>(e);
    }
    decode_kernel<TIn><<<rows, kBlockThreads, smem, stream>>>(in, keypoints, scores, p);
    return static_cast<int>(cudaGetLastError());
}

}  // namespace

size_t device_smem_optin_bytes() {
    int dev = 0, optin = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess || optin <= 0) {
        cudaGetLastError();  // clear the (non-sticky) error so the next CUDA call starts clean
        return kDefaultSmemBytes;
    }
    return static_cast<size_t>(optin);
}

int launch_decode(const void* in, bool in_half, float* keypoints, float* scores, int rows, const DecodeParams& p,
                  cudaStream_t stream) {
    if (rows == 0) return 0;
    if (in_half) return decode_as(static_cast<const uint16_t*>(in), keypoints, scores, rows, p, stream);
    return decode_as(static_cast<const float*>(in), keypoints, scores, rows, p, stream);
}

}  // namespace dynpose

// ---- credible regions in the decode (dynpose_regions.cuh) ----
namespace dynpose {
namespace {

template <class TIn>
__global__ void __launch_bounds__(kBlockThreads) decode_regions_kernel(const TIn* in, float* kpts, float* scores,
                                                                       float* pixels, float* ellipses, DecodeParams p,
                                                                       RegionParams r) {
    extern __shared__ __align__(16) unsigned char smem[];
    DeviceBlock blk{smem};
    const int n = p.H * p.W;
    float* P = reinterpret_cast<float*>(smem + kScratchBytes);
    float* T = P + n;
    float* U = T + n;
    const int row = blockIdx.x;
    decode_map_regions(blk, p, r, row % p.K, in + static_cast<size_t>(row) * n, P, T, U, kpts + 2 * row,
                       scores + row, pixels + r.Q * row, ellipses + 5 * r.Q * row);
}

template <class TIn>
int decode_regions_as(const TIn* in, float* kpts, float* scores, float* pixels, float* ellipses, int rows,
                      const DecodeParams& p, const RegionParams& r, cudaStream_t stream) {
    const size_t smem = decode_regions_smem_bytes(p.H, p.W, r.blur != 0);
    if (smem > kDefaultSmemBytes) {
        const cudaError_t e = cudaFuncSetAttribute(decode_regions_kernel<TIn>,
                                                   cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
        if (e != cudaSuccess) return static_cast<int>(e);
    }
    decode_regions_kernel<TIn><<<rows, kBlockThreads, smem, stream>>>(in, kpts, scores, pixels, ellipses, p, r);
    return static_cast<int>(cudaGetLastError());
}

}  // namespace

int launch_decode_regions(const void* in, bool in_half, float* keypoints, float* scores, float* pixels,
                          float* ellipses, int rows, const DecodeParams& p, const RegionParams& r, cudaStream_t stream) {
    if (rows == 0) return 0;
    if (r.Q < 1) return launch_decode(in, in_half, keypoints, scores, rows, p, stream);
    if (in_half)
        return decode_regions_as(static_cast<const uint16_t*>(in), keypoints, scores, pixels, ellipses, rows, p, r,
                                 stream);
    return decode_regions_as(static_cast<const float*>(in), keypoints, scores, pixels, ellipses, rows, p, r, stream);
}

}  // namespace dynpose
