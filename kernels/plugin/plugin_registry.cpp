// Entry points TensorRT looks up in a plugin library: getCreators (IPluginV3 creators) and
// setLoggerFinder. They make the plugins visible to
// trt.get_plugin_registry().load_library(), trtexec --dynamicPlugins and the ONNX parser.
// Plus two of ours: the TensorRT version of the headers the library was compiled against
// (the ABI record runtime/backends/plugin_abi.py checks before TensorRT loads it) and the
// decode's shared-memory limit on the current device.
#include <NvInferVersion.h>

#include "../dynpose_kernels.h"
#include "plugin_common.h"

// The library is built with hidden visibility; only these symbols are exported.
#define DYNPOSE_EXPORT __attribute__((visibility("default")))

namespace dynpose {
nvinfer1::IPluginCreatorInterface* sparsemaxCreator();
nvinfer1::IPluginCreatorInterface* decodeCreator();
nvinfer1::IPluginCreatorInterface* simccDecodeCreator();
}  // namespace dynpose

extern "C" DYNPOSE_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
    static nvinfer1::IPluginCreatorInterface* const creators[] = {
        dynpose::sparsemaxCreator(), dynpose::decodeCreator(), dynpose::simccDecodeCreator()};
    nbCreators = static_cast<int32_t>(sizeof(creators) / sizeof(creators[0]));
    return creators;
}

extern "C" DYNPOSE_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder) { dynpose::setPluginLoggerFinder(finder); }

// Why a record at all: from 11.x ILogger and ILoggerFinder derive from IVersionedInterface,
// so their vtables differ from 10.x; a library built with one major's headers crashes (or
// loses every log line) under the other's runtime, and nothing in the .so says which it is.
extern "C" DYNPOSE_EXPORT int32_t dynposeTrtHeaderVersion(int32_t* major, int32_t* minor, int32_t* patch) {
    if (major) *major = NV_TENSORRT_MAJOR;
    if (minor) *minor = NV_TENSORRT_MINOR;
    if (patch) *patch = NV_TENSORRT_PATCH;
    return NV_TENSORRT_MAJOR * 1000 + NV_TENSORRT_MINOR;
}

// Opt-in dynamic shared memory per block the decode checks maps against on the current
// device (48 KB without a usable GPU).
extern "C" DYNPOSE_EXPORT int64_t dynposeDecodeSmemLimit() {
    return static_cast<int64_t>(dynpose::device_smem_optin_bytes());
}

// The crop kernel for the runtime's TensorRT path (runtime/backends/trt.py, ctypes): the
// library is loaded for the fused-decode engines anyway, so the crops need no second one.
// Device pointers in (frame uint8 HxWx3 BGR, affines [n,2,3] float64), the net's input
// buffer [n,3,H,W] out (fp32 or fp16), mean/std (RGB, host) as make_crops uses them; the
// launch is queued on `stream`. Returns a cudaError_t value, or negative for bad sizes.
extern "C" DYNPOSE_EXPORT int32_t dynposeLaunchCrops(void const* frame, int32_t src_h, int32_t src_w,
                                                     void const* affines, int32_t n, void* out, int32_t out_half,
                                                     int32_t H, int32_t W, float const* mean, float const* stdv,
                                                     void* stream) {
    dynpose::CropParams c;
    const int rc = dynpose::make_crop_params(&c, src_h, src_w, H, W, mean, stdv);
    if (rc) return rc;
    return dynpose::launch_crops(static_cast<uint8_t const*>(frame), static_cast<double const*>(affines), n, out,
                                 out_half != 0, c, static_cast<cudaStream_t>(stream));
}
