// FROZEN COPY (bench/native_frozen.py): runtime/heads/rowmath.cpp as it stood when the gates
// decode_over_frozen and regions_over_frozen were set on it (session 14). Do not edit it to follow
// the runtime; re-freeze it (copy the file again) when the runtime's C++ is made faster on purpose.
//
// The CPU path's per-map maths in C++: the ProbPose decode and the calibrated credible regions
// (runtime/heads/native.py loads this through ctypes; runtime/heads/decode.py and credible.py
// are the numpy references it is tested against, tests/test_native_rowmath.py).
//
// Why hand-written and not the kernels' host build (kernels/host_api.cpp): that one runs the
// CUDA drivers on a host stand-in for a thread block, dense and with its barriers, so it is an
// oracle, not a fast path (12 ms per crop on the fixture's maps, against 2.2 ms in numpy). Here
// each map is one plain loop nest that skips what sparsemax leaves at exactly zero.
//
// Arithmetic contract: the decode does the reference's float32 operations in its order
// (built with -ffp-contract=off, no fast-math), so its keypoints and scores are bitwise the
// numpy reference's. The regions sum in another order than numpy's matrix products and
// pairwise sums (float64): counts agree up to one pixel where a running sum meets q within
// rounding, thresholds and ellipses to ~1e-12 relative (pixels within 1e-9 of the last one
// taken are tied with it on both sides, so the summation order does not pick the set).
#ifdef DPN_PYTHON_MODULE  // setup.py's build: also an (empty) importable extension module
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

// The float64 products of the regions run twice as wide with AVX2 where the CPU has it (one
// build serves both: GCC/Clang function multi-versioning picks at load time).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DPN_WIDE __attribute__((target_clones("avx2", "default")))
#else
#define DPN_WIDE
#endif

// scipy/numpy "symmetric" border (d c b a | a b c d | d c b a) for any integer i.
inline int reflect(int i, int n) {
    int m = i % (2 * n);
    if (m < 0) m += 2 * n;
    return m >= n ? 2 * n - 1 - m : m;
}

// Scratch of the decode, sized once per call and reused for every map.
struct DecodeScratch {
    std::vector<float> T, E, pad, zero;
    std::vector<char> live;
    std::vector<const float*> up, dn;
    DecodeScratch(int H, int W, int rmax)
        : T(static_cast<size_t>(H) * W), E(static_cast<size_t>(H) * W), pad(W + 2 * rmax), zero(W, 0.0f),
          live(H), up(rmax + 1), dn(rmax + 1) {}
};

// One map's expected-OKS decode.
void decode_map(const float* src, int H, int W, const float* half, int R, DecodeScratch& s, float* kp,
                float* score) {
    const int n = H * W;
    float *T = s.T.data(), *E = s.E.data();
    // one pass over the bits, per image row: any NaN/inf (exponent all ones), any non-zero
    int first = -1, last = -1;
    std::vector<char>& live = s.live;
    std::fill(live.begin(), live.end(), 0);
    uint32_t nonfinite = 0;
    for (int y = 0; y < H; ++y) {
        const float* row = src + static_cast<size_t>(y) * W;
        uint32_t any = 0, inf = 0;
        for (int x = 0; x < W; ++x) {
            uint32_t bits;
            std::memcpy(&bits, row + x, 4);
            any |= bits & 0x7fffffffu;
            inf |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
        }
        nonfinite |= inf;
        if (any) {
            live[y] = 1;
            if (first < 0) first = y;
            last = y;
        }
    }
    if (nonfinite) {
        kp[0] = kp[1] = std::nanf("");
        *score = 0.0f;
        return;
    }
    std::memset(E, 0, sizeof(float) * n);
    if (first >= 0) {
        // horizontal pass on the live rows (a row of zeros passes to exact +0), each row first
        // copied into a buffer padded by R on both sides with the reflect border
        std::vector<float>& pad = s.pad;
        for (int y = first - R < 0 ? 0 : first - R; y < H && y <= last + R; ++y) {
            float* t = T + static_cast<size_t>(y) * W;
            if (!live[y]) {
                std::memset(t, 0, sizeof(float) * W);
                continue;
            }
            const float* row = src + static_cast<size_t>(y) * W;
            for (int i = -R; i < W + R; ++i) pad[i + R] = row[reflect(i, W)];
            const float* c = pad.data() + R;
            for (int x = 0; x < W; ++x) t[x] = half[0] * c[x];
            for (int d = 1; d <= R; ++d) {
                const float h = half[d];
                for (int x = 0; x < W; ++x) {
                    float tmp = c[x - d] + c[x + d];
                    tmp *= h;
                    t[x] += tmp;
                }
            }
        }
        // vertical pass on the band within R rows of a live row; every other row sums zeros.
        // Rows reached through the border reflect lie within R of the edge, inside the band's
        // own reach, so rows of T outside [first-R, last+R] are never read as non-zero.
        const int lo = std::max(first - R, 0), hi = std::min(last + R + 1, H);
        std::vector<const float*>&up = s.up, &dn = s.dn;
        const std::vector<float>& zero = s.zero;
        for (int y = lo; y < hi; ++y) {
            for (int d = 0; d <= R; ++d) {
                const int a = reflect(y - d, H), b = reflect(y + d, H);
                up[d] = a < first - R || a > last + R ? zero.data() : T + static_cast<size_t>(a) * W;
                dn[d] = b < first - R || b > last + R ? zero.data() : T + static_cast<size_t>(b) * W;
            }
            float* e = E + static_cast<size_t>(y) * W;
            const float* c = up[0];
            for (int x = 0; x < W; ++x) e[x] = half[0] * c[x];
            for (int d = 1; d <= R; ++d) {
                const float *a = up[d], *b = dn[d];
                const float h = half[d];
                for (int x = 0; x < W; ++x) {
                    float tmp = a[x] + b[x];
                    tmp *= h;
                    e[x] += tmp;
                }
            }
        }
    }
    // first-index argmax in row-major order (a NaN, as numpy's argmax, wins at its first place).
    // Outside the band E is +0: a positive maximum in the band is the map's; otherwise scan all.
    int best = 0;
    float bv = E[0];
    const int b0 = first >= 0 ? std::max(first - R, 0) * W : 0;
    const int b1 = first >= 0 ? std::min(last + R + 1, H) * W : 0;
    for (int pass = 0; pass < 2; ++pass) {
        const int i0 = pass == 0 ? b0 : 0, i1 = pass == 0 ? b1 : n;
        if (i0 >= i1) continue;
        best = i0;
        bv = E[i0];
        if (!std::isnan(bv)) {
            for (int i = i0 + 1; i < i1; ++i) {
                const float v = E[i];
                if (v > bv) {
                    best = i;
                    bv = v;
                } else if (v != v) {
                    best = i;
                    bv = v;
                    break;
                }
            }
        }
        if (pass == 0 && (bv > 0.0f || std::isnan(bv))) break;
        if (pass == 0 && b0 == 0 && b1 == n) break;
    }
    const int bx = best % W, by = best / W;
    const float c = E[best];
    float out[2] = {static_cast<float>(bx), static_cast<float>(by)};
    for (int ax = 0; ax < 2; ++ax) {
        const int pos = ax == 0 ? bx : by, size = ax == 0 ? W : H;
        const int lo = std::min(std::max(pos - 1, 0), size - 1), hi = std::min(std::max(pos + 1, 0), size - 1);
        const float a = ax == 0 ? E[by * W + hi] : E[hi * W + bx];
        const float b = ax == 0 ? E[by * W + lo] : E[lo * W + bx];
        const float g = 0.5f * (a - b);
        const float hess = (a + b) - 2.0f * c;
        const bool ok = pos > 0 && pos < size - 1 && hess < 0.0f;
        const float step = ok ? (-g) / hess : 0.0f;
        out[ax] += step;
    }
    kp[0] = out[0];
    kp[1] = out[1];
    *score = bv;
}

// The calibrated blur of one map (float64, separable, zero border) into B, not yet renormalised:
// only image rows and columns holding a non-zero enter the products (sparsemax keeps a few pixels
// per map), and each output row is summed in registers, eight columns at a time, over those rows.
DPN_WIDE void blur_map(const float* src, int H, int W, const double* kh, const double* kw, double* U, double* B,
                       std::vector<int>& rows) {
    rows.clear();
    for (int y = 0; y < H; ++y) {
        double* u = U + static_cast<size_t>(y) * W;
        bool any = false;
        for (int x = 0; x < W; ++x) {
            float v = src[static_cast<size_t>(y) * W + x];
            if (!std::isfinite(v)) v = 0.0f;  // as numpy.nan_to_num(nan=0, posinf=0, neginf=0)
            if (v == 0.0f) continue;
            if (!any) {
                std::memset(u, 0, sizeof(double) * W);
                any = true;
            }
            const double* k = kw + static_cast<size_t>(x) * W;
            for (int j = 0; j < W; ++j) u[j] += static_cast<double>(v) * k[j];
        }
        if (any) rows.push_back(y);
    }
    const int nr = static_cast<int>(rows.size());
    for (int y = 0; y < H; ++y) {
        double* b = B + static_cast<size_t>(y) * W;
        const double* g = kh + static_cast<size_t>(y) * H;
        int j = 0;
        for (; j + 8 <= W; j += 8) {
            double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int i = 0; i < nr; ++i) {
                const double w = g[rows[i]];
                const double* u = U + static_cast<size_t>(rows[i]) * W + j;
                for (int t = 0; t < 8; ++t) acc[t] += w * u[t];
            }
            for (int t = 0; t < 8; ++t) b[j + t] = acc[t];
        }
        for (; j < W; ++j) {
            double acc = 0.0;
            for (int i = 0; i < nr; ++i) acc += g[rows[i]] * U[static_cast<size_t>(rows[i]) * W + j];
            b[j] = acc;
        }
    }
}

struct Moments {
    double n = 0, sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
};

void ellipse_of(const Moments& m, double* out) {
    const double cnt = std::max(m.n, 1.0);
    const double mx = m.sx / cnt, my = m.sy / cnt;
    const double vxx = m.sxx / cnt - mx * mx + 1.0 / 12, vyy = m.syy / cnt - my * my + 1.0 / 12;
    const double vxy = m.sxy / cnt - mx * my;
    const double tr = vxx + vyy, det = vxx * vyy - vxy * vxy;
    const double disc = std::sqrt(std::max(tr * tr / 4 - det, 0.0));
    const double l1 = tr / 2 + disc, l2 = std::max(tr / 2 - disc, 0.0);
    out[0] = mx;
    out[1] = my;
    out[2] = 2 * std::sqrt(l1);
    out[3] = 2 * std::sqrt(l2);
    out[4] = 0.5 * std::atan2(2 * vxy, vxx - vyy);
}

constexpr int kBins = 512;
constexpr double kTieRtol = 1e-9;  // runtime.heads.credible.TIE_RTOL: tied with the last pixel taken
constexpr int kLanes = 4;  // interleaved copies of the histogram: consecutive pixels (often in the
                           // same bin of a smooth map) do not wait on each other's increments

// Scratch reused across the maps of one call.
struct RegionScratch {
    std::vector<int> bin_count = std::vector<int>(kBins * kLanes);
    std::vector<double> bin_mass = std::vector<double>(kBins * kLanes);
    std::vector<uint16_t> bin_of;
    std::vector<double> vals;
};

// Smallest-set regions of one map of values v (>= 0, finite) for the masses qs (ascending, as
// order lists them): pixel counts, threshold probabilities and moment ellipses. A histogram of
// the values (pixels and raw mass per bin) finds each mass' boundary bin in one pass; only that
// bin's values are sorted. Equal to sorting the whole map, up to the order the running sum adds in.
DPN_WIDE void regions_of(const double* v, int H, int W, double total, double vmax, int Q, const double* qs,
                        const int* order, int64_t* counts, double* thr, double* ell, int R, RegionScratch& s) {
    const int n = H * W;
    if (!(total > 0.0) || !(vmax > 0.0)) {
        for (int q = 0; q < Q; ++q) {
            counts[static_cast<size_t>(q) * R] = 0;
            thr[static_cast<size_t>(q) * R] = 0.0;
            for (int j = 0; j < 5; ++j) ell[static_cast<size_t>(q) * R * 5 + j] = std::nan("");
        }
        return;
    }
    std::fill(s.bin_count.begin(), s.bin_count.end(), 0);
    std::fill(s.bin_mass.begin(), s.bin_mass.end(), 0.0);
    s.bin_of.resize(n);
    const double scale = kBins / vmax;
    int* cnt = s.bin_count.data();
    double* mass = s.bin_mass.data();
    for (int i = 0; i < n; ++i) {
        const int b = v[i] > 0.0 ? std::min(static_cast<int>(v[i] * scale), kBins - 1) : kBins;
        s.bin_of[i] = static_cast<uint16_t>(b);  // kBins: a zero, in no region
        if (b == kBins) continue;
        const int lane = (i & (kLanes - 1)) * kBins;
        ++cnt[lane + b];
        mass[lane + b] += v[i];
    }
    int positive = 0, top = -1;
    for (int b = 0; b < kBins; ++b) {
        for (int l = 1; l < kLanes; ++l) {
            cnt[b] += cnt[l * kBins + b];
            mass[b] += mass[l * kBins + b];
        }
        positive += cnt[b];
        if (cnt[b]) top = b;
    }
    // One walk down the bins serves every mass (ascending): the running sum is kept in raw
    // units against q * total; inside the boundary bin each value is divided as the definition
    // divides (p = v / total).
    double raw[8];
    double run = 0.0;  // raw mass of the bins above b
    int64_t taken = 0;
    int b = top;
    for (int oi = 0; oi < Q; ++oi) {
        const int q = order[oi];
        const double target = qs[q] - 1e-12;
        const double goal = target * total;  // the bins are compared in raw units (see above)
        // run < goal on entry, so the bin this stops at holds mass: it is never empty
        while (b >= 0 && run + mass[b] < goal) {
            run += mass[b];
            taken += cnt[b];
            --b;
        }
        if (b < 0) {  // rounding kept the sum under q: every positive pixel is in
            counts[static_cast<size_t>(q) * R] = positive;
            double lo = vmax;
            for (int i = 0; i < n; ++i)
                if (v[i] > 0.0) lo = std::min(lo, v[i]);
            raw[q] = lo;
        } else {
            s.vals.clear();
            for (int i = 0; i < n; ++i)
                if (s.bin_of[i] == b) s.vals.push_back(v[i]);
            std::sort(s.vals.begin(), s.vals.end(), [](double x, double y) { return x > y; });
            double p = run / total;
            size_t j = 0;
            for (; j + 1 < s.vals.size(); ++j) {
                p += s.vals[j] / total;
                if (p >= target) break;
            }
            counts[static_cast<size_t>(q) * R] = taken + static_cast<int64_t>(j) + 1;
            raw[q] = s.vals[j];
        }
        thr[static_cast<size_t>(q) * R] = raw[q] / total;
    }
    // Moments of {v >= raw[q] (1 - kTieRtol)} (ties with the last pixel taken are all in; zeros
    // never are, as raw > 0): per image row, integer sums of the pixel count, x and x^2 (exact,
    // and vectorised).
    Moments mom[8];
    for (int q = 0; q < Q; ++q) {
        const double t = raw[q] * (1.0 - kTieRtol);
        Moments& m = mom[q];
        for (int y = 0; y < H; ++y) {
            const double* row = v + static_cast<size_t>(y) * W;
            int64_t c = 0, sx = 0, sxx = 0;
            for (int x = 0; x < W; ++x) {
                const int64_t in = row[x] >= t;
                c += in;
                sx += in * x;
                sxx += in * x * x;
            }
            m.n += static_cast<double>(c);
            m.sx += static_cast<double>(sx);
            m.sy += static_cast<double>(c) * y;
            m.sxx += static_cast<double>(sxx);
            m.syy += static_cast<double>(c) * y * y;
            m.sxy += static_cast<double>(sx) * y;
        }
    }
    for (int q = 0; q < Q; ++q) ellipse_of(mom[q], ell + static_cast<size_t>(q) * R * 5);
}

}  // namespace

constexpr int kMaxSide = 4096;  // map sides (and taps) up to this: H * W and the pads stay in int

#ifndef DPN_SOURCE_DIGEST
#define DPN_SOURCE_DIGEST "unknown"
#endif

extern "C" {

// The first 16 hex digits of this file's sha256, as setup.py computed them at build time.
const char* dpn_source_digest() { return DPN_SOURCE_DIGEST; }

// maps [R,H,W] float32 (R = N*K, keypoint r % K); half [K, Rmax+1] float32 taps and radii [K] as
// runtime.heads.decode.oks_half_taps makes them -> kp [R,2], score [R]. Returns 0, or -1 on bad sizes.
int dpn_decode_probmaps(const float* maps, int rows, int K, int H, int W, const float* half, int rmax,
                        const int64_t* radii, float* kp, float* score) {
    if (rows < 0 || K < 1 || H < 1 || W < 1 || rmax < 0 || (rows && rows % K) || H > kMaxSide || W > kMaxSide ||
        rmax > kMaxSide)
        return -1;
    for (int k = 0; k < K; ++k)
        if (radii[k] < 0 || radii[k] > rmax) return -1;
    const size_t n = static_cast<size_t>(H) * W;
    DecodeScratch scratch(H, W, rmax);
    for (int r = 0; r < rows; ++r) {
        const int k = r % K;
        decode_map(maps + r * n, H, W, half + static_cast<size_t>(k) * (rmax + 1), static_cast<int>(radii[k]),
                   scratch, kp + 2 * static_cast<size_t>(r), score + r);
    }
    return 0;
}

// Calibrated credible regions: maps [R,H,W] float32, blurred by sigma heatmap pixels first when
// sigma > 0 (runtime.heads.credible.blur_maps), then the smallest sets holding each of the Q
// masses (credible_regions). counts [Q,R] int64, thr [Q,R], ell [Q,R,5] float64.
int dpn_regions(const float* maps, int rows, int H, int W, double sigma, int Q, const double* qs,
                int64_t* counts, double* thr, double* ell) {
    if (rows < 0 || H < 1 || W < 1 || H > kMaxSide || W > kMaxSide || Q < 0 || Q > 8 || !(sigma >= 0.0)) return -1;
    for (int q = 0; q < Q; ++q)
        if (!(qs[q] > 0.0 && qs[q] <= 1.0)) return -2;
    int order[8];
    for (int q = 0; q < Q; ++q) {  // masses ascending (insertion: Q <= 8)
        int j = q;
        for (; j > 0 && qs[order[j - 1]] > qs[q]; --j) order[j] = order[j - 1];
        order[j] = q;
    }
    const size_t n = static_cast<size_t>(H) * W;
    std::vector<double> kh(static_cast<size_t>(H) * H), kw(static_cast<size_t>(W) * W), U(n), B(n);
    if (sigma > 0.0) {
        for (int a = 0; a < H; ++a)
            for (int b = 0; b < H; ++b) kh[a * H + b] = std::exp(-double(a - b) * (a - b) / (2.0 * sigma * sigma));
        for (int a = 0; a < W; ++a)
            for (int b = 0; b < W; ++b) kw[a * W + b] = std::exp(-double(a - b) * (a - b) / (2.0 * sigma * sigma));
    }
    RegionScratch scratch;
    std::vector<int> live;
    for (int r = 0; r < rows; ++r) {
        const float* src = maps + r * n;
        double tot = 1.0;
        if (sigma > 0.0) {
            blur_map(src, H, W, kh.data(), kw.data(), U.data(), B.data(), live);
            double part[4] = {0.0, 0.0, 0.0, 0.0};  // as numpy: the blurred total, then divide by it
            size_t i = 0;
            for (; i + 4 <= n; i += 4)
                for (int j = 0; j < 4; ++j) part[j] += B[i + j];
            for (; i < n; ++i) part[0] += B[i];
            tot = (part[0] + part[1]) + (part[2] + part[3]);
        } else {
            for (size_t i = 0; i < n; ++i) B[i] = src[i];
        }
        // one pass: renormalise (an empty blur is all zero), clean as credible._cleaned (non-finite
        // or negative -> 0), and the cleaned map's total and maximum (four partial sums)
        const double keep = tot > 0.0 ? 1.0 : 0.0, div = tot > 0.0 ? tot : 1.0;
        for (size_t i = 0; i < n; ++i) {
            const double v = B[i] / div * keep;
            B[i] = v > 0.0 && v <= 1.7976931348623157e308 ? v : 0.0;
        }
        double part[4] = {0.0, 0.0, 0.0, 0.0}, top[4] = {0.0, 0.0, 0.0, 0.0};
        size_t i = 0;
        for (; i + 4 <= n; i += 4)
            for (int j = 0; j < 4; ++j) {
                part[j] += B[i + j];
                top[j] = B[i + j] > top[j] ? B[i + j] : top[j];
            }
        for (; i < n; ++i) {
            part[0] += B[i];
            top[0] = B[i] > top[0] ? B[i] : top[0];
        }
        const double total = (part[0] + part[1]) + (part[2] + part[3]);
        const double vmax = std::max(std::max(top[0], top[1]), std::max(top[2], top[3]));
        regions_of(B.data(), H, W, total, vmax, Q, qs, order, counts + r, thr + r,
                   ell + static_cast<size_t>(r) * 5, rows, scratch);
    }
    return 0;
}

}  // extern "C"

#ifdef DPN_PYTHON_MODULE
// An empty module, so that importing every module of the package (pkgutil, the layering test)
// finds an importable one; the functions are reached through ctypes (runtime/heads/native.py).
static struct PyModuleDef dpn_module = {
    PyModuleDef_HEAD_INIT, "_rowmath", "C++ row maths of the CPU path; loaded through ctypes by runtime.heads.native",
    -1, nullptr, nullptr, nullptr, nullptr, nullptr};
PyMODINIT_FUNC PyInit__rowmath(void) { return PyModule_Create(&dpn_module); }
#endif
