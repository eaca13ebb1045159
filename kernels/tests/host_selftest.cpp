// ctest: the kernels' row math on the CPU (HostBlock), checked against facts known
// exactly, so the C++ side is tested even where Python is absent (e.g. on a Jetson).
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "../host_block.h"
#include "../simcc_rowmath.cuh"

using namespace dynpose;

namespace {
int gFailures = 0;

void check(bool ok, char const* what) {
    if (!ok) {
        std::printf("FAIL: %s\n", what);
        ++gFailures;
    }
}

std::vector<float> sparsemax(std::vector<float> z) {
    HostBlock blk;
    sparsemax_row(blk, z.data(), static_cast<int>(z.size()));
    return z;
}

void test_sparsemax_exact_cases() {
    auto p = sparsemax({0.5f, 0.0f});
    check(p[0] == 0.75f && p[1] == 0.25f, "sparsemax([0.5, 0]) == [0.75, 0.25]");
    p = sparsemax({2.0f, 0.0f, -1.0f});
    check(p[0] == 1.0f && p[1] == 0.0f && p[2] == 0.0f, "gap > 1 gives a one-hot");
    p = sparsemax(std::vector<float>(3072, 7.0f));
    bool uniform = true;
    for (float v : p) uniform = uniform && v == 1.0f / 3072.0f;
    check(uniform, "all-equal row gives exactly 1/n");
    p = sparsemax({1.0f, NAN, 0.0f});
    check(std::isnan(p[0]) && std::isnan(p[2]), "NaN row gives NaN");
    p = sparsemax({-INFINITY, 0.0f, -INFINITY});
    check(p[1] == 1.0f && p[0] == 0.0f, "-inf is a masked entry");
}

void test_sparsemax_properties() {
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.0f, 3.0f);
    for (int r = 0; r < 50; ++r) {
        std::vector<float> z(3072);
        for (float& v : z) v = nd(rng);
        auto p = sparsemax(z);
        double s = 0.0;
        bool nonneg = true;
        for (float v : p) {
            s += v;
            nonneg = nonneg && v >= 0.0f;
        }
        check(std::fabs(s - 1.0) < 1e-5 && nonneg, "random row sums to 1, non-negative");
    }
}

void test_decode() {
    const float sig[2] = {0.026f, 0.107f};
    DecodeParams p;
    check(make_decode_params(&p, 2, 64, 48, kModeProbmap, 0, 1.0f, sig) == 0, "params");
    check(p.radius[0] == 2 && p.radius[1] == 9, "radii ceil(3 s) for s = 0.55 and 3.0");
    std::vector<float> P(64 * 48, 0.0f), T(P.size());
    P[20 * 48 + 30] = 1.0f;  // a delta: E is the kernel itself, symmetric -> no Newton shift
    float xy[2], score;
    HostBlock blk;
    decode_map(blk, p, 1, std::vector<float>(P).data(), P.data(), T.data(), xy, &score);
    check(xy[0] == 30.0f && xy[1] == 20.0f, "delta decodes to its own pixel");
    check(std::fabs(score - p.taps[1][0] * p.taps[1][0]) < 1e-7f, "score = centre tap squared");

    DecodeParams q;
    make_decode_params(&q, 1, 64, 48, kModeHeatmap, 0, 1.0f, sig);
    std::vector<float> hm(64 * 48, 0.0f);
    hm[10 * 48 + 5] = 1.0f;
    hm[10 * 48 + 6] = 0.5f;
    hm[9 * 48 + 5] = 0.2f;
    decode_map(blk, q, 0, std::vector<float>(hm).data(), P.data(), T.data(), xy, &score);
    check(xy[0] == 5.25f && xy[1] == 9.75f && score == 1.0f, "MSRA quarter-pixel shift toward the higher neighbour");
    hm[3] = NAN;
    decode_map(blk, q, 0, hm.data(), P.data(), T.data(), xy, &score);
    check(std::isnan(xy[0]) && std::isnan(xy[1]) && score == 0.0f, "NaN map gives NaN keypoint, score 0");
}

void test_simcc_decode() {
    SimCCParams p;
    check(make_simcc_params(&p, 1, 384, 512, 2.0f) == 0, "simcc params");
    check(make_simcc_params(&p, 1, 384, 512, 0.0f) == -3 && make_simcc_params(&p, 1, 0, 512, 2.0f) == -2,
          "simcc params refuse split ratio 0 and an empty row");
    make_simcc_params(&p, 1, 384, 512, 2.0f);
    std::vector<float> x(384, 0.0f), y(512, 0.0f);
    x[101] = x[300] = 0.75f;  // tie: the first bin
    y[33] = 0.5f;
    float xy[2], score;
    HostBlock blk;
    simcc_decode_row(blk, p, x.data(), y.data(), xy, &score);
    check(xy[0] == 50.5f && xy[1] == 16.5f && score == 0.5f, "argmax bins / 2, score the smaller maximum");
    y[33] = -0.5f;  // y's maximum is now 0: not above zero
    simcc_decode_row(blk, p, x.data(), y.data(), xy, &score);
    check(xy[0] == -0.5f && xy[1] == -0.5f && score == 0.0f, "score <= 0 puts both axes at -1 / 2");
    y[7] = -INFINITY;
    simcc_decode_row(blk, p, x.data(), y.data(), xy, &score);
    check(std::isnan(xy[0]) && std::isnan(xy[1]) && score == 0.0f, "an inf row gives NaN keypoint, score 0");
}

void test_half_roundtrip() {
    int bad = 0;
    for (uint32_t b = 0; b < 65536; ++b) {
        const float f = half_bits_to_float(static_cast<uint16_t>(b));
        if (f == f && float_to_half_bits(f) != b) ++bad;
    }
    check(bad == 0, "fp16 -> fp32 -> fp16 is the identity on every non-NaN bit pattern");
}
}  // namespace

int main() {
    test_sparsemax_exact_cases();
    test_sparsemax_properties();
    test_decode();
    test_simcc_decode();
    test_half_roundtrip();
    std::printf("%s (%d failures)\n", gFailures ? "FAILED" : "OK", gFailures);
    return gFailures ? 1 : 0;
}
