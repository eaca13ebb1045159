// HostBlock: plays one CUDA block of kBlockThreads threads on the CPU, in the device's order.
//
// Thread t handles indices t, t+B, t+2B, ... and the partial results are combined by the
// same halving tree as DeviceBlock::reduce, so reductions round exactly as on the GPU.
// This is what lets the tests run the kernels' own source (dynpose_rowmath.cuh) here.
#pragma once

#include <vector>

#include "dynpose_rowmath.cuh"

namespace dynpose {

struct HostBlock {
    int threads = kBlockThreads;

    bool leader() const { return true; }

    template <class T, class F, class Op>
    T reduce(int n, T init, F f, Op op) {
        std::vector<T> part(threads, init);
        for (int t = 0; t < threads; ++t) {
            T acc = init;
            for (int i = t; i < n; i += threads) acc = op(acc, f(i));
            part[t] = acc;
        }
        for (int s = threads / 2; s > 0; s >>= 1)
            for (int t = 0; t < s; ++t) part[t] = op(part[t], part[t + s]);
        return part[0];
    }

    template <class F>
    void for_each(int n, F f) {
        for (int i = 0; i < n; ++i) f(i);
    }
};

}  // namespace dynpose
