// The CPU path's C++ (runtime/heads/rowmath.cpp) on the inputs that break loop bounds: empty,
// NaN/inf, one pixel, maps smaller than the taps, the largest side, bad arguments. Run by ctest
// under valgrind (CMakeLists.txt): every read and write must stay inside the buffers the caller
// passed. The numbers themselves are checked against numpy in tests/test_native_rowmath.py.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

extern "C" {
int dpn_decode_probmaps(const float* maps, int rows, int K, int H, int W, const float* half, int rmax,
                        const int64_t* radii, float* kp, float* score);
int dpn_regions(const float* maps, int rows, int H, int W, double sigma, int Q, const double* qs,
                int64_t* counts, double* thr, double* ell);
const char* dpn_source_digest();
}

static int failures = 0;
#define CHECK(cond)                                                      \
    do {                                                                 \
        if (!(cond)) {                                                   \
            std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond); \
            ++failures;                                                  \
        }                                                                \
    } while (0)

static void decode_case(int K, int H, int W, int rmax, const std::vector<float>& maps) {
    const int rows = static_cast<int>(maps.size()) / (H * W);
    std::vector<float> half(static_cast<size_t>(K) * (rmax + 1), 0.0f);
    std::vector<int64_t> radii(K);
    for (int k = 0; k < K; ++k) {
        radii[k] = (k % (rmax + 1));
        for (int d = 0; d <= radii[k]; ++d) half[k * (rmax + 1) + d] = 1.0f / (1 + 2 * d);
    }
    std::vector<float> kp(2 * rows), sc(rows);
    CHECK(dpn_decode_probmaps(maps.data(), rows, K, H, W, half.data(), rmax, radii.data(), kp.data(), sc.data()) ==
          0);
    for (int r = 0; r < rows; ++r)
        CHECK((std::isnan(kp[2 * r]) && sc[r] == 0.0f) || (kp[2 * r] >= -1 && kp[2 * r] <= W && kp[2 * r + 1] >= -1 &&
                                                           kp[2 * r + 1] <= H));
}

static void regions_case(int H, int W, double sigma, const std::vector<float>& maps, std::vector<double> qs) {
    const int rows = static_cast<int>(maps.size()) / (H * W), Q = static_cast<int>(qs.size());
    std::vector<int64_t> counts(static_cast<size_t>(Q) * rows);
    std::vector<double> thr(counts.size()), ell(counts.size() * 5);
    CHECK(dpn_regions(maps.data(), rows, H, W, sigma, Q, qs.data(), counts.data(), thr.data(), ell.data()) == 0);
    for (size_t i = 0; i < counts.size(); ++i) CHECK(counts[i] >= 0 && counts[i] <= H * W);
}

int main() {
    CHECK(dpn_source_digest() != nullptr);
    // decode: a map smaller than the taps, one pixel, NaN, inf, all zero, all negative, the corner
    std::vector<float> m(4 * 3 * 2, 0.0f);
    m[1] = 1.0f;
    m[6 + 5] = NAN;
    m[12 + 2] = INFINITY;
    for (int i = 18; i < 24; ++i) m[i] = -1.0f;
    decode_case(2, 3, 2, 6, m);
    decode_case(1, 1, 1, 3, {0.5f});
    std::vector<float> corner(17 * 64 * 48, 0.0f);
    for (int k = 0; k < 17; ++k) corner[k * 64 * 48 + 64 * 48 - 1] = 1.0f;
    decode_case(17, 64, 48, 4, corner);
    std::vector<float> wide(1 * 4096, 0.0f);
    wide[4095] = 1.0f;
    decode_case(1, 1, 4096, 5, wide);
    // regions: empty, NaN, -inf, one pixel, a flat map, tiny and wide maps, q = 1, unsorted masses
    regions_case(3, 2, 0.0, m, {0.9, 0.5});
    regions_case(3, 2, 2.5, m, {1.0, 0.05, 0.5});
    regions_case(64, 48, 8.0, corner, {0.0505, 0.8509});
    std::vector<float> flat(16 * 16, 1.0f / 256);
    regions_case(16, 16, 0.0, flat, {0.5, 0.9, 1.0});
    regions_case(16, 16, 1.0, flat, {0.3, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0});
    regions_case(1, 4096, 3.0, wide, {0.5});
    regions_case(1, 1, 0.0, {0.0f}, {0.5});
    // bad arguments are refused, not read past
    std::vector<float> kp(2), sc(1), half(1, 1.0f);
    std::vector<int64_t> radii(1, 0), counts(9);
    std::vector<double> thr(9), ell(45), qs(9, 0.5);
    CHECK(dpn_decode_probmaps(m.data(), 1, 2, 3, 2, half.data(), 0, radii.data(), kp.data(), sc.data()) == -1);
    CHECK(dpn_decode_probmaps(m.data(), 1, 1, 4097, 1, half.data(), 0, radii.data(), kp.data(), sc.data()) == -1);
    radii[0] = 1;
    CHECK(dpn_decode_probmaps(m.data(), 1, 1, 3, 2, half.data(), 0, radii.data(), kp.data(), sc.data()) == -1);
    CHECK(dpn_regions(m.data(), 1, 3, 2, 0.0, 9, qs.data(), counts.data(), thr.data(), ell.data()) == -1);
    CHECK(dpn_regions(m.data(), 1, 3, 2, -1.0, 1, qs.data(), counts.data(), thr.data(), ell.data()) == -1);
    qs[0] = 1.5;
    CHECK(dpn_regions(m.data(), 1, 3, 2, 0.0, 1, qs.data(), counts.data(), thr.data(), ell.data()) == -2);
    if (failures) std::fprintf(stderr, "%d check(s) failed\n", failures);
    else std::printf("rowmath selftest: all checks passed\n");
    return failures ? 1 : 0;
}
