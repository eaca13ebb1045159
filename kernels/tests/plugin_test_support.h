// Stand-ins for the TensorRT side of the plugin interfaces, for the plugin host test:
// a logger that records lines, a minimal IExprBuilder, field collections the test owns,
// and accessors for the three capability interfaces. All TensorRT interfaces involved
// are header-only, so no TensorRT library is needed.
#pragma once

#include <cstdio>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include <NvInferRuntime.h>

namespace plugin_test {

using namespace nvinfer1;

// ---- logger: records every line the plugin logs ----
class CaptureLogger : public ILogger {
public:
    void log(Severity, AsciiChar const* msg) noexcept override { lines.emplace_back(msg); }
    std::vector<std::string> lines;
};

class Finder : public ILoggerFinder {
public:
    explicit Finder(ILogger* l) : mLogger(l) {}
    ILogger* findLogger() noexcept override { return mLogger; }

private:
    ILogger* mLogger;
};

// ---- checks: counted, failures printed; one log shared by the test ----
inline int gFailures = 0;
inline int gChecks = 0;
inline CaptureLogger gLog;

inline void check(bool ok, std::string const& what) {
    ++gChecks;
    if (!ok) {
        std::printf("FAIL: %s\n", what.c_str());
        ++gFailures;
    }
}

// Runs f and checks it logged exactly one more line containing `needle`.
template <class F>
void expectLog(std::string const& what, std::string const& needle, F f) {
    const size_t before = gLog.lines.size();
    f();
    const bool one = gLog.lines.size() == before + 1;
    check(one && gLog.lines.back().find(needle) != std::string::npos,
          what + ": one log line containing '" + needle + "'" +
              (gLog.lines.size() > before ? " (got '" + gLog.lines.back() + "')" : " (got none)"));
}

// ---- a minimal IExprBuilder: constants and symbols, products only where constant ----
class Expr : public IDimensionExpr {
public:
    class Impl : public apiv::VDimensionExpr {
    public:
        Impl(bool c, int64_t v) : mConst(c), mValue(v) {}
        bool isConstant() const override { return mConst; }
        int64_t getConstantValue() const override { return mConst ? mValue : -1; }
        bool isSizeTensor() const override { return false; }

    private:
        bool mConst;
        int64_t mValue;
    };
    Expr(bool c, int64_t v) : mSelf(c, v) { mImpl = &mSelf; }
    ~Expr() noexcept override = default;

private:
    Impl mSelf;
};

class ExprBuilder : public IExprBuilder {
public:
    class Impl : public apiv::VExprBuilder {
    public:
        explicit Impl(ExprBuilder* b) : mB(b) {}
        IDimensionExpr const* constant(int64_t v) override { return mB->make(true, v); }
        IDimensionExpr const* operation(DimensionOperation op, IDimensionExpr const& a,
                                        IDimensionExpr const& b) override {
            if (!a.isConstant() || !b.isConstant()) return mB->make(false, -1);
            const int64_t x = a.getConstantValue(), y = b.getConstantValue();
            return mB->make(true, op == DimensionOperation::kPROD ? x * y : op == DimensionOperation::kSUM ? x + y : -1);
        }
        IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override {
            return nullptr;
        }

    private:
        ExprBuilder* mB;
    };
    ExprBuilder() : mSelf(this) { mImpl = &mSelf; }
    ~ExprBuilder() noexcept override = default;
    IDimensionExpr const* make(bool c, int64_t v) {
        mExprs.emplace_back(c, v);
        return &mExprs.back();
    }

private:
    Impl mSelf;
    std::deque<Expr> mExprs;  // stable addresses
};

// ---- helpers over the plugin interfaces ----
using GetCreators = IPluginCreatorInterface* const* (*)(int32_t&);
using SetLoggerFinder = void (*)(ILoggerFinder*);
using HeaderVersion = int32_t (*)(int32_t*, int32_t*, int32_t*);
using SmemLimit = int64_t (*)();

inline IPluginV3OneCore* core(IPluginV3* p) {
    return static_cast<IPluginV3OneCore*>(p->getCapabilityInterface(PluginCapabilityType::kCORE));
}
inline IPluginV3OneBuild* build(IPluginV3* p) {
    return static_cast<IPluginV3OneBuild*>(p->getCapabilityInterface(PluginCapabilityType::kBUILD));
}
inline IPluginV3OneRuntime* rt(IPluginV3* p) {
    return static_cast<IPluginV3OneRuntime*>(p->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
}

inline Dims dims(std::vector<int64_t> const& v) {
    Dims d{};
    d.nbDims = static_cast<int32_t>(v.size());
    for (size_t i = 0; i < v.size(); ++i) d.d[i] = v[i];
    return d;
}

inline DynamicPluginTensorDesc dyn(std::vector<int64_t> const& shape, DataType t, std::vector<int64_t> const& mx = {}) {
    DynamicPluginTensorDesc d{};
    d.desc.dims = dims(shape);
    d.desc.type = t;
    d.desc.format = TensorFormat::kLINEAR;
    d.desc.scale = 1.0f;
    d.min = d.opt = d.desc.dims;
    d.max = mx.empty() ? d.desc.dims : dims(mx);
    return d;
}

inline PluginTensorDesc desc(std::vector<int64_t> const& shape, DataType t) { return dyn(shape, t).desc; }

// Fields built from values the test owns (kept alive for the call).
struct Fields {
    std::deque<std::vector<char>> data;
    std::vector<PluginField> fields;
    PluginFieldCollection fc{};

    template <class T>
    Fields& add(char const* name, std::vector<T> const& v, PluginFieldType t) {
        data.emplace_back(sizeof(T) * v.size());
        if (!v.empty()) std::memcpy(data.back().data(), v.data(), data.back().size());
        fields.emplace_back(name, v.empty() ? nullptr : data.back().data(), t, static_cast<int32_t>(v.size()));
        return *this;
    }
    Fields& str(char const* name, std::string const& s) {
        return add(name, std::vector<char>(s.c_str(), s.c_str() + s.size() + 1), PluginFieldType::kCHAR);
    }
    Fields& f32(char const* name, std::vector<float> const& v) { return add(name, v, PluginFieldType::kFLOAT32); }
    Fields& i32(char const* name, std::vector<int32_t> const& v) { return add(name, v, PluginFieldType::kINT32); }
    PluginFieldCollection const* get() {
        fc.nbFields = static_cast<int32_t>(fields.size());
        fc.fields = fields.data();
        return &fc;
    }
};

// Byte image of a field collection: names, types, lengths and data, in order.
inline std::string serialize(IPluginV3* p) {
    PluginFieldCollection const* fc = rt(p)->getFieldsToSerialize();
    std::string out;
    for (int32_t i = 0; fc && i < fc->nbFields; ++i) {
        PluginField const& f = fc->fields[i];
        size_t const elem = f.type == PluginFieldType::kFLOAT32 || f.type == PluginFieldType::kINT32 ? 4
                            : f.type == PluginFieldType::kCHAR                                    ? 1
                                                                                                  : 8;
        out += std::string(f.name) + '|' + std::to_string(static_cast<int>(f.type)) + '|' + std::to_string(f.length) + '|';
        if (f.length > 0) out.append(static_cast<char const*>(f.data), elem * static_cast<size_t>(f.length));
        out += '\n';
    }
    return out;
}

}  // namespace plugin_test
