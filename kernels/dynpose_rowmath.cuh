// Per-row math of the dynpose decode kernels, shared by the CUDA kernels and a host build.
//
// Why this shape: there is no GPU in CI, so the very code that runs on the device must
// also run on the CPU in tests. Every driver below is written "block-collective": it is
// executed by all threads of one CUDA block on the device, and once by a HostBlock on the
// CPU that plays the block (same per-thread striding, same reduction tree), so the host
// build reproduces the device's summation order. Only the Blk primitives differ:
//   Blk::reduce(n, init, f, op) -> op-reduction of f(i), i in [0,n), result to all threads
//   Blk::for_each(n, f)         -> f(i) for every i, then a barrier
//   Blk::leader()               -> true on exactly one thread
// Arithmetic in the Gaussian passes and the Newton step uses non-contracted mul/add (no
// FMA) so device, host build and the numpy reference (runtime/decode.py) agree bitwise.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#include <cuda_fp16.h>
#define DP_HD __host__ __device__ __forceinline__
#else
#define DP_HD inline
#endif

namespace dynpose {

constexpr int kBlockThreads = 256;  // power of two: the reduction tree halves it
constexpr int kMaxRadius = 9;       // ceil(3 * kVarMax)
constexpr int kMaxKeypoints = 32;
constexpr int kBisectIters = 30;    // tau bracket 2^-30 wide before the exact correction
constexpr double kVarMin = 0.55;
constexpr double kVarMax = 3.0;

enum DecodeMode : int32_t { kModeHeatmap = 0, kModeProbmap = 1 };

// Everything the decode kernel needs, passed by value (about 1.5 KB) so the plugin
// needs no device allocation. Filled on the host by make_decode_params().
struct DecodeParams {
    int32_t K, H, W;
    int32_t mode;       // DecodeMode
    int32_t normalize;  // probmap mode: 1 = input is logits, sparsemax first; 0 = probabilities
    float scale;        // 1 / temperature, applied to logits before sparsemax
    int32_t radius[kMaxKeypoints];
    float taps[kMaxKeypoints][kMaxRadius + 1];  // half taps h[0..R], zero past R
};

struct ArgMax {
    float v;
    int32_t i;
};

// ---- exact fp16 <-> fp32 (intrinsics on device, bit manipulation on the host) ----
DP_HD float half_bits_to_float(uint16_t h) {
#ifdef __CUDA_ARCH__
    return __half2float(__ushort_as_half(h));
#else
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    float f;
    if (e == 0) {
        f = static_cast<float>(m) * 5.9604644775390625e-8f;  // m * 2^-24, exact
        uint32_t b;
        std::memcpy(&b, &f, 4);
        b |= sign;
        std::memcpy(&f, &b, 4);
        return f;
    }
    uint32_t b = (e == 31) ? (sign | 0x7f800000u | (m << 13)) : (sign | ((e + 112u) << 23) | (m << 13));
    std::memcpy(&f, &b, 4);
    return f;
#endif
}

DP_HD uint16_t float_to_half_bits(float f) {  // round to nearest even
#ifdef __CUDA_ARCH__
    return __half_as_ushort(__float2half_rn(f));
#else
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) return sign | 0x7c00u | (x > 0x7f800000u ? 0x200u : 0u);
    if (x >= 0x47800000u) return sign | 0x7c00u;  // >= 65536: overflow to inf
    if (x < 0x38800000u) {                          // below 2^-14: subnormal (or zero)
        float a;
        std::memcpy(&a, &x, 4);
        return sign | static_cast<uint16_t>(std::nearbyint(a * 16777216.0f));  // a * 2^24, exact
    }
    uint32_t h = ((((x >> 23) - 112u) << 10) | ((x & 0x7fffffu) >> 13));
    const uint32_t rem = x & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // carry may reach inf: correct
    return sign | static_cast<uint16_t>(h);
#endif
}

DP_HD float to_float(float v) { return v; }
DP_HD float to_float(uint16_t v) { return half_bits_to_float(v); }
DP_HD void from_float(float v, float* out) { *out = v; }
DP_HD void from_float(float v, uint16_t* out) { *out = float_to_half_bits(v); }

// ---- non-contracted arithmetic: keeps device results bitwise equal to numpy ----
DP_HD float mul(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}
DP_HD float add(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}
DP_HD float sub(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}

DP_HD bool is_bad(float v) { return v != v || v == INFINITY || v == -INFINITY; }
DP_HD bool is_nan_or_posinf(float v) { return v != v || v == INFINITY; }

// scipy 'reflect' border (d c b a | a b c d | d c b a) for any offset: period 2n.
DP_HD int reflect(int i, int n) {
    int m = i % (2 * n);
    if (m < 0) m += 2 * n;
    return m >= n ? 2 * n - 1 - m : m;
}

struct OpAdd {
    template <class T> DP_HD T operator()(T a, T b) const { return a + b; }
};
struct OpMax {
    DP_HD float operator()(float a, float b) const { return a > b ? a : b; }
};
struct OpArgMax {  // larger value wins, ties go to the smaller index (numpy's first occurrence)
    DP_HD ArgMax operator()(ArgMax a, ArgMax b) const {
        if (a.i < 0) return b;
        if (b.i < 0) return a;
        return (b.v > a.v || (b.v == a.v && b.i < a.i)) ? b : a;
    }
};

// ---- host-only parameter setup (double precision, same formula as runtime/decode.py) ----
inline double oks_variance(float sigma, int H, int W) {
    const double s2 = 2.0 * static_cast<double>(sigma);
    double s = s2 * s2 * std::sqrt((H / 1.25) * (W / 1.25)) * 2.0;
    return s < kVarMin ? kVarMin : (s > kVarMax ? kVarMax : s);
}

inline int oks_half_taps(float sigma, int H, int W, float* taps) {
    const double s = oks_variance(sigma, H, W);
    const int R = static_cast<int>(std::ceil(3.0 * s));
    double g[kMaxRadius + 1];
    double tail = 0.0;
    for (int d = 0; d <= kMaxRadius; ++d) {
        g[d] = d <= R ? std::exp(-static_cast<double>(d * d) / (2.0 * s)) : 0.0;
        if (d > 0) tail += g[d];
    }
    const double total = g[0] + 2.0 * tail;
    for (int d = 0; d <= kMaxRadius; ++d) taps[d] = static_cast<float>(g[d] / total);
    return R;
}

// Returns 0, or a negative code: -1 K out of range, -2 map too small/large, -3 bad mode.
inline int make_decode_params(DecodeParams* p, int K, int H, int W, int mode, int normalize,
                              float temperature, const float* sigmas) {
    std::memset(p, 0, sizeof(*p));
    if (K < 1 || K > kMaxKeypoints) return -1;
    if (H < 1 || W < 1 || H * W > 8192) return -2;
    if (mode != kModeHeatmap && mode != kModeProbmap) return -3;
    p->K = K;
    p->H = H;
    p->W = W;
    p->mode = mode;
    p->normalize = normalize;
    p->scale = static_cast<float>(1.0 / static_cast<double>(temperature));
    if (mode == kModeProbmap)
        for (int k = 0; k < K; ++k) p->radius[k] = oks_half_taps(sigmas[k], H, W, p->taps[k]);
    return 0;
}

// ---- block-collective drivers ----

// Sparsemax of buf[0..n) in place. Returns false (row set to NaN) for NaN/+inf/all -inf.
// Shift by the max, bisect tau in [-1, 0] (f(-1) >= 0 > f(0)), then one exact step
// tau = (sum_{u>lo} u - 1) / |{u > lo}| on the support the bracket identifies.
template <class Blk>
DP_HD bool sparsemax_row(Blk& blk, float* buf, int n) {
    const int bad = blk.reduce(n, 0, [&](int i) { return is_nan_or_posinf(buf[i]) ? 1 : 0; }, OpAdd());
    const float m = blk.reduce(n, -INFINITY, [&](int i) { return buf[i]; }, OpMax());
    if (bad > 0 || !(m > -INFINITY)) {
        blk.for_each(n, [&](int i) { buf[i] = NAN; });
        return false;
    }
    blk.for_each(n, [&](int i) { buf[i] = buf[i] - m; });
    float lo = -1.0f, hi = 0.0f;
    for (int it = 0; it < kBisectIters; ++it) {
        const float mid = 0.5f * (lo + hi);
        const float s = blk.reduce(n, 0.0f, [&](int i) { const float d = buf[i] - mid; return d > 0.0f ? d : 0.0f; },
                                   OpAdd());
        if (s >= 1.0f) lo = mid; else hi = mid;
    }
    // tau and u - tau in double: in float32 each p = u - tau carries tau's rounding (up to half an
    // ulp of the largest |u|) with the same sign, so on a wide support the sum drifts from 1 by
    // n ulps (1.4e-5 for 0.5 and 499 zeros). Once per element, so double costs little on the GPU.
    const int cnt = blk.reduce(n, 0, [&](int i) { return buf[i] > lo ? 1 : 0; }, OpAdd());
    const double sum = blk.reduce(n, 0.0, [&](int i) { return buf[i] > lo ? static_cast<double>(buf[i]) : 0.0; },
                                  OpAdd());
    const double tau = (sum - 1.0) / static_cast<double>(cnt);
    blk.for_each(n, [&](int i) {
        const double d = static_cast<double>(buf[i]) - tau;
        buf[i] = d > 0.0 ? static_cast<float>(d) : 0.0f;
    });
    return true;
}

// One Newton step on a 3-point stencil (b, c, a) = (left, centre, right); 0 unless concave.
DP_HD float newton_step(float a, float b, float c) {
    const float g = mul(0.5f, sub(a, b));
    const float h = sub(add(a, b), mul(2.0f, c));
    return h < 0.0f ? -(g / h) : 0.0f;
}

DP_HD float quarter_shift(float a, float b) {
    const float d = sub(a, b);
    return d > 0.0f ? 0.25f : (d < 0.0f ? -0.25f : 0.0f);
}

// Writes keypoint (x, y) and score for one map held in P[H*W]; T is scratch of the same size.
// P must already be validated (finite). Leaves E in P for probmap mode.
template <class Blk>
DP_HD void decode_row(Blk& blk, const DecodeParams& p, int k, float* P, float* T, float* xy, float* score) {
    const int H = p.H, W = p.W, n = H * W;
    if (p.mode == kModeProbmap) {
        const float* h = p.taps[k];
        const int R = p.radius[k];
        blk.for_each(n, [&](int i) {
            const int y = i / W, x = i - y * W;
            const float* row = P + y * W;
            float acc = mul(h[0], row[x]);
            for (int d = 1; d <= R; ++d) acc = add(acc, mul(h[d], add(row[reflect(x - d, W)], row[reflect(x + d, W)])));
            T[i] = acc;
        });
        blk.for_each(n, [&](int i) {
            const int y = i / W, x = i - y * W;
            float acc = mul(h[0], T[i]);
            for (int d = 1; d <= R; ++d)
                acc = add(acc, mul(h[d], add(T[reflect(y - d, H) * W + x], T[reflect(y + d, H) * W + x])));
            P[i] = acc;
        });
    }
    const ArgMax am = blk.reduce(n, ArgMax{-INFINITY, -1}, [&](int i) { return ArgMax{P[i], i}; }, OpArgMax());
    if (blk.leader()) {
        const int y = am.i / W, x = am.i - y * W;
        const float c = P[am.i];
        float dx = 0.0f, dy = 0.0f;
        if (x > 0 && x < W - 1)
            dx = p.mode == kModeProbmap ? newton_step(P[am.i + 1], P[am.i - 1], c) : quarter_shift(P[am.i + 1], P[am.i - 1]);
        if (y > 0 && y < H - 1)
            dy = p.mode == kModeProbmap ? newton_step(P[am.i + W], P[am.i - W], c) : quarter_shift(P[am.i + W], P[am.i - W]);
        xy[0] = add(static_cast<float>(x), dx);
        xy[1] = add(static_cast<float>(y), dy);
        *score = am.v;
    }
}

// Loads one map (fp32 or fp16 bits), validates it, optionally runs sparsemax, then decodes.
// Invalid maps give (NaN, NaN) with score 0, the documented contract of runtime/decode.py.
// Loads one map into P, then validates it (and runs sparsemax on logits); false when invalid.
template <class Blk, class TIn>
DP_HD bool load_map(Blk& blk, const DecodeParams& p, const TIn* in, float* P) {
    const int n = p.H * p.W;
    const bool logits = p.mode == kModeProbmap && p.normalize;
    blk.for_each(n, [&](int i) { P[i] = logits ? to_float(in[i]) * p.scale : to_float(in[i]); });
    if (logits) return sparsemax_row(blk, P, n);
    return blk.reduce(n, 0, [&](int i) { return is_bad(P[i]) ? 1 : 0; }, OpAdd()) == 0;
}

template <class Blk>
DP_HD void invalid_keypoint(Blk& blk, float* xy, float* score) {
    if (blk.leader()) {
        xy[0] = NAN;
        xy[1] = NAN;
        *score = 0.0f;
    }
}

template <class Blk, class TIn>
DP_HD void decode_map(Blk& blk, const DecodeParams& p, int k, const TIn* in, float* P, float* T, float* xy,
                      float* score) {
    if (!load_map(blk, p, in, P)) return invalid_keypoint(blk, xy, score);
    decode_row(blk, p, k, P, T, xy, score);
}

}  // namespace dynpose
