// C ABI over the device launchers, for tools/device_check (ctypes): host arrays in, host
// arrays out, kernel time from CUDA events. Why a shim of our own: the device check must
// run with nothing but this repo, nvcc and numpy (no cupy, pycuda or TensorRT needed), and
// it must time exactly the launchers the plugin's enqueue calls.
#include <cstring>

#include "dynpose_kernels.h"

using namespace dynpose;

namespace {

// Device buffers freed on every exit path.
struct DeviceBuf {
    void* p = nullptr;
    cudaError_t alloc(size_t bytes) { return cudaMalloc(&p, bytes ? bytes : 1); }
    ~DeviceBuf() {
        if (p) cudaFree(p);
    }
};

// One warm-up launch (lazy module loading, opt-in attribute), then `iters` timed launches;
// *ms = mean milliseconds per launch between two events on the stream.
template <class Launch>
int timed(Launch launch, int iters, float* ms) {
    cudaStream_t s = nullptr;
    cudaEvent_t a = nullptr, b = nullptr;
    int rc = static_cast<int>(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    if (!rc) rc = static_cast<int>(cudaEventCreate(&a));
    if (!rc) rc = static_cast<int>(cudaEventCreate(&b));
    if (!rc) rc = launch(s);
    if (!rc) rc = static_cast<int>(cudaStreamSynchronize(s));
    if (!rc) rc = static_cast<int>(cudaEventRecord(a, s));
    for (int i = 0; !rc && i < iters; ++i) rc = launch(s);
    if (!rc) rc = static_cast<int>(cudaEventRecord(b, s));
    if (!rc) rc = static_cast<int>(cudaEventSynchronize(b));
    float total = 0.0f;
    if (!rc) rc = static_cast<int>(cudaEventElapsedTime(&total, a, b));
    if (ms) *ms = (!rc && iters > 0) ? total / static_cast<float>(iters) : 0.0f;
    if (a) cudaEventDestroy(a);
    if (b) cudaEventDestroy(b);
    if (s) cudaStreamDestroy(s);
    return rc;
}

}  // namespace

extern "C" {

// Name, compute capability and opt-in shared memory of device 0; a cudaError_t on failure.
int dpg_device_info(char* name, int len, int* cc_major, int* cc_minor, long long* smem_optin) {
    cudaDeviceProp prop;
    int rc = static_cast<int>(cudaGetDeviceProperties(&prop, 0));
    if (rc) return rc;
    if (name && len > 0) {
        std::strncpy(name, prop.name, static_cast<size_t>(len) - 1);
        name[len - 1] = '\0';
    }
    *cc_major = prop.major;
    *cc_minor = prop.minor;
    *smem_optin = static_cast<long long>(prop.sharedMemPerBlockOptin);
    return 0;
}

char const* dpg_error_string(int code) { return cudaGetErrorString(static_cast<cudaError_t>(code)); }

int dpg_sparsemax(const void* in, int in_half, void* out, int out_half, int rows, int n, float scale, int iters,
                  float* ms) {
    if (rows < 0 || n < 1) return static_cast<int>(cudaErrorInvalidValue);
    const size_t count = static_cast<size_t>(rows) * n;
    const size_t in_bytes = count * (in_half ? 2 : 4), out_bytes = count * (out_half ? 2 : 4);
    DeviceBuf din, dout;
    int rc = static_cast<int>(din.alloc(in_bytes));
    if (!rc) rc = static_cast<int>(dout.alloc(out_bytes));
    if (!rc) rc = static_cast<int>(cudaMemcpy(din.p, in, in_bytes, cudaMemcpyHostToDevice));
    if (!rc)
        rc = timed([&](cudaStream_t s) { return launch_sparsemax(din.p, in_half, dout.p, out_half, rows, n, scale, s); },
                   iters, ms);
    if (!rc) rc = static_cast<int>(cudaMemcpy(out, dout.p, out_bytes, cudaMemcpyDeviceToHost));
    return rc;
}

// Same parameters as the host build's dp_decode (kernels/host_api.cpp), plus timing.
int dpg_decode(const void* in, int in_half, float* kpts, float* scores, int N, int K, int H, int W, int mode,
               int normalize, float temperature, const float* sigmas, int iters, float* ms) {
    DecodeParams p;
    const int prc = make_decode_params(&p, K, H, W, mode, normalize, temperature, sigmas);
    if (prc) return prc;  // negative: parameter error, as dp_decode
    const int rows = N * K;
    const size_t in_bytes = static_cast<size_t>(rows) * H * W * (in_half ? 2 : 4);
    DeviceBuf din, dk, ds;
    int rc = static_cast<int>(din.alloc(in_bytes));
    if (!rc) rc = static_cast<int>(dk.alloc(sizeof(float) * 2 * rows));
    if (!rc) rc = static_cast<int>(ds.alloc(sizeof(float) * rows));
    if (!rc) rc = static_cast<int>(cudaMemcpy(din.p, in, in_bytes, cudaMemcpyHostToDevice));
    if (!rc)
        rc = timed([&](cudaStream_t s) {
            return launch_decode(din.p, in_half, static_cast<float*>(dk.p), static_cast<float*>(ds.p), rows, p, s);
        }, iters, ms);
    if (!rc) rc = static_cast<int>(cudaMemcpy(kpts, dk.p, sizeof(float) * 2 * rows, cudaMemcpyDeviceToHost));
    if (!rc) rc = static_cast<int>(cudaMemcpy(scores, ds.p, sizeof(float) * rows, cudaMemcpyDeviceToHost));
    return rc;
}

}  // extern "C"

// ---- the GPU path's kernels: decode with credible regions, crops ----
extern "C" {

// Same parameters as the host build's dp_decode_regions, plus timing.
int dpg_decode_regions(const void* in, int in_half, float* kpts, float* scores, float* pixels, float* ell, int N, int K,
                       int H, int W, int normalize, float temperature, const float* sigmas, int Q, const float* masses,
                       float blur_sigma, int iters, float* ms) {
    DecodeParams p;
    int prc = make_decode_params(&p, K, H, W, kModeProbmap, normalize, temperature, sigmas);
    RegionParams r;
    if (!prc) prc = make_region_params(&r, Q, masses, blur_sigma, H, W);
    if (prc) return prc;
    const int rows = N * K;
    const size_t in_bytes = static_cast<size_t>(rows) * H * W * (in_half ? 2 : 4);
    DeviceBuf din, dk, ds, dp, de;
    int rc = static_cast<int>(din.alloc(in_bytes));
    if (!rc) rc = static_cast<int>(dk.alloc(sizeof(float) * 2 * rows));
    if (!rc) rc = static_cast<int>(ds.alloc(sizeof(float) * rows));
    if (!rc) rc = static_cast<int>(dp.alloc(sizeof(float) * Q * rows));
    if (!rc) rc = static_cast<int>(de.alloc(sizeof(float) * 5 * Q * rows));
    if (!rc) rc = static_cast<int>(cudaMemcpy(din.p, in, in_bytes, cudaMemcpyHostToDevice));
    if (!rc)
        rc = timed([&](cudaStream_t s) {
            return launch_decode_regions(din.p, in_half, static_cast<float*>(dk.p), static_cast<float*>(ds.p),
                                         static_cast<float*>(dp.p), static_cast<float*>(de.p), rows, p, r, s);
        }, iters, ms);
    if (!rc) rc = static_cast<int>(cudaMemcpy(kpts, dk.p, sizeof(float) * 2 * rows, cudaMemcpyDeviceToHost));
    if (!rc) rc = static_cast<int>(cudaMemcpy(scores, ds.p, sizeof(float) * rows, cudaMemcpyDeviceToHost));
    if (!rc) rc = static_cast<int>(cudaMemcpy(pixels, dp.p, sizeof(float) * Q * rows, cudaMemcpyDeviceToHost));
    if (!rc) rc = static_cast<int>(cudaMemcpy(ell, de.p, sizeof(float) * 5 * Q * rows, cudaMemcpyDeviceToHost));
    return rc;
}

// Same parameters as the host build's dp_crops, plus timing (the launch only: the frame and
// affine uploads are made once, as the runtime makes them once per frame).
int dpg_crops(const uint8_t* frame, int src_h, int src_w, const double* affines, int n, void* out, int out_half, int H,
              int W, const float* mean, const float* stdv, int iters, float* ms) {
    CropParams c;
    const int prc = make_crop_params(&c, src_h, src_w, H, W, mean, stdv);
    if (prc) return prc;
    const size_t frame_bytes = static_cast<size_t>(src_h) * src_w * 3;
    const size_t out_bytes = static_cast<size_t>(n) * 3 * H * W * (out_half ? 2 : 4);
    DeviceBuf df, da, dout;
    int rc = static_cast<int>(df.alloc(frame_bytes));
    if (!rc) rc = static_cast<int>(da.alloc(sizeof(double) * 6 * n));
    if (!rc) rc = static_cast<int>(dout.alloc(out_bytes));
    if (!rc) rc = static_cast<int>(cudaMemcpy(df.p, frame, frame_bytes, cudaMemcpyHostToDevice));
    if (!rc) rc = static_cast<int>(cudaMemcpy(da.p, affines, sizeof(double) * 6 * n, cudaMemcpyHostToDevice));
    if (!rc)
        rc = timed([&](cudaStream_t s) {
            return launch_crops(static_cast<const uint8_t*>(df.p), static_cast<const double*>(da.p), n, dout.p,
                                out_half != 0, c, s);
        }, iters, ms);
    if (!rc) rc = static_cast<int>(cudaMemcpy(out, dout.p, out_bytes, cudaMemcpyDeviceToHost));
    return rc;
}

}  // extern "C"
