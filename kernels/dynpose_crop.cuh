// Person crops straight from the frame into a net's [N,3,H,W] input: one thread per output
// pixel, shared by the CUDA kernel and the host build (the tests run this source on the CPU).
//
// Why OpenCV's fixed-point arithmetic: runtime.pose.preprocess.make_crops (cv2.warpAffine,
// INTER_LINEAR, constant-0 border) is what the nets were calibrated and evaluated on, so the
// device must give the same tensor, not a near one. warpAffine inverts the 2x3 matrix in
// double, places each source coordinate on a 1/32-pixel grid (10 fractional bits, rounded to
// nearest even, then 5 kept), weighs the four taps with integer weights summing to 2^15 and
// rounds the sum to uint8; this file does the same, so the crop equals warpAffine's uint8
// crop, and the normalisation is the same float32 multiply-then-add as make_crops.
#pragma once

#include "dynpose_rowmath.cuh"

namespace dynpose {

constexpr int kCropAbBits = 10;   // OpenCV AB_BITS: fixed-point bits of the affine products
constexpr int kCropInterBits = 5;  // OpenCV INTER_BITS: 1/32-pixel grid
constexpr int kCropTab = 1 << kCropInterBits;

struct CropParams {
    int32_t src_h, src_w;  // frame (uint8 HxWx3 BGR, rows contiguous)
    int32_t H, W;          // crop size (the net's input)
    float scale[3];        // per output channel (RGB): 1 / std
    float shift[3];        // per output channel (RGB): -mean / std
};

// Fills the parameters from ImageNet-style mean/std in RGB order, the way make_crops
// computes its float32 scale and shift. Returns 0, or -8 for a bad size or a zero std.
inline int make_crop_params(CropParams* c, int src_h, int src_w, int H, int W, const float* mean, const float* stdv) {
    std::memset(c, 0, sizeof(*c));
    if (src_h < 1 || src_w < 1 || H < 1 || W < 1) return -8;
    c->src_h = src_h;
    c->src_w = src_w;
    c->H = H;
    c->W = W;
    for (int ch = 0; ch < 3; ++ch) {
        if (!(stdv[ch] != 0.0f)) return -8;
        c->scale[ch] = 1.0f / stdv[ch];
        c->shift[ch] = -mean[ch] / stdv[ch];
    }
    return 0;
}

DP_HD int round_even(double v) {  // OpenCV's saturate_cast<int>(double): nearest, ties to even
#ifdef __CUDA_ARCH__
    return __double2int_rn(v);
#else
    return static_cast<int>(std::nearbyint(v));
#endif
}

// Output pixel (x, y) of the crop with image->crop affine m[6] (row-major 2x3), written to
// out[c*H*W + y*W + x] for the three channels (TOut float or fp16 bits).
template <class TOut>
DP_HD void crop_pixel(const CropParams& c, const uint8_t* img, const double* m, int x, int y, TOut* out) {
    // cv::invertAffineTransform
    double D = m[0] * m[4] - m[1] * m[3];
    D = D != 0.0 ? 1.0 / D : 0.0;
    const double a11 = m[4] * D, a22 = m[0] * D, a12 = -m[1] * D, a21 = -m[3] * D;
    const double b1 = -a11 * m[2] - a12 * m[5], b2 = -a21 * m[2] - a22 * m[5];
    const double ab = static_cast<double>(1 << kCropAbBits);
    const int round_delta = (1 << kCropAbBits) / kCropTab / 2;
    const int X0 = round_even((a12 * y + b1) * ab) + round_delta;
    const int Y0 = round_even((a22 * y + b2) * ab) + round_delta;
    const int X = (X0 + round_even(a11 * x * ab)) >> (kCropAbBits - kCropInterBits);
    const int Y = (Y0 + round_even(a21 * x * ab)) >> (kCropAbBits - kCropInterBits);
    const int ix = X >> kCropInterBits, iy = Y >> kCropInterBits;
    const int fx = X & (kCropTab - 1), fy = Y & (kCropTab - 1);
    const int w[4] = {(kCropTab - fx) * (kCropTab - fy) * kCropTab, fx * (kCropTab - fy) * kCropTab,
                      (kCropTab - fx) * fy * kCropTab, fx * fy * kCropTab};
    int acc[3] = {0, 0, 0};
    for (int t = 0; t < 4; ++t) {
        const int sx = ix + (t & 1), sy = iy + (t >> 1);
        if (sx < 0 || sy < 0 || sx >= c.src_w || sy >= c.src_h) continue;  // constant-0 border
        const uint8_t* px = img + (static_cast<size_t>(sy) * c.src_w + sx) * 3;
        for (int ch = 0; ch < 3; ++ch) acc[ch] += w[t] * static_cast<int>(px[ch]);
    }
    const size_t plane = static_cast<size_t>(c.H) * c.W, at = static_cast<size_t>(y) * c.W + x;
    for (int ch = 0; ch < 3; ++ch) {  // output channel ch (RGB) reads BGR channel 2 - ch
        const int v = (acc[2 - ch] + (1 << 14)) >> 15;
        const int u8 = v < 0 ? 0 : (v > 255 ? 255 : v);
        from_float(add(mul(static_cast<float>(u8), c.scale[ch]), c.shift[ch]), &out[ch * plane + at]);
    }
}

}  // namespace dynpose
