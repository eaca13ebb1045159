// DynPoseDecode: [N,K,H,W] maps -> keypoints [N,K,2] (x, y in heatmap pixels) and
// keypoint_scores [N,K], fp32. mode "heatmap" = MSRA argmax + quarter pixel; mode
// "probmap" = (optional sparsemax of logits) + expected-OKS argmax + Newton step.
// Invalid maps (NaN/inf) give NaN keypoints with score 0, as runtime/decode.py documents.
// With "masses" (probmap mode: the nominal map masses of the coverage calibration, 1..4)
// two more outputs carry each map's credible regions, so the maps need not leave the
// device: region_pixels [N,K,Q] (pixel counts) and region_ellipses [N,K,Q,5] (cx, cy,
// semi-major, semi-minor, angle; heatmap pixels), taken on the map blurred by
// "region_sigma" heatmap pixels when the calibration fitted a blur (dynpose_regions.cuh).
#include <cmath>
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
    std::vector<float> masses;  // nominal region masses; empty = no region outputs
    float regionSigma = 0.0f;

    int32_t modeId() const { return mode == "heatmap" ? kModeHeatmap : kModeProbmap; }
    int32_t nbOutputs() const { return masses.empty() ? 2 : 4; }
};

class DecodePlugin final : public PluginBase {
public:
    explicit DecodePlugin(DecodeConfig cfg) : PluginBase(kDecodeName), mCfg(std::move(cfg)) {}

    IPluginV3* clone() noexcept override { return new (std::nothrow) DecodePlugin(*this); }

    int32_t getNbOutputs() const noexcept override { return mCfg.nbOutputs(); }

    int32_t getOutputDataTypes(DataType* out, int32_t nbOutputs, DataType const*, int32_t nbInputs) const
        noexcept override {
        if (nbInputs != 1 || nbOutputs != mCfg.nbOutputs()) return -1;
        for (int32_t i = 0; i < nbOutputs; ++i) out[i] = DataType::kFLOAT;
        return 0;
    }

    int32_t getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const*, int32_t, DimsExprs* outputs,
                            int32_t nbOutputs, IExprBuilder& expr) noexcept override {
        if (nbInputs != 1 || nbOutputs != mCfg.nbOutputs() || inputs[0].nbDims != 4) {
            logError("DynPoseDecode needs one [N,K,H,W] input and gives " + std::to_string(mCfg.nbOutputs()) +
                     " outputs");
            return -1;
        }
        outputs[0].nbDims = 3;
        outputs[0].d[0] = inputs[0].d[0];
        outputs[0].d[1] = inputs[0].d[1];
        outputs[0].d[2] = expr.constant(2);
        outputs[1].nbDims = 2;
        outputs[1].d[0] = inputs[0].d[0];
        outputs[1].d[1] = inputs[0].d[1];
        if (nbOutputs == 4) {  // region_pixels [N,K,Q], region_ellipses [N,K,Q,5]
            auto const* q = expr.constant(static_cast<int64_t>(mCfg.masses.size()));
            outputs[2].nbDims = 3;
            outputs[3].nbDims = 4;
            for (int32_t i = 2; i < 4; ++i) {
                outputs[i].d[0] = inputs[0].d[0];
                outputs[i].d[1] = inputs[0].d[1];
                outputs[i].d[2] = q;
            }
            outputs[3].d[3] = expr.constant(5);
        }
        return 0;
    }

    bool supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* io, int32_t, int32_t) noexcept override {
        PluginTensorDesc const& d = io[pos].desc;
        if (d.format != TensorFormat::kLINEAR) return false;
        return pos == 0 ? isFloatOrHalf(d.type) : d.type == DataType::kFLOAT;
    }

    int32_t configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const*,
                            int32_t) noexcept override {
        if (nbInputs != 1 || in[0].desc.dims.nbDims != 4) return fail("needs one [N,K,H,W] input");
        Dims const& d = in[0].desc.dims;
        // Dynamic extents (-1) are checked at their build-time maximum, the largest the
        // engine will ever see; onShapeChange checks the actual shape again.
        Dims const& mx = in[0].max;
        auto extent = [&](int i) { return d.d[i] >= 0 ? d.d[i] : (mx.nbDims == 4 ? mx.d[i] : -1); };
        const int64_t K = extent(1), H = extent(2), W = extent(3);
        if (K > kMaxKeypoints) return fail("K = " + std::to_string(K) + " exceeds " + std::to_string(kMaxKeypoints));
        if (K > 0) {
            const int32_t rc = checkSigmas(K);
            if (rc) return rc;
        }
        if (H > 0 && W > 0) return checkMap(H, W, hasBlur());
        return 0;
    }

    int32_t onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const*, int32_t) noexcept
        override {
        if (nbInputs != 1 || in[0].dims.nbDims != 4) return fail("needs one [N,K,H,W] input");
        Dims const& d = in[0].dims;
        // make_decode_params reads K sigmas: the count is checked here too, because a
        // plugin may reach this call without configurePlugin (deserialised, cloned) or
        // after a configure that saw K = -1.
        if (d.d[1] < 1 || d.d[1] > kMaxKeypoints)
            return fail("K = " + std::to_string(d.d[1]) + " is outside 1.." + std::to_string(kMaxKeypoints));
        int32_t rc = checkSigmas(d.d[1]);
        if (rc == 0) rc = checkMap(d.d[2], d.d[3], hasBlur());
        if (rc) return rc;
        rc = make_decode_params(&mParams, static_cast<int>(d.d[1]), static_cast<int>(d.d[2]),
                                static_cast<int>(d.d[3]), mCfg.modeId(), mCfg.normalize, mCfg.temperature,
                                mCfg.sigmas.data());
        if (rc == 0)
            rc = make_region_params(&mRegions, static_cast<int>(mCfg.masses.size()), mCfg.masses.data(),
                                    mCfg.regionSigma, static_cast<int>(d.d[2]), static_cast<int>(d.d[3]));
        return rc == 0 ? 0 : fail("unsupported map shape (code " + std::to_string(rc) + ")");
    }

    int32_t enqueue(PluginTensorDesc const* inDesc, PluginTensorDesc const*, void const* const* inputs,
                    void* const* outputs, void*, cudaStream_t stream) noexcept override {
        const int64_t rows = inDesc[0].dims.d[0] * inDesc[0].dims.d[1];
        if (mRegions.Q > 0)
            return launch_decode_regions(inputs[0], inDesc[0].type == DataType::kHALF, static_cast<float*>(outputs[0]),
                                         static_cast<float*>(outputs[1]), static_cast<float*>(outputs[2]),
                                         static_cast<float*>(outputs[3]), static_cast<int>(rows), mParams, mRegions,
                                         stream);
        return launch_decode(inputs[0], inDesc[0].type == DataType::kHALF, static_cast<float*>(outputs[0]),
                             static_cast<float*>(outputs[1]), static_cast<int>(rows), mParams, stream);
    }

    PluginFieldCollection const* getFieldsToSerialize() noexcept override {
        mStore.clear();
        mStore.addString("mode", mCfg.mode);
        mStore.addFloat("temperature", mCfg.temperature);
        mStore.addInt("normalize", mCfg.normalize);
        mStore.addFloats("sigmas", mCfg.sigmas);
        if (!mCfg.masses.empty()) {  // absent without regions: older engines' fields stay byte-identical
            mStore.addFloats("masses", mCfg.masses);
            mStore.addFloat("region_sigma", mCfg.regionSigma);
        }
        return mStore.collection();
    }

private:
    // Probmap mode reads one sigma per keypoint; heatmap mode reads none.
    int32_t checkSigmas(int64_t K) const {
        if (mCfg.modeId() != kModeProbmap || static_cast<int64_t>(mCfg.sigmas.size()) == K) return 0;
        return fail("got " + std::to_string(mCfg.sigmas.size()) + " sigmas for K = " + std::to_string(K) +
                    "; set the 'sigmas' field to K values");
    }

    bool hasBlur() const { return !mCfg.masses.empty() && mCfg.regionSigma > 0.0f; }

    // The kernel stages two H*W float maps in shared memory (three with a region blur):
    // refuse what cannot fit.
    static int32_t checkMap(int64_t H, int64_t W, bool blur) {
        const std::string hw = std::to_string(H) + "x" + std::to_string(W);
        if (H < 1 || W < 1 || H * W > kMaxDecodePixels)
            return fail("map " + hw + " is outside 1.." + std::to_string(kMaxDecodePixels) + " pixels");
        if (blur && (H > kMaxBlurTaps || W > kMaxBlurTaps))
            return fail("map " + hw + " has a side over " + std::to_string(kMaxBlurTaps) +
                        ", the longest a region_sigma blur takes; set region_sigma 0");
        const size_t limit = device_smem_optin_bytes();
        if (!decode_regions_fits(H, W, blur, limit))
            return fail("map " + hw + " needs " + std::to_string(decode_regions_smem_bytes(H, W, blur)) +
                        " bytes of shared memory per block, this device allows " + std::to_string(limit) +
                        "; use a smaller heatmap (input size / 4) or decode outside the engine");
        return 0;
    }

    static int32_t fail(std::string const& msg) {
        logError("DynPoseDecode: " + msg);
        return -1;
    }

    DecodeConfig mCfg;
    DecodeParams mParams{};
    RegionParams mRegions{};
    FieldStore mStore;
};

class DecodeCreator final : public CreatorBase {
public:
    DecodeCreator()
        : CreatorBase(kDecodeName, {PluginField("mode", nullptr, PluginFieldType::kCHAR, 0),
                                    PluginField("temperature", nullptr, PluginFieldType::kFLOAT32, 1),
                                    PluginField("normalize", nullptr, PluginFieldType::kINT32, 1),
                                    PluginField("sigmas", nullptr, PluginFieldType::kFLOAT32, 0),
                                    PluginField("masses", nullptr, PluginFieldType::kFLOAT32, 0),
                                    PluginField("region_sigma", nullptr, PluginFieldType::kFLOAT32, 1)}) {}

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
            else if (name == "masses") ok = readFloats(f, &cfg.masses);
            else if (name == "region_sigma") ok = readFloat(f, &cfg.regionSigma);
            if (!ok) return nullptr;
        }
        if (!validRegions(cfg)) return nullptr;
        if (cfg.mode != "heatmap" && cfg.mode != "probmap") {
            logError("DynPoseDecode: mode must be 'heatmap' or 'probmap', got '" + cfg.mode + "'");
            return nullptr;
        }
        if (!(cfg.temperature > 0.0f) || !std::isfinite(cfg.temperature) || cfg.sigmas.empty() ||
            cfg.sigmas.size() > kMaxKeypoints) {
            logError("DynPoseDecode: temperature must be finite and > 0 and sigmas must hold 1..32 values");
            return nullptr;
        }
        for (float s : cfg.sigmas)
            if (!(s > 0.0f) || !std::isfinite(s)) {
                logError("DynPoseDecode: every sigma must be finite and > 0, got " + std::to_string(s));
                return nullptr;
            }
        if (cfg.normalize != 0 && cfg.normalize != 1) {
            logError("DynPoseDecode: normalize must be 0 or 1, got " + std::to_string(cfg.normalize));
            return nullptr;
        }
        return new (std::nothrow) DecodePlugin(std::move(cfg));
    }

private:
    static bool validRegions(DecodeConfig const& cfg) {
        if (cfg.masses.size() > static_cast<size_t>(kMaxMasses)) {
            logError("DynPoseDecode: masses holds " + std::to_string(cfg.masses.size()) + " values, at most " +
                     std::to_string(kMaxMasses));
            return false;
        }
        for (float q : cfg.masses)
            if (!(q > 0.0f && q <= 1.0f)) {
                logError("DynPoseDecode: every region mass must lie in (0, 1], got " + std::to_string(q));
                return false;
            }
        if (!cfg.masses.empty() && cfg.mode != "probmap") {
            logError("DynPoseDecode: masses (credible regions) need mode 'probmap'");
            return false;
        }
        if (!(cfg.regionSigma >= 0.0f) || !std::isfinite(cfg.regionSigma)) {
            logError("DynPoseDecode: region_sigma must be finite and >= 0, got " + std::to_string(cfg.regionSigma));
            return false;
        }
        return true;
    }
};

}  // namespace

IPluginCreatorInterface* decodeCreator() {
    static DecodeCreator creator;
    return &creator;
}

}  // namespace dynpose
