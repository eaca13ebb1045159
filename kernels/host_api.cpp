// C ABI over the host build of the kernels' row math, for the Python tests (ctypes) and
// the ctest self-test. Each call walks the rows exactly as the grid would (one HostBlock
// per row) and writes the same outputs the device launchers write.
#include <vector>

#include "dynpose_crop.cuh"
#include "dynpose_regions.cuh"
#include "host_block.h"
#include "simcc_rowmath.cuh"

using namespace dynpose;

namespace {

template <class TIn, class TOut>
void sparsemax_rows(const TIn* in, TOut* out, int rows, int n, float scale) {
    std::vector<float> buf(n);
    HostBlock blk;
    for (int r = 0; r < rows; ++r) {
        const TIn* src = in + static_cast<size_t>(r) * n;
        blk.for_each(n, [&](int i) { buf[i] = to_float(src[i]) * scale; });
        sparsemax_row(blk, buf.data(), n);
        for (int i = 0; i < n; ++i) from_float(buf[i], &out[static_cast<size_t>(r) * n + i]);
    }
}

template <class TIn>
void decode_rows(const TIn* in, float* kpts, float* scores, int rows, const DecodeParams& p) {
    const int n = p.H * p.W;
    std::vector<float> P(n), T(n);
    HostBlock blk;
    for (int r = 0; r < rows; ++r)
        decode_map(blk, p, r % p.K, in + static_cast<size_t>(r) * n, P.data(), T.data(), kpts + 2 * r, scores + r);
}

}  // namespace

extern "C" {

int dp_sparsemax(const void* in, int in_half, void* out, int out_half, int rows, int n, float scale) {
    if (n < 1 || rows < 0) return -1;
    if (in_half) {
        if (out_half) sparsemax_rows(static_cast<const uint16_t*>(in), static_cast<uint16_t*>(out), rows, n, scale);
        else sparsemax_rows(static_cast<const uint16_t*>(in), static_cast<float*>(out), rows, n, scale);
    } else {
        if (out_half) sparsemax_rows(static_cast<const float*>(in), static_cast<uint16_t*>(out), rows, n, scale);
        else sparsemax_rows(static_cast<const float*>(in), static_cast<float*>(out), rows, n, scale);
    }
    return 0;
}

int dp_decode(const void* in, int in_half, float* kpts, float* scores, int N, int K, int H, int W, int mode,
              int normalize, float temperature, const float* sigmas) {
    DecodeParams p;
    const int rc = make_decode_params(&p, K, H, W, mode, normalize, temperature, sigmas);
    if (rc != 0) return rc;
    if (in_half) decode_rows(static_cast<const uint16_t*>(in), kpts, scores, N * K, p);
    else decode_rows(static_cast<const float*>(in), kpts, scores, N * K, p);
    return 0;
}

// SimCC rows x [N*K, Wx], y [N*K, Hy] (both fp32 or both fp16 bits) -> keypoints [N*K, 2]
// (input pixels) and scores [N*K], one HostBlock per keypoint as the kernel's grid does.
int dp_simcc_decode(const void* x, const void* y, int in_half, float* kpts, float* scores, int N, int K, int Wx,
                    int Hy, float split_ratio) {
    SimCCParams p;
    const int rc = make_simcc_params(&p, K, Wx, Hy, split_ratio);
    if (rc != 0) return rc;
    if (N < 0) return -1;
    HostBlock blk;
    for (int r = 0; r < N * K; ++r) {
        const size_t ox = static_cast<size_t>(r) * Wx, oy = static_cast<size_t>(r) * Hy;
        if (in_half)
            simcc_decode_row(blk, p, static_cast<const uint16_t*>(x) + ox, static_cast<const uint16_t*>(y) + oy,
                             kpts + 2 * r, scores + r);
        else
            simcc_decode_row(blk, p, static_cast<const float*>(x) + ox, static_cast<const float*>(y) + oy, kpts + 2 * r,
                             scores + r);
    }
    return 0;
}

int dp_oks_half_taps(float sigma, int H, int W, float* taps) { return oks_half_taps(sigma, H, W, taps); }

void dp_half_to_float(const uint16_t* in, float* out, int n) {
    for (int i = 0; i < n; ++i) out[i] = half_bits_to_float(in[i]);
}

void dp_float_to_half(const float* in, uint16_t* out, int n) {
    for (int i = 0; i < n; ++i) out[i] = float_to_half_bits(in[i]);
}

int dp_reflect(int i, int n) { return reflect(i, n); }

}  // extern "C"

// ---- credible regions in the decode and crops (the sources the new kernels run) ----
namespace {

template <class TIn>
void decode_regions_rows(const TIn* in, float* kpts, float* scores, float* pixels, float* ell, int rows,
                         const DecodeParams& p, const RegionParams& r) {
    const int n = p.H * p.W;
    std::vector<float> P(n), T(n), U(n);
    HostBlock blk;
    for (int row = 0; row < rows; ++row)
        decode_map_regions(blk, p, r, row % p.K, in + static_cast<size_t>(row) * n, P.data(), T.data(), U.data(),
                           kpts + 2 * row, scores + row, pixels + r.Q * row, ell + 5 * r.Q * row);
}

}  // namespace

extern "C" {

// dp_decode plus Q regions per map (nominal masses, calibration blur sigma; 0 = none).
int dp_decode_regions(const void* in, int in_half, float* kpts, float* scores, float* pixels, float* ell, int N, int K,
                      int H, int W, int mode, int normalize, float temperature, const float* sigmas, int Q,
                      const float* masses, float blur_sigma) {
    DecodeParams p;
    int rc = make_decode_params(&p, K, H, W, mode, normalize, temperature, sigmas);
    if (rc != 0) return rc;
    if (mode != kModeProbmap) return -3;
    RegionParams r;
    rc = make_region_params(&r, Q, masses, blur_sigma, H, W);
    if (rc != 0) return rc;
    if (in_half) decode_regions_rows(static_cast<const uint16_t*>(in), kpts, scores, pixels, ell, N * K, p, r);
    else decode_regions_rows(static_cast<const float*>(in), kpts, scores, pixels, ell, N * K, p, r);
    return 0;
}

// n crops of H x W from a uint8 BGR frame (src_h x src_w x 3), affines [n,2,3] float64.
int dp_crops(const uint8_t* frame, int src_h, int src_w, const double* affines, int n, void* out, int out_half, int H,
             int W, const float* mean, const float* stdv) {
    CropParams c;
    const int rc = make_crop_params(&c, src_h, src_w, H, W, mean, stdv);
    if (rc != 0) return rc;
    const size_t per = static_cast<size_t>(3) * H * W;
    for (int i = 0; i < n; ++i)
        for (int y = 0; y < H; ++y)
            for (int x = 0; x < W; ++x) {
                if (out_half) crop_pixel(c, frame, affines + 6 * i, x, y, static_cast<uint16_t*>(out) + per * i);
                else crop_pixel(c, frame, affines + 6 * i, x, y, static_cast<float*>(out) + per * i);
            }
    return 0;
}

}  // extern "C"
