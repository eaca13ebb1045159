// Boilerplate every dynpose IPluginV3 shares: the three capability interfaces and names.
#pragma once

#include <NvInferRuntime.h>

#include "plugin_common.h"

namespace dynpose {

class PluginBase : public nvinfer1::IPluginV3,
                   public nvinfer1::IPluginV3OneCore,
                   public nvinfer1::IPluginV3OneBuild,
                   public nvinfer1::IPluginV3OneRuntime {
public:
    explicit PluginBase(char const* name) : mName(name) {}
    ~PluginBase() override = default;

    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override {
        switch (type) {
        case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
        case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
        case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
        }
        return nullptr;
    }

    char const* getPluginName() const noexcept override { return mName; }
    char const* getPluginVersion() const noexcept override { return kPluginVersion; }
    char const* getPluginNamespace() const noexcept override { return kPluginNamespace; }

    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext*) noexcept override { return clone(); }

protected:
    static bool isFloatOrHalf(nvinfer1::DataType t) {
        return t == nvinfer1::DataType::kFLOAT || t == nvinfer1::DataType::kHALF;
    }
    static int64_t volume(nvinfer1::Dims const& d, int32_t from, int32_t to) {
        int64_t v = 1;
        for (int32_t i = from; i < to; ++i) v *= d.d[i];
        return v;
    }

private:
    char const* mName;
};

// Creator boilerplate: names plus the static list of accepted fields.
class CreatorBase : public nvinfer1::IPluginCreatorV3One {
public:
    CreatorBase(char const* name, std::vector<nvinfer1::PluginField> fields) : mName(name), mFields(std::move(fields)) {
        mFc.nbFields = static_cast<int32_t>(mFields.size());
        mFc.fields = mFields.data();
    }
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override { return &mFc; }
    char const* getPluginName() const noexcept override { return mName; }
    char const* getPluginVersion() const noexcept override { return kPluginVersion; }
    char const* getPluginNamespace() const noexcept override { return kPluginNamespace; }

private:
    char const* mName;
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFc{};
};

}  // namespace dynpose
