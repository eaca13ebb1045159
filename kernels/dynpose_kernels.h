// Launchers for the dynpose CUDA kernels (used by the TensorRT plugin).
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "dynpose_rowmath.cuh"

namespace dynpose {

// Largest row the sparsemax kernel stages in shared memory (48 KB default limit).
constexpr int kMaxSparsemaxRow = 11776;

// Sparsemax over `rows` rows of length n; in/out are fp32 or fp16 (as raw uint16 bits).
// Returns a cudaError_t value (0 = success).
int launch_sparsemax(const void* in, bool in_half, void* out, bool out_half, int rows, int n, float scale,
                     cudaStream_t stream);

// Decode N*K maps of p.H x p.W into keypoints [N*K, 2] and scores [N*K] (fp32).
int launch_decode(const void* in, bool in_half, float* keypoints, float* scores, int rows, const DecodeParams& p,
                  cudaStream_t stream);

}  // namespace dynpose
