// DynPoseSparsemax: exact sparsemax over the trailing `num_axes` dims (default 2: H x W),
// after multiplying by 1/temperature. Output has the input's shape and type (fp32/fp16).
#include <cmath>
#include <memory>

#include "../dynpose_kernels.h"
#include "plugin_base.h"

namespace dynpose {
namespace {

using namespace nvinfer1;

class SparsemaxPlugin final : public PluginBase {
public:
    SparsemaxPlugin(float temperature, int32_t numAxes)
        : PluginBase(kSparsemaxName), mTemperature(temperature), mNumAxes(numAxes) {}

    IPluginV3* clone() noexcept override { return new (std::nothrow) SparsemaxPlugin(*this); }

    int32_t getNbOutputs() const noexcept override { return 1; }

    int32_t getOutputDataTypes(DataType* out, int32_t nbOutputs, DataType const* in, int32_t nbInputs) const
        noexcept override {
        if (nbInputs != 1 || nbOutputs != 1) return -1;
        out[0] = in[0];
        return 0;
    }

    int32_t getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const*, int32_t, DimsExprs* outputs,
                            int32_t nbOutputs, IExprBuilder&) noexcept override {
        if (nbInputs != 1 || nbOutputs != 1 || inputs[0].nbDims <= mNumAxes) {
            logError("DynPoseSparsemax needs one input with more than num_axes dims");
            return -1;
        }
        outputs[0] = inputs[0];
        return 0;
    }

    bool supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* io, int32_t, int32_t) noexcept override {
        PluginTensorDesc const& d = io[pos].desc;
        if (d.format != TensorFormat::kLINEAR) return false;
        return pos == 0 ? isFloatOrHalf(d.type) : d.type == io[0].desc.type;
    }

    int32_t configurePlugin(DynamicPluginTensorDesc const* in, int32_t, DynamicPluginTensorDesc const*, int32_t) noexcept
        override {
        Dims const& d = in[0].desc.dims;
        int64_t n = 1;
        for (int32_t i = d.nbDims - mNumAxes; i < d.nbDims; ++i) n = d.d[i] < 0 ? -1 : n * d.d[i];
        if (n > kMaxSparsemaxRow) {
            logError("DynPoseSparsemax: row length " + std::to_string(n) + " exceeds " +
                     std::to_string(kMaxSparsemaxRow) + "; sparsemax over fewer axes");
            return -1;
        }
        return 0;
    }

    int32_t onShapeChange(PluginTensorDesc const*, int32_t, PluginTensorDesc const*, int32_t) noexcept override {
        return 0;
    }

    int32_t enqueue(PluginTensorDesc const* inDesc, PluginTensorDesc const* outDesc, void const* const* inputs,
                    void* const* outputs, void*, cudaStream_t stream) noexcept override {
        Dims const& d = inDesc[0].dims;
        const int64_t n = volume(d, d.nbDims - mNumAxes, d.nbDims);
        const int64_t rows = volume(d, 0, d.nbDims - mNumAxes);
        return launch_sparsemax(inputs[0], inDesc[0].type == DataType::kHALF, outputs[0],
                                outDesc[0].type == DataType::kHALF, static_cast<int>(rows), static_cast<int>(n),
                                1.0f / mTemperature, stream);
    }

    PluginFieldCollection const* getFieldsToSerialize() noexcept override {
        mStore.clear();
        mStore.addFloat("temperature", mTemperature);
        mStore.addInt("num_axes", mNumAxes);
        return mStore.collection();
    }

private:
    float mTemperature;
    int32_t mNumAxes;
    FieldStore mStore;
};

class SparsemaxCreator final : public CreatorBase {
public:
    SparsemaxCreator()
        : CreatorBase(kSparsemaxName, {PluginField("temperature", nullptr, PluginFieldType::kFLOAT32, 1),
                                       PluginField("num_axes", nullptr, PluginFieldType::kINT32, 1)}) {}

    IPluginV3* createPlugin(char const*, PluginFieldCollection const* fc, TensorRTPhase) noexcept override {
        float temperature = 1.0f;
        int32_t numAxes = 2;
        for (int32_t i = 0; fc && i < fc->nbFields; ++i) {
            PluginField const& f = fc->fields[i];
            std::string const name = f.name ? f.name : "";
            if (name == "temperature" && !readFloat(f, &temperature)) return nullptr;
            if (name == "num_axes" && !readInt(f, &numAxes)) return nullptr;
        }
        if (!(temperature > 0.0f) || !std::isfinite(temperature) || numAxes < 1 || numAxes > 7) {
            logError("DynPoseSparsemax: temperature must be finite and > 0 and num_axes in 1..7");
            return nullptr;
        }
        return new (std::nothrow) SparsemaxPlugin(temperature, numAxes);
    }
};

}  // namespace

IPluginCreatorInterface* sparsemaxCreator() {
    static SparsemaxCreator creator;
    return &creator;
}

}  // namespace dynpose
