// Shared helpers for the dynpose TensorRT plugins: names, logging, field parsing.
#pragma once

#include <string>
#include <vector>

#include <NvInferRuntime.h>

namespace dynpose {

constexpr char const* kPluginVersion = "1";
constexpr char const* kPluginNamespace = "dynpose";
constexpr char const* kSparsemaxName = "DynPoseSparsemax";
constexpr char const* kDecodeName = "DynPoseDecode";
constexpr char const* kSimCCDecodeName = "DynPoseSimCCDecode";

// Logger handed over by TensorRT through setLoggerFinder(); may be null (then silent).
void setPluginLoggerFinder(nvinfer1::ILoggerFinder* finder);
void logError(std::string const& msg);

// Field readers: return false and log when a field has the wrong type.
bool readFloat(nvinfer1::PluginField const& f, float* out);
bool readInt(nvinfer1::PluginField const& f, int32_t* out);
bool readString(nvinfer1::PluginField const& f, std::string* out);
bool readFloats(nvinfer1::PluginField const& f, std::vector<float>* out);

// Owns the storage behind a PluginFieldCollection returned to TensorRT.
class FieldStore {
public:
    void clear();
    void addFloat(char const* name, float v);
    void addInt(char const* name, int32_t v);
    void addString(char const* name, std::string const& v);
    void addFloats(char const* name, std::vector<float> const& v);
    nvinfer1::PluginFieldCollection const* collection();

private:
    std::vector<std::vector<char>> mData;
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFc{0, nullptr};
};

}  // namespace dynpose
