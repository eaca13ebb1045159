// Per-keypoint math of the SimCC decode (RTMPose's RTMCC head), shared by the CUDA kernel
// (simcc_kernels.cu) and the host build (host_api.cpp), like dynpose_rowmath.cuh.
//
// Why its own header: the SimCC decode reads two 1-D rows per keypoint (x and y bins) and
// stages nothing in shared memory, so it needs none of the map decode's parameters; it
// uses the same block-collective primitives (Blk::reduce / leader) and the same argmax
// operator (OpArgMax: larger value, ties to the smaller index - numpy's first occurrence).
// An argmax with that tie rule is exact whatever the reduction order, and the only float
// arithmetic is one correctly rounded division, so device, host build and
// runtime/heads/simcc.py decode_simcc agree bitwise (up to the sign of a zero score: numpy's
// max may return +0 or -0 from a row whose maximum ties at zero; the kernel the first one).
#pragma once

#include "dynpose_rowmath.cuh"

namespace dynpose {

// Correctly rounded division on both sides (also under --use_fast_math on the device).
DP_HD float div_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fdiv_rn(a, b);
#else
    return a / b;
#endif
}

// split_ratio: bins per input pixel (SimCCLabel simcc_split_ratio; 2.0 in every RTMPose config).
struct SimCCParams {
    int32_t K, Wx, Hy;
    float split_ratio;
};

// Returns 0, or a negative code: -1 K < 1, -2 a row length < 1, -3 split ratio not finite and > 0.
inline int make_simcc_params(SimCCParams* p, int K, int Wx, int Hy, float split_ratio) {
    if (K < 1) return -1;
    if (Wx < 1 || Hy < 1) return -2;
    if (!(split_ratio > 0.0f) || is_bad(split_ratio)) return -3;
    *p = SimCCParams{K, Wx, Hy, split_ratio};
    return 0;
}

// One keypoint: x[0..Wx) and y[0..Hy) logits (fp32 or fp16 bits) -> xy (input pixels), score.
// MMPose's get_simcc_maximum rule: location = argmax bin per axis, score = the smaller of
// the two maxima, location -1 on both axes where the score is not above zero; then divided
// by the split ratio. A row holding NaN or +-inf gives (NaN, NaN) with score 0, the
// project's rule for invalid maps.
template <class Blk, class TIn>
DP_HD void simcc_decode_row(Blk& blk, const SimCCParams& p, const TIn* x, const TIn* y, float* xy, float* score) {
    const int bad = blk.reduce(p.Wx + p.Hy, 0, [&](int i) {
        return is_bad(i < p.Wx ? to_float(x[i]) : to_float(y[i - p.Wx])) ? 1 : 0;
    }, OpAdd());
    if (bad > 0) {
        if (blk.leader()) {
            xy[0] = NAN;
            xy[1] = NAN;
            *score = 0.0f;
        }
        return;
    }
    const ArgMax ax = blk.reduce(p.Wx, ArgMax{-INFINITY, -1}, [&](int i) { return ArgMax{to_float(x[i]), i}; },
                                 OpArgMax());
    const ArgMax ay = blk.reduce(p.Hy, ArgMax{-INFINITY, -1}, [&](int i) { return ArgMax{to_float(y[i]), i}; },
                                 OpArgMax());
    if (blk.leader()) {
        const float s = ax.v < ay.v ? ax.v : ay.v;  // np.minimum's pick on a tie
        const bool absent = !(s > 0.0f);
        xy[0] = div_rn(static_cast<float>(absent ? -1 : ax.i), p.split_ratio);
        xy[1] = div_rn(static_cast<float>(absent ? -1 : ay.i), p.split_ratio);
        *score = s;
    }
}

}  // namespace dynpose
