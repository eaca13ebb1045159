#include "plugin_common.h"

#include <cstring>

namespace dynpose {
namespace {
nvinfer1::ILoggerFinder* gFinder = nullptr;
}

void setPluginLoggerFinder(nvinfer1::ILoggerFinder* finder) { gFinder = finder; }

void logError(std::string const& msg) {
    nvinfer1::ILogger* logger = gFinder ? gFinder->findLogger() : nullptr;
    if (logger) logger->log(nvinfer1::ILogger::Severity::kERROR, ("[dynpose] " + msg).c_str());
}

namespace {
std::string nameOf(nvinfer1::PluginField const& f) { return f.name ? f.name : "(unnamed)"; }
}  // namespace

// Scalars must come as exactly one value; a null data pointer is never read.
bool readFloat(nvinfer1::PluginField const& f, float* out) {
    if (f.type == nvinfer1::PluginFieldType::kFLOAT32 && f.length == 1 && f.data) {
        *out = *static_cast<float const*>(f.data);
        return true;
    }
    if (f.type == nvinfer1::PluginFieldType::kFLOAT64 && f.length == 1 && f.data) {
        *out = static_cast<float>(*static_cast<double const*>(f.data));
        return true;
    }
    logError("field '" + nameOf(f) + "' must be one float32 value");
    return false;
}

bool readInt(nvinfer1::PluginField const& f, int32_t* out) {
    if (f.type == nvinfer1::PluginFieldType::kINT32 && f.length == 1 && f.data) {
        *out = *static_cast<int32_t const*>(f.data);
        return true;
    }
    if (f.type == nvinfer1::PluginFieldType::kINT64 && f.length == 1 && f.data) {
        *out = static_cast<int32_t>(*static_cast<int64_t const*>(f.data));
        return true;
    }
    logError("field '" + nameOf(f) + "' must be one int32 value");
    return false;
}

bool readString(nvinfer1::PluginField const& f, std::string* out) {
    if (f.type != nvinfer1::PluginFieldType::kCHAR || f.length < 0 || (f.length > 0 && !f.data)) {
        logError("field '" + nameOf(f) + "' must be a string");
        return false;
    }
    if (f.length == 0) {
        out->clear();
        return true;
    }
    out->assign(static_cast<char const*>(f.data), static_cast<size_t>(f.length));
    while (!out->empty() && out->back() == '\0') out->pop_back();
    return true;
}

bool readFloats(nvinfer1::PluginField const& f, std::vector<float>* out) {
    if (f.type != nvinfer1::PluginFieldType::kFLOAT32 || f.length < 0 || (f.length > 0 && !f.data)) {
        logError("field '" + nameOf(f) + "' must be a float32 list");
        return false;
    }
    auto const* p = static_cast<float const*>(f.data);
    if (f.length == 0) out->clear();
    else out->assign(p, p + f.length);
    return true;
}

void FieldStore::clear() {
    mData.clear();
    mFields.clear();
}

namespace {
template <class T>
std::vector<char> bytesOf(T const* p, size_t n) {
    std::vector<char> b(sizeof(T) * n);
    if (n) std::memcpy(b.data(), p, b.size());
    return b;
}
}  // namespace

void FieldStore::addFloat(char const* name, float v) {
    mData.push_back(bytesOf(&v, 1));
    mFields.emplace_back(name, nullptr, nvinfer1::PluginFieldType::kFLOAT32, 1);
}

void FieldStore::addInt(char const* name, int32_t v) {
    mData.push_back(bytesOf(&v, 1));
    mFields.emplace_back(name, nullptr, nvinfer1::PluginFieldType::kINT32, 1);
}

void FieldStore::addString(char const* name, std::string const& v) {
    mData.push_back(bytesOf(v.c_str(), v.size() + 1));
    mFields.emplace_back(name, nullptr, nvinfer1::PluginFieldType::kCHAR, static_cast<int32_t>(v.size() + 1));
}

void FieldStore::addFloats(char const* name, std::vector<float> const& v) {
    mData.push_back(bytesOf(v.data(), v.size()));
    mFields.emplace_back(name, nullptr, nvinfer1::PluginFieldType::kFLOAT32, static_cast<int32_t>(v.size()));
}

nvinfer1::PluginFieldCollection const* FieldStore::collection() {
    for (size_t i = 0; i < mFields.size(); ++i) mFields[i].data = mData[i].empty() ? nullptr : mData[i].data();
    mFc.nbFields = static_cast<int32_t>(mFields.size());
    mFc.fields = mFields.data();
    return &mFc;
}

}  // namespace dynpose
