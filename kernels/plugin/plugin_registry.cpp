// Entry points TensorRT looks up in a plugin library: getCreators (IPluginV3 creators) and
// setLoggerFinder. They make the plugins visible to
// trt.get_plugin_registry().load_library(), trtexec --dynamicPlugins and the ONNX parser.
#include "plugin_common.h"

// The library is built with hidden visibility; only these two symbols are exported.
#define DYNPOSE_EXPORT __attribute__((visibility("default")))

namespace dynpose {
nvinfer1::IPluginCreatorInterface* sparsemaxCreator();
nvinfer1::IPluginCreatorInterface* decodeCreator();
}  // namespace dynpose

extern "C" DYNPOSE_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
    static nvinfer1::IPluginCreatorInterface* const creators[] = {dynpose::sparsemaxCreator(),
                                                                   dynpose::decodeCreator()};
    nbCreators = 2;
    return creators;
}

extern "C" DYNPOSE_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder) { dynpose::setPluginLoggerFinder(finder); }
