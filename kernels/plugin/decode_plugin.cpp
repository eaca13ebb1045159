// DynPoseDecode: [N,K,H,W] maps -> keypoints [N,K,2] (x, y in heatmap pixels) and
// keypoint_scores [N,K], fp32. mode "heatmap" = MSRA argmax + quarter pixel; mode
// "probmap" = (optional sparsemax of logits) + expected-OKS argmax + Newton step.
// Invalid maps (NaN/inf) give NaN keypoints with score 0, as runtime/decode.py documents.
#include <memory>

#include "../dynpose_kernels.h"
#include "plugin_base.h"

namespace dynpose {
namespace {

using namespace nvinfer1;

const std::vector<float> kCocoSigmas = {0.026f, 0.025f, 0.025f, 0.035f, 0.035f, 0.079f, 0.079f, 0.072f, 0.072f,
                                        0.062f, 0.062f, 0.107f, 0.107f, 0.087f, 0.087f, 0.089f, 0.089f};

struct DecodeConfig {
    std::string mode = "probmap";
    float temperature = 1.0f;
    int32_t normalize = 1;
    std::vector<float> sigmas = kCocoSigmas;

    int32_t modeId() const { return mode == "heatmap" ? kModeHeatmap : kModeProbmap; }
};

class DecodePlugin final : public PluginBase {
public:
    explicit DecodePlugin(DecodeConfig cfg) : PluginBase(kDecodeName), mCfg(std::move(cfg)) {}

    IPluginV3* clone() noexcept override { return new (std::nothrow) DecodePlugin(*this); }

    int32_t getNbOutputs() const noexcept override { return 2; }

    int32_t getOutputDataTypes(DataType* out, int32_t nbOutputs, DataType const*, int32_t nbInputs) const
        noexcept override {
        if (nbInputs != 1 || nbOutputs != 2) return -1;
        out[0] = out[1] = DataType::kFLOAT;
        return 0;
    }

    int32_t getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const*, int32_t, DimsExprs* outputs,
                            int32_t nbOutputs, IExprBuilder& expr) noexcept override {
        if (nbInputs != 1 || nbOutputs != 2 || inputs[0].nbDims != 4) {
            logError("DynPoseDecode needs one [N,K,H,W] input and gives two outputs");
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

    bool supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* io, int32_t, int32_t) noexcept override {
        PluginTensorDesc const& d = io[pos].desc;
        if (d.format != TensorFormat::kLINEAR) return false;
        return pos == 0 ? isFloatOrHalf(d.type) : d.type == DataType::kFLOAT;
    }

    int32_t configurePlugin(DynamicPluginTensorDesc const* in, int32_t, DynamicPluginTensorDesc const*, int32_t) noexcept
        override {
        Dims const& d = in[0].desc.dims;
        const int64_t K = d.d[1], H = d.d[2], W = d.d[3];
        if (K > kMaxKeypoints) return fail("K = " + std::to_string(K) + " exceeds " + std::to_string(kMaxKeypoints));
        if (K > 0 && mCfg.modeId() == kModeProbmap && static_cast<int64_t>(mCfg.sigmas.size()) != K)
            return fail("got " + std::to_string(mCfg.sigmas.size()) + " sigmas for K = " + std::to_string(K) +
                        "; set the 'sigmas' field to K values");
        if (H > 0 && W > 0 && H * W > 8192) return fail("map " + std::to_string(H) + "x" + std::to_string(W) +
                                                        " is larger than 8192 pixels");
        return 0;
    }

    int32_t onShapeChange(PluginTensorDesc const* in, int32_t, PluginTensorDesc const*, int32_t) noexcept override {
        Dims const& d = in[0].dims;
        const int rc = make_decode_params(&mParams, static_cast<int>(d.d[1]), static_cast<int>(d.d[2]),
                                          static_cast<int>(d.d[3]), mCfg.modeId(), mCfg.normalize, mCfg.temperature,
                                          mCfg.sigmas.data());
        return rc == 0 ? 0 : fail("unsupported map shape (code " + std::to_string(rc) + ")");
    }

    int32_t enqueue(PluginTensorDesc const* inDesc, PluginTensorDesc const*, void const* const* inputs,
                    void* const* outputs, void*, cudaStream_t stream) noexcept override {
        const int64_t rows = inDesc[0].dims.d[0] * inDesc[0].dims.d[1];
        return launch_decode(inputs[0], inDesc[0].type == DataType::kHALF, static_cast<float*>(outputs[0]),
                             static_cast<float*>(outputs[1]), static_cast<int>(rows), mParams, stream);
    }

    PluginFieldCollection const* getFieldsToSerialize() noexcept override {
        mStore.clear();
        mStore.addString("mode", mCfg.mode);
        mStore.addFloat("temperature", mCfg.temperature);
        mStore.addInt("normalize", mCfg.normalize);
        mStore.addFloats("sigmas", mCfg.sigmas);
        return mStore.collection();
    }

private:
    static int32_t fail(std::string const& msg) {
        logError("DynPoseDecode: " + msg);
        return -1;
    }

    DecodeConfig mCfg;
    DecodeParams mParams{};
    FieldStore mStore;
};

class DecodeCreator final : public CreatorBase {
public:
    DecodeCreator()
        : CreatorBase(kDecodeName, {PluginField("mode", nullptr, PluginFieldType::kCHAR, 0),
                                    PluginField("temperature", nullptr, PluginFieldType::kFLOAT32, 1),
                                    PluginField("normalize", nullptr, PluginFieldType::kINT32, 1),
                                    PluginField("sigmas", nullptr, PluginFieldType::kFLOAT32, 0)}) {}

    IPluginV3* createPlugin(char const*, PluginFieldCollection const* fc, TensorRTPhase) noexcept override {
        DecodeConfig cfg;
        for (int32_t i = 0; fc && i < fc->nbFields; ++i) {
            PluginField const& f = fc->fields[i];
            std::string const name = f.name ? f.name : "";
            bool ok = true;
            if (name == "mode") ok = readString(f, &cfg.mode);
            else if (name == "temperature") ok = readFloat(f, &cfg.temperature);
            else if (name == "normalize") ok = readInt(f, &cfg.normalize);
            else if (name == "sigmas") ok = readFloats(f, &cfg.sigmas);
            if (!ok) return nullptr;
        }
        if (cfg.mode != "heatmap" && cfg.mode != "probmap") {
            logError("DynPoseDecode: mode must be 'heatmap' or 'probmap', got '" + cfg.mode + "'");
            return nullptr;
        }
        if (!(cfg.temperature > 0.0f) || cfg.sigmas.empty() || cfg.sigmas.size() > kMaxKeypoints) {
            logError("DynPoseDecode: temperature must be > 0 and sigmas must hold 1..32 values");
            return nullptr;
        }
        return new (std::nothrow) DecodePlugin(std::move(cfg));
    }
};

}  // namespace

IPluginCreatorInterface* decodeCreator() {
    static DecodeCreator creator;
    return &creator;
}

}  // namespace dynpose
