// Credible regions of one probability map, block-collective like dynpose_rowmath.cuh (same
// Blk primitives, so the host build replays the device's reduction order).
//
// Definition (runtime/heads/credible.py, the reference): the q-region is the smallest set of
// pixels whose probabilities add up to q of the map's mass, taken in decreasing probability;
// its area is that pixel count and its ellipse has the second moments of the pixels at or
// above the last one taken (ties all in). Why no sort: for non-negative floats the order of
// the values is the order of their bit patterns, so the last pixel's value t is found by
// bisection over the 31 bit-pattern bits, each step one mass reduction over the map in shared
// memory (O(31 HW), no sort, no extra storage). The count then follows from the mass above t
// and the ties at t, exactly as a cumulative sum in decreasing order would count it.
//
// The coverage calibration (CoverageMap) enters as the nominal masses (the plugin attribute)
// and, when it fitted a blur, as sigma: the regions are taken on the map convolved with an
// untruncated Gaussian, zero border (CoverageMap.prepare / blur_maps).
#pragma once

#include "dynpose_rowmath.cuh"

namespace dynpose {

constexpr int kMaxMasses = 4;
constexpr int kMaxBlurTaps = 256;  // longest map side a calibrated blur accepts
constexpr double kMassSlack = 1e-12;  // credible.py: a running sum within 1e-12 of q has reached q

struct RegionParams {
    int32_t Q;                   // number of masses (0: no regions)
    float masses[kMaxMasses];    // nominal map masses in (0, 1]
    int32_t blur;                // 1: take the regions on the blurred map
    float gauss[kMaxBlurTaps];   // exp(-d^2 / (2 sigma^2)), d = 0..max(H, W) - 1
};

// Returns 0, or a negative code: -4 too many masses, -5 a mass outside (0, 1], -6 map side too
// long for the blur, -7 sigma not finite.
inline int make_region_params(RegionParams* r, int Q, const float* masses, float sigma, int H, int W) {
    std::memset(r, 0, sizeof(*r));
    if (Q < 0 || Q > kMaxMasses) return -4;
    for (int i = 0; i < Q; ++i) {
        if (!(masses[i] > 0.0f && masses[i] <= 1.0f)) return -5;
        r->masses[i] = masses[i];
    }
    r->Q = Q;
    if (!(sigma >= 0.0f) || sigma == INFINITY) return -7;
    if (sigma > 0.0f) {
        if (H > kMaxBlurTaps || W > kMaxBlurTaps) return -6;
        r->blur = 1;
        const double s = static_cast<double>(sigma);
        for (int d = 0; d < kMaxBlurTaps; ++d) r->gauss[d] = static_cast<float>(std::exp(-(d * d) / (2.0 * s * s)));
    }
    return 0;
}

DP_HD uint32_t float_bits(float v) {
#ifdef __CUDA_ARCH__
    return static_cast<uint32_t>(__float_as_uint(v));
#else
    uint32_t b;
    std::memcpy(&b, &v, 4);
    return b;
#endif
}

DP_HD float bits_float(uint32_t b) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(b);
#else
    float v;
    std::memcpy(&v, &b, 4);
    return v;
#endif
}

// Bit pattern of a pixel's probability, 0 for zero, negative (clamped as in credible.py) or -0.
DP_HD uint32_t prob_bits(float v) { return v > 0.0f ? float_bits(v) : 0u; }

struct OpMaxU {
    DP_HD uint32_t operator()(uint32_t a, uint32_t b) const { return a > b ? a : b; }
};

// U = P convolved with the calibration Gaussian (rows, then columns; T is scratch).
template <class Blk>
DP_HD void blur_map(Blk& blk, const RegionParams& r, int H, int W, const float* P, float* T, float* U) {
    const int n = H * W;
    blk.for_each(n, [&](int i) {
        const int y = i / W, x = i - y * W;
        float acc = 0.0f;
        for (int j = 0; j < W; ++j) acc = add(acc, mul(P[y * W + j], r.gauss[j > x ? j - x : x - j]));
        T[i] = acc;
    });
    blk.for_each(n, [&](int i) {
        const int y = i / W, x = i - y * W;
        float acc = 0.0f;
        for (int j = 0; j < H; ++j) acc = add(acc, mul(T[j * W + x], r.gauss[j > y ? j - y : y - j]));
        U[i] = acc;
    });
}

// Mass (double) of the pixels whose bit pattern is at least b.
template <class Blk>
DP_HD double mass_from(Blk& blk, const float* U, int n, uint32_t b) {
    return blk.reduce(n, 0.0, [&](int i) { return prob_bits(U[i]) >= b ? static_cast<double>(U[i]) : 0.0; },
                      OpAdd());
}

// Writes Q pixel counts and Q ellipses (cx, cy, semi-major, semi-minor, angle) for map U.
// An empty map (no mass) gives count 0 and a NaN ellipse, as credible.py does.
template <class Blk>
DP_HD void map_regions(Blk& blk, const RegionParams& r, int H, int W, const float* U, float* pixels, float* ell) {
    const int n = H * W;
    const double total = blk.reduce(n, 0.0, [&](int i) { return U[i] > 0.0f ? static_cast<double>(U[i]) : 0.0; },
                                    OpAdd());
    const uint32_t top = blk.reduce(n, 0u, [&](int i) { return prob_bits(U[i]); }, OpMaxU());
    for (int qi = 0; qi < r.Q; ++qi) {
        if (!(total > 0.0)) {
            if (blk.leader()) {
                pixels[qi] = 0.0f;
                for (int j = 0; j < 5; ++j) ell[5 * qi + j] = NAN;
            }
            continue;
        }
        const double need = (static_cast<double>(r.masses[qi]) - kMassSlack) * total;
        // invariant: mass(>= lo) reaches the mass, mass(>= hi) does not
        uint32_t lo = 1u, hi = top + 1u;
        while (hi - lo > 1u) {
            const uint32_t mid = lo + (hi - lo) / 2u;
            if (mass_from(blk, U, n, mid) >= need) lo = mid; else hi = mid;
        }
        const double t = static_cast<double>(bits_float(lo));
        const double above = mass_from(blk, U, n, lo + 1u);
        const int n_above = blk.reduce(n, 0, [&](int i) { return prob_bits(U[i]) > lo ? 1 : 0; }, OpAdd());
        const int ties = blk.reduce(n, 0, [&](int i) { return prob_bits(U[i]) == lo ? 1 : 0; }, OpAdd());
        // moments of every pixel at or above t (integer sums: exact in double, in any order)
        double mom[6];
        for (int j = 0; j < 6; ++j)
            mom[j] = blk.reduce(n, 0.0, [&](int i) {
                if (prob_bits(U[i]) < lo) return 0.0;
                const double y = static_cast<double>(i / W), x = static_cast<double>(i % W);
                const double f[6] = {1.0, x, y, x * x, y * y, x * y};
                return f[j];
            }, OpAdd());
        if (blk.leader()) {
            double m = ::ceil((need - above) / t);  // ties needed after the pixels above t
            m = m < 1.0 ? 1.0 : (m > ties ? static_cast<double>(ties) : m);
            pixels[qi] = static_cast<float>(n_above + static_cast<int>(m));
            const double c = mom[0] > 1.0 ? mom[0] : 1.0;
            const double mx = mom[1] / c, my = mom[2] / c;
            // pixels are unit squares: + 1/12 per axis, so one pixel is a 1x1 region
            const double vxx = mom[3] / c - mx * mx + 1.0 / 12, vyy = mom[4] / c - my * my + 1.0 / 12;
            const double vxy = mom[5] / c - mx * my;
            const double tr = vxx + vyy, det = vxx * vyy - vxy * vxy;
            const double d2 = tr * tr / 4 - det;
            const double disc = ::sqrt(d2 > 0.0 ? d2 : 0.0);
            const double l1 = tr / 2 + disc, l2r = tr / 2 - disc, l2 = l2r > 0.0 ? l2r : 0.0;
            ell[5 * qi + 0] = static_cast<float>(mx);
            ell[5 * qi + 1] = static_cast<float>(my);
            ell[5 * qi + 2] = static_cast<float>(2.0 * ::sqrt(l1));
            ell[5 * qi + 3] = static_cast<float>(2.0 * ::sqrt(l2));
            ell[5 * qi + 4] = static_cast<float>(0.5 * ::atan2(2.0 * vxy, vxx - vyy));
        }
    }
}

// decode_map plus the regions: load and validate (sparsemax), regions on P (or its blur in U),
// then the keypoint decode, which overwrites P and T. Invalid maps: NaN keypoint, score 0,
// count 0 and NaN ellipses.
template <class Blk, class TIn>
DP_HD void decode_map_regions(Blk& blk, const DecodeParams& p, const RegionParams& r, int k, const TIn* in, float* P,
                              float* T, float* U, float* xy, float* score, float* pixels, float* ell) {
    if (!load_map(blk, p, in, P)) {
        invalid_keypoint(blk, xy, score);
        if (blk.leader())
            for (int qi = 0; qi < r.Q; ++qi) {
                pixels[qi] = 0.0f;
                for (int j = 0; j < 5; ++j) ell[5 * qi + j] = NAN;
            }
        return;
    }
    if (r.blur) blur_map(blk, r, p.H, p.W, P, T, U);
    map_regions(blk, r, p.H, p.W, r.blur ? U : P, pixels, ell);
    decode_row(blk, p, k, P, T, xy, score);
}

}  // namespace dynpose
