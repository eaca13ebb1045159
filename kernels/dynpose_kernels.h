// Launchers for the dynpose CUDA kernels (used by the TensorRT plugin), and the
// shared-memory arithmetic the launchers, the plugin's checks and the tests share.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

#include "dynpose_crop.cuh"
#include "dynpose_regions.cuh"
#include "dynpose_rowmath.cuh"
#include "simcc_rowmath.cuh"

namespace dynpose {

// Per-block reduction scratch in front of every kernel's staged row.
constexpr size_t kScratchBytes = static_cast<size_t>(kBlockThreads) * 8;
// Dynamic shared memory a kernel may use without cudaFuncSetAttribute opt-in.
constexpr size_t kDefaultSmemBytes = 48 * 1024;
// Largest map the decode accepts (make_decode_params' H*W limit).
constexpr int kMaxDecodePixels = 8192;

// Largest row the sparsemax kernel stages in shared memory: fits the 48 KB default, so it
// needs no opt-in on any GPU (kScratchBytes + 4 * 11776 == 48 KB).
constexpr int kMaxSparsemaxRow = 11776;

// Bytes of dynamic shared memory one sparsemax / decode block asks for. The launchers
// launch with exactly these values, the plugin refuses shapes whose value exceeds the
// device limit, and the host test checks them: one formula, no copy to drift.
constexpr size_t sparsemax_smem_bytes(int64_t n) { return kScratchBytes + sizeof(float) * static_cast<size_t>(n); }
constexpr size_t decode_smem_bytes(int64_t h, int64_t w) {
    return kScratchBytes + 2 * sizeof(float) * static_cast<size_t>(h) * static_cast<size_t>(w);
}
// True when an H x W decode fits a block whose opt-in dynamic shared memory is `limit`.
constexpr bool decode_fits(int64_t h, int64_t w, size_t limit) {
    return h > 0 && w > 0 && h * w <= kMaxDecodePixels && decode_smem_bytes(h, w) <= limit;
}

// The current device's opt-in dynamic shared memory per block
// (cudaDevAttrMaxSharedMemoryPerBlockOptin). Without a usable device (no GPU, no
// driver) it returns kDefaultSmemBytes, the limit every CUDA GPU honours, so the
// checks stay safe and nothing fails on a build machine's host code path.
size_t device_smem_optin_bytes();

// Sparsemax over `rows` rows of length n; in/out are fp32 or fp16 (as raw uint16 bits).
// Returns a cudaError_t value (0 = success).
int launch_sparsemax(const void* in, bool in_half, void* out, bool out_half, int rows, int n, float scale,
                     cudaStream_t stream);

// ---- SimCC decode (simcc_kernels.cu) ----
// One block of kSimCCThreads per keypoint; its reduction scratch is static shared memory
// (no dynamic shared memory, so any row length launches on any GPU).
constexpr int kSimCCThreads = 128;  // power of two: the reduction tree halves it
constexpr size_t kSimCCScratchBytes = static_cast<size_t>(kSimCCThreads) * 8;

// SimCC rows x [rows, p.Wx] and y [rows, p.Hy] (fp32, or fp16 as raw uint16 bits, both the
// same type) -> keypoints [rows, 2] in input pixels and scores [rows] (fp32).
int launch_simcc_decode(const void* x, const void* y, bool in_half, float* keypoints, float* scores, int rows,
                        const SimCCParams& p, cudaStream_t stream);

// Decode N*K maps of p.H x p.W into keypoints [N*K, 2] and scores [N*K] (fp32). Maps
// needing more than 48 KB of shared memory raise the kernel's limit first (opt-in).
int launch_decode(const void* in, bool in_half, float* keypoints, float* scores, int rows, const DecodeParams& p,
                  cudaStream_t stream);


// ---- credible regions in the decode (dynpose_regions.cuh) ----
// P and T as the decode, plus U (the calibration-blurred map) when the regions take a blur.
constexpr size_t decode_regions_smem_bytes(int64_t h, int64_t w, bool blur) {
    return decode_smem_bytes(h, w) + (blur ? sizeof(float) * static_cast<size_t>(h) * static_cast<size_t>(w) : 0);
}
constexpr bool decode_regions_fits(int64_t h, int64_t w, bool blur, size_t limit) {
    return decode_fits(h, w, limit) && decode_regions_smem_bytes(h, w, blur) <= limit &&
           (!blur || (h <= kMaxBlurTaps && w <= kMaxBlurTaps));
}

// launch_decode plus r.Q credible regions per map: pixels [rows, Q] (pixel counts) and
// ellipses [rows, Q, 5] (cx, cy, semi-major, semi-minor, angle; heatmap pixels), fp32.
int launch_decode_regions(const void* in, bool in_half, float* keypoints, float* scores, float* pixels,
                          float* ellipses, int rows, const DecodeParams& p, const RegionParams& r, cudaStream_t stream);

// ---- crops (dynpose_crop.cuh) ----
// n crops of c.H x c.W from one uint8 HxWx3 BGR frame on the device, with the image->crop
// affines [n, 2, 3] (float64, device memory), into out [n, 3, H, W] (fp32, or fp16 bits).
int launch_crops(const uint8_t* frame, const double* affines, int n, void* out, bool out_half, const CropParams& c,
                 cudaStream_t stream);

}  // namespace dynpose
