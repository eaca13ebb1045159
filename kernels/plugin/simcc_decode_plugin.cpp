// DynPoseSimCCDecode: SimCC rows simcc_x [N,K,Wx] and simcc_y [N,K,Hy] (RTMPose's RTMCC
// head) -> keypoints [N,K,2] (x, y in input pixels) and keypoint_scores [N,K], fp32.
// Argmax per axis (first bin on ties), score = the smaller maximum, location -1 where the
// score is not above zero, divided by `split_ratio` (MMPose SimCCLabel); NaN/inf rows give
// NaN keypoints with score 0, as runtime/heads/simcc.py documents.
//
// Why a plugin of its own rather than a DynPoseDecode mode: it takes two inputs of different
// lengths and none of the map decode's fields (sigmas, temperature, normalize) or its
// shared-memory limits, so sharing the class would mean a second set of rules in every method.
#include <cmath>
#include <memory>

#include "../dynpose_kernels.h"
#include "plugin_base.h"

namespace dynpose {
namespace {

using namespace nvinfer1;

constexpr float kDefaultSplitRatio = 2.0f;  // every released RTMPose config

class SimCCDecodePlugin final : public PluginBase {
public:
    explicit SimCCDecodePlugin(float splitRatio) : PluginBase(kSimCCDecodeName), mSplitRatio(splitRatio) {}

    IPluginV3* clone() noexcept override { return new (std::nothrow) SimCCDecodePlugin(*this); }

    int32_t getNbOutputs() const noexcept override { return 2; }

    int32_t getOutputDataTypes(DataType* out, int32_t nbOutputs, DataType const*, int32_t nbInputs) const
        noexcept override {
        if (nbInputs != 2 || nbOutputs != 2) return -1;
        out[0] = out[1] = DataType::kFLOAT;
        return 0;
    }

    int32_t getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const*, int32_t, DimsExprs* outputs,
                            int32_t nbOutputs, IExprBuilder& expr) noexcept override {
        if (nbInputs != 2 || nbOutputs != 2 || inputs[0].nbDims != 3 || inputs[1].nbDims != 3) {
            logError("DynPoseSimCCDecode needs two inputs, simcc_x [N,K,Wx] and simcc_y [N,K,Hy], and gives two outputs");
            return -1;
        }
        outputs[0].nbDims = 3;
        outputs[0].d[0] = inputs[0].d[0];
        outputs[0].d[1] = inputs[0].d[1];
        outputs[0].d[2] = expr.constant(2);
        outputs[1].nbDims = 2;
        outputs[1].d[0] = inputs[0].d[0];
        outputs[1].d[1] = inputs[0].d[1];
        return 0;
    }

    // Inputs linear fp32 or fp16, both the same type (one kernel instance reads both rows);
    // outputs linear fp32.
    bool supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* io, int32_t, int32_t) noexcept override {
        PluginTensorDesc const& d = io[pos].desc;
        if (d.format != TensorFormat::kLINEAR) return false;
        if (pos == 0) return isFloatOrHalf(d.type);
        if (pos == 1) return d.type == io[0].desc.type;
        return d.type == DataType::kFLOAT;
    }

    int32_t configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const*,
                            int32_t) noexcept override {
        if (nbInputs != 2) return fail("needs two inputs, simcc_x and simcc_y");
        return checkShapes(in[0].desc.dims, in[1].desc.dims);
    }

    int32_t onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const*, int32_t) noexcept
        override {
        if (nbInputs != 2) return fail("needs two inputs, simcc_x and simcc_y");
        Dims const &x = in[0].dims, &y = in[1].dims;
        int32_t rc = checkShapes(x, y);
        if (rc) return rc;
        if (x.d[1] < 1 || x.d[2] < 1 || y.d[2] < 1)
            return fail("K, Wx and Hy must be >= 1, got K = " + std::to_string(x.d[1]) + ", Wx = " +
                        std::to_string(x.d[2]) + ", Hy = " + std::to_string(y.d[2]));
        rc = make_simcc_params(&mParams, static_cast<int>(x.d[1]), static_cast<int>(x.d[2]), static_cast<int>(y.d[2]),
                               mSplitRatio);
        return rc == 0 ? 0 : fail("unsupported shape (code " + std::to_string(rc) + ")");
    }

    int32_t enqueue(PluginTensorDesc const* inDesc, PluginTensorDesc const*, void const* const* inputs,
                    void* const* outputs, void*, cudaStream_t stream) noexcept override {
        const int64_t rows = inDesc[0].dims.d[0] * inDesc[0].dims.d[1];
        return launch_simcc_decode(inputs[0], inputs[1], inDesc[0].type == DataType::kHALF,
                                   static_cast<float*>(outputs[0]), static_cast<float*>(outputs[1]),
                                   static_cast<int>(rows), mParams, stream);
    }

    PluginFieldCollection const* getFieldsToSerialize() noexcept override {
        mStore.clear();
        mStore.addFloat("split_ratio", mSplitRatio);
        return mStore.collection();
    }

private:
    // Both [N,K,*] with the same N and K where both are known (-1: dynamic, checked again
    // in onShapeChange with the actual shape).
    static int32_t checkShapes(Dims const& x, Dims const& y) {
        if (x.nbDims != 3 || y.nbDims != 3)
            return fail("simcc_x and simcc_y must be [N,K,bins], got " + std::to_string(x.nbDims) + " and " +
                        std::to_string(y.nbDims) + " dims");
        for (int i = 0; i < 2; ++i)
            if (x.d[i] >= 0 && y.d[i] >= 0 && x.d[i] != y.d[i])
                return fail(std::string(i == 0 ? "N" : "K") + " differs between simcc_x (" + std::to_string(x.d[i]) +
                            ") and simcc_y (" + std::to_string(y.d[i]) + ")");
        return 0;
    }

    static int32_t fail(std::string const& msg) {
        logError("DynPoseSimCCDecode: " + msg);
        return -1;
    }

    float mSplitRatio;
    SimCCParams mParams{};
    FieldStore mStore;
};

class SimCCDecodeCreator final : public CreatorBase {
public:
    SimCCDecodeCreator()
        : CreatorBase(kSimCCDecodeName, {PluginField("split_ratio", nullptr, PluginFieldType::kFLOAT32, 1)}) {}

    IPluginV3* createPlugin(char const*, PluginFieldCollection const* fc, TensorRTPhase) noexcept override {
        float splitRatio = kDefaultSplitRatio;
        for (int32_t i = 0; fc && i < fc->nbFields; ++i) {
            PluginField const& f = fc->fields[i];
            std::string const name = f.name ? f.name : "";
            if (name == "split_ratio" && !readFloat(f, &splitRatio)) return nullptr;
        }
        if (!(splitRatio > 0.0f) || !std::isfinite(splitRatio)) {
            logError("DynPoseSimCCDecode: split_ratio must be finite and > 0, got " + std::to_string(splitRatio));
            return nullptr;
        }
        return new (std::nothrow) SimCCDecodePlugin(splitRatio);
    }
};

}  // namespace

IPluginCreatorInterface* simccDecodeCreator() {
    static SimCCDecodeCreator creator;
    return &creator;
}

}  // namespace dynpose
