// ctest: the TensorRT plugin's host code, executed. Loads libdynpose_plugins.so with
// dlopen - no libnvinfer, no GPU - and drives every IPluginV3 method except enqueue the
// way TensorRT's builder and runtime would. Run under valgrind (CMake does so when it is
// installed), so an out-of-bounds read or a use-after-free is an error, not luck.
//
// Why hand-written stand-ins: the plugin needs only three things from TensorRT at this
// level - a logger finder, an IExprBuilder and field collections - and all of them are
// header-only interfaces, so a test without the TensorRT libraries can supply them.
#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include <NvInferRuntime.h>
#include <NvInferVersion.h>

#include "dynpose_kernels.h"
#include "plugin_test_support.h"

using namespace nvinfer1;
using namespace dynpose;
using namespace plugin_test;

#ifndef DYNPOSE_PLUGIN_LIB
#define DYNPOSE_PLUGIN_LIB "libdynpose_plugins.so"
#endif

namespace {

std::vector<float> cocoSigmas() {
    return {0.026f, 0.025f, 0.025f, 0.035f, 0.035f, 0.079f, 0.079f, 0.072f, 0.072f,
            0.062f, 0.062f, 0.107f, 0.107f, 0.087f, 0.087f, 0.089f, 0.089f};
}

struct Lib {
    IPluginCreatorV3One* sparsemax = nullptr;
    IPluginCreatorV3One* decode = nullptr;
    SmemLimit smemLimit = nullptr;
};

// ---- the checks ----
void testAbiAndCreators(void* h, Lib* lib) {
    auto version = reinterpret_cast<HeaderVersion>(dlsym(h, "dynposeTrtHeaderVersion"));
    check(version != nullptr, "dynposeTrtHeaderVersion is exported");
    if (version) {
        int32_t ma = -1, mi = -1, pa = -1;
        const int32_t packed = version(&ma, &mi, &pa);
        check(ma == NV_TENSORRT_MAJOR && mi == NV_TENSORRT_MINOR && pa == NV_TENSORRT_PATCH &&
                  packed == NV_TENSORRT_MAJOR * 1000 + NV_TENSORRT_MINOR,
              "library records the headers' TensorRT version " + std::to_string(NV_TENSORRT_MAJOR) + "." +
                  std::to_string(NV_TENSORRT_MINOR) + " (got " + std::to_string(ma) + "." + std::to_string(mi) + ")");
    }
    lib->smemLimit = reinterpret_cast<SmemLimit>(dlsym(h, "dynposeDecodeSmemLimit"));
    check(lib->smemLimit != nullptr, "dynposeDecodeSmemLimit is exported");

    auto get = reinterpret_cast<GetCreators>(dlsym(h, "getCreators"));
    check(get != nullptr, "getCreators is exported");
    if (!get) return;
    int32_t n = -1;
    IPluginCreatorInterface* const* creators = get(n);
    check(n == 3 && creators != nullptr, "three creators");  // DynPoseSimCCDecode: simcc_plugin_host_test
    for (int32_t i = 0; creators && i < n; ++i) {
        InterfaceInfo const info = creators[i]->getInterfaceInfo();
        check(std::strcmp(info.kind, "PLUGIN CREATOR_V3ONE") == 0 && info.major == 1 && info.minor == 0,
              std::string("creator interface is IPluginCreatorV3One 1.0, got ") + info.kind);
        auto* c = static_cast<IPluginCreatorV3One*>(creators[i]);
        check(std::strcmp(c->getPluginVersion(), "1") == 0, "creator version 1");
        check(std::strcmp(c->getPluginNamespace(), "dynpose") == 0, "creator namespace dynpose");
        std::string names;
        PluginFieldCollection const* fc = c->getFieldNames();
        for (int32_t k = 0; fc && k < fc->nbFields; ++k) names += std::string(fc->fields[k].name) + ",";
        if (std::strcmp(c->getPluginName(), "DynPoseSparsemax") == 0) {
            lib->sparsemax = c;
            check(names == "temperature,num_axes,", "sparsemax fields: " + names);
        } else if (std::strcmp(c->getPluginName(), "DynPoseDecode") == 0) {
            lib->decode = c;
            check(names == "mode,temperature,normalize,sigmas,masses,region_sigma,", "decode fields: " + names);
        }
    }
    check(lib->sparsemax && lib->decode, "creators DynPoseSparsemax and DynPoseDecode");
}

void testBadFields(Lib const& lib) {
    auto rejects = [&](IPluginCreatorV3One* c, std::string const& what, std::string const& needle, Fields f) {
        expectLog("bad field (" + what + ")", needle, [&] {
            IPluginV3* p = c->createPlugin("x", f.get(), TensorRTPhase::kBUILD);
            check(p == nullptr, what + " returns null");
            delete p;
        });
    };
    IPluginCreatorV3One* d = lib.decode;
    rejects(d, "temperature as int32", "temperature", std::move(Fields().i32("temperature", {2})));
    rejects(d, "temperature with two values", "temperature", std::move(Fields().f32("temperature", {1.f, 2.f})));
    rejects(d, "temperature NaN", "temperature", std::move(Fields().f32("temperature", {NAN})));
    rejects(d, "temperature inf", "temperature", std::move(Fields().f32("temperature", {INFINITY})));
    rejects(d, "temperature 0", "temperature", std::move(Fields().f32("temperature", {0.f})));
    rejects(d, "unknown mode", "mode must be", std::move(Fields().str("mode", "softargmax")));
    rejects(d, "mode as float", "mode", std::move(Fields().f32("mode", {1.f})));
    rejects(d, "sigmas as int32", "sigmas", std::move(Fields().i32("sigmas", {1, 2})));
    rejects(d, "no sigmas", "sigmas", std::move(Fields().f32("sigmas", {})));
    rejects(d, "33 sigmas", "sigmas", std::move(Fields().f32("sigmas", std::vector<float>(33, 0.05f))));
    rejects(d, "NaN sigma", "sigma", std::move(Fields().f32("sigmas", {0.05f, NAN})));
    rejects(d, "negative sigma", "sigma", std::move(Fields().f32("sigmas", {0.05f, -0.1f})));
    rejects(d, "normalize 2", "normalize", std::move(Fields().i32("normalize", {2})));
    rejects(d, "normalize with no value", "normalize", std::move(Fields().i32("normalize", {})));
    rejects(d, "five masses", "at most 4", std::move(Fields().f32("masses", {0.1f, 0.2f, 0.3f, 0.4f, 0.5f})));
    rejects(d, "mass 0", "(0, 1]", std::move(Fields().f32("masses", {0.5f, 0.0f})));
    rejects(d, "mass above 1", "(0, 1]", std::move(Fields().f32("masses", {1.5f})));
    rejects(d, "masses as int32", "masses", std::move(Fields().i32("masses", {1})));
    rejects(d, "masses in heatmap mode", "probmap", std::move(Fields().str("mode", "heatmap").f32("masses", {0.5f})));
    rejects(d, "region_sigma negative", "region_sigma", std::move(Fields().f32("region_sigma", {-1.f})));
    rejects(d, "region_sigma NaN", "region_sigma", std::move(Fields().f32("region_sigma", {NAN})));
    IPluginCreatorV3One* s = lib.sparsemax;
    rejects(s, "sparsemax temperature NaN", "temperature", std::move(Fields().f32("temperature", {NAN})));
    rejects(s, "sparsemax num_axes 0", "num_axes", std::move(Fields().i32("num_axes", {0})));
    rejects(s, "sparsemax num_axes as float", "num_axes", std::move(Fields().f32("num_axes", {2.f})));
    // A field without a name must not crash the reader: it is an unknown field, ignored.
    Fields unnamed;
    unnamed.fields.emplace_back(nullptr, nullptr, PluginFieldType::kINT32, 0);
    IPluginV3* p = d->createPlugin("x", unnamed.get(), TensorRTPhase::kBUILD);
    check(p != nullptr, "an unnamed (unknown) field is ignored");
    delete p;
}

void testOutputs(IPluginV3* p, int nbOut, std::vector<DataType> halfOut, std::vector<std::string> shapes) {
    IPluginV3OneBuild* b = build(p);
    check(b->getNbOutputs() == nbOut, "getNbOutputs");
    DataType in = DataType::kHALF, out[4] = {DataType::kINT8, DataType::kINT8, DataType::kINT8, DataType::kINT8};
    check(b->getOutputDataTypes(out, nbOut, &in, 1) == 0, "getOutputDataTypes");
    for (int i = 0; i < nbOut; ++i) check(out[i] == halfOut[i], "output " + std::to_string(i) + " type");
    check(b->getOutputDataTypes(out, nbOut, &in, 2) == -1, "getOutputDataTypes refuses two inputs");

    ExprBuilder eb;
    DimsExprs x{};
    x.nbDims = 4;
    x.d[0] = eb.make(false, -1);  // dynamic batch
    x.d[1] = eb.constant(17);
    x.d[2] = eb.constant(64);
    x.d[3] = eb.constant(48);
    DimsExprs o[4]{};
    check(b->getOutputShapes(&x, 1, nullptr, 0, o, nbOut, eb) == 0, "getOutputShapes");
    for (int i = 0; i < nbOut; ++i) {
        std::string s;
        for (int k = 0; k < o[i].nbDims; ++k)
            s += (o[i].d[k]->isConstant() ? std::to_string(o[i].d[k]->getConstantValue()) : "N") +
                 std::string(k + 1 < o[i].nbDims ? "x" : "");
        check(s == shapes[i], "output " + std::to_string(i) + " shape " + s + " == " + shapes[i]);
    }
    x.nbDims = 1;
    expectLog("getOutputShapes on a 1-D input", "input", [&] {
        check(b->getOutputShapes(&x, 1, nullptr, 0, o, nbOut, eb) == -1, "getOutputShapes refuses a 1-D input");
    });

    // Formats: linear fp32/fp16 in; outputs as the plugin documents; everything else refused.
    std::vector<DynamicPluginTensorDesc> io{dyn({2, 17, 64, 48}, DataType::kHALF)};
    for (int i = 0; i < nbOut; ++i) io.push_back(dyn({2, 17}, halfOut[i]));
    const int n = 1 + nbOut;
    check(b->supportsFormatCombination(0, io.data(), 1, nbOut), "fp16 linear input");
    for (int i = 0; i < nbOut; ++i) check(b->supportsFormatCombination(1 + i, io.data(), 1, nbOut), "output format");
    io[0].desc.type = DataType::kINT8;
    check(!b->supportsFormatCombination(0, io.data(), 1, nbOut), "int8 input refused");
    io[0].desc.type = DataType::kFLOAT;
    io[0].desc.format = TensorFormat::kCHW32;
    check(!b->supportsFormatCombination(0, io.data(), 1, nbOut), "CHW32 input refused");
    io[0].desc.format = TensorFormat::kLINEAR;
    io[n - 1].desc.type = DataType::kINT32;
    check(!b->supportsFormatCombination(n - 1, io.data(), 1, nbOut), "int32 output refused");

    // Build-side defaults TensorRT also calls.
    check(b->getWorkspaceSize(io.data(), 1, io.data() + 1, nbOut) == 0, "no workspace");
    check(b->getNbTactics() == 0 && b->getTimingCacheID() == nullptr && b->getFormatCombinationLimit() > 0,
          "no custom tactics, default timing cache id and format limit");
    check(b->getMetadataString() == nullptr, "no metadata string");
    check(rt(p)->setTactic(0) == 0, "setTactic(0)");
}

void testDecode(Lib const& lib) {
    Fields good;
    good.str("mode", "probmap").f32("temperature", {0.5f}).i32("normalize", {1}).f32("sigmas", cocoSigmas());
    IPluginV3* p = lib.decode->createPlugin("decode", good.get(), TensorRTPhase::kBUILD);
    check(p != nullptr, "decode from good fields");
    if (!p) return;
    check(std::strcmp(core(p)->getPluginName(), "DynPoseDecode") == 0 &&
              std::strcmp(core(p)->getPluginVersion(), "1") == 0 &&
              std::strcmp(core(p)->getPluginNamespace(), "dynpose") == 0,
          "plugin name, version, namespace");
    check(p->getCapabilityInterface(PluginCapabilityType::kCORE) && build(p) && rt(p), "three capabilities");
    testOutputs(p, 2, {DataType::kFLOAT, DataType::kFLOAT}, {"Nx17x2", "Nx17"});

    // onShapeChange without configurePlugin (what a deserialised engine does).
    PluginTensorDesc in = desc({4, 17, 64, 48}, DataType::kFLOAT), outs[2] = {desc({4, 17, 2}, DataType::kFLOAT),
                                                                             desc({4, 17}, DataType::kFLOAT)};
    check(rt(p)->onShapeChange(&in, 1, outs, 2) == 0, "onShapeChange without configure");

    // configurePlugin, static and dynamic shapes, then onShapeChange.
    DynamicPluginTensorDesc din = dyn({-1, 17, 64, 48}, DataType::kFLOAT, {64, 17, 64, 48});
    DynamicPluginTensorDesc dout[2] = {dyn({-1, 17, 2}, DataType::kFLOAT), dyn({-1, 17}, DataType::kFLOAT)};
    check(build(p)->configurePlugin(&din, 1, dout, 2) == 0, "configure [-1,17,64,48]");
    check(rt(p)->onShapeChange(&in, 1, outs, 2) == 0, "onShapeChange after configure");
    din = dyn({-1, 5, 64, 48}, DataType::kFLOAT, {64, 5, 64, 48});
    expectLog("configure K=5 with 17 sigmas", "sigmas", [&] {
        check(build(p)->configurePlugin(&din, 1, dout, 2) == -1, "configure refuses K=5 with 17 sigmas");
    });
    din = dyn({-1, 33, 64, 48}, DataType::kFLOAT);
    expectLog("configure K=33", "exceeds", [&] { check(build(p)->configurePlugin(&din, 1, dout, 2) == -1, "K=33"); });
    din = dyn({-1, 17, 128, 96}, DataType::kFLOAT);
    expectLog("configure 128x96", "pixels", [&] {
        check(build(p)->configurePlugin(&din, 1, dout, 2) == -1, "128x96 is over 8192 pixels");
    });

    // Shared memory: 96x72 (a 384x288 input) needs 57,344 bytes, over the 48 KB default;
    // it is accepted exactly where the device's opt-in limit holds it.
    const size_t limit = static_cast<size_t>(lib.smemLimit());
    din = dyn({-1, 17, 96, 72}, DataType::kHALF);
    if (decode_fits(96, 72, limit)) {
        check(build(p)->configurePlugin(&din, 1, dout, 2) == 0, "96x72 fits this device");
    } else {
        expectLog("configure 96x72 over the device limit", "shared memory", [&] {
            check(build(p)->configurePlugin(&din, 1, dout, 2) == -1, "96x72 refused over " + std::to_string(limit));
        });
    }

    // Serialize -> recreate -> serialize is byte-identical; the clone outlives its original.
    const std::string bytes = serialize(p);
    IPluginV3* again = lib.decode->createPlugin("decode", rt(p)->getFieldsToSerialize(), TensorRTPhase::kRUNTIME);
    check(again != nullptr && serialize(again) == bytes, "recreate from serialized fields is byte-identical");
    IPluginV3* clone = p->clone();
    IPluginV3* attached = rt(p)->attachToContext(nullptr);
    delete p;
    check(clone && serialize(clone) == bytes, "clone serializes identically after its original is gone");
    check(attached && rt(attached)->onShapeChange(&in, 1, outs, 2) == 0, "attachToContext copy works alone");
    check(clone && std::strcmp(core(clone)->getPluginName(), "DynPoseDecode") == 0, "clone keeps its name");
    delete clone;
    delete attached;
    delete again;
}

// The out-of-bounds case of issue 19: 5 sigmas, cloned, shape-changed to K = 17 without
// configurePlugin. make_decode_params reads K sigmas; before the fix it read 12 floats
// past the 20-byte buffer (valgrind: invalid read of size 4).
void testDecodeSigmaCountOnShapeChange(Lib const& lib) {
    Fields five;
    five.f32("sigmas", {0.026f, 0.025f, 0.025f, 0.035f, 0.035f});
    IPluginV3* p = lib.decode->createPlugin("decode", five.get(), TensorRTPhase::kRUNTIME);
    check(p != nullptr, "decode with 5 sigmas");
    if (!p) return;
    IPluginV3* c = p->clone();
    delete p;
    PluginTensorDesc in = desc({2, 17, 64, 48}, DataType::kFLOAT);
    PluginTensorDesc outs[2] = {desc({2, 17, 2}, DataType::kFLOAT), desc({2, 17}, DataType::kFLOAT)};
    expectLog("onShapeChange K=17 with 5 sigmas", "5 sigmas for K = 17", [&] {
        check(rt(c)->onShapeChange(&in, 1, outs, 2) == -1, "onShapeChange refuses K=17 with 5 sigmas");
    });
    in = desc({2, 5, 64, 48}, DataType::kFLOAT);
    check(rt(c)->onShapeChange(&in, 1, outs, 2) == 0, "onShapeChange K=5 with 5 sigmas");
    delete c;

    // Heatmap mode reads no sigmas: any K is fine.
    Fields hm;
    hm.str("mode", "heatmap").f32("sigmas", {0.05f});
    IPluginV3* h = lib.decode->createPlugin("decode", hm.get(), TensorRTPhase::kRUNTIME);
    in = desc({2, 17, 64, 48}, DataType::kHALF);
    check(h && rt(h)->onShapeChange(&in, 1, outs, 2) == 0, "heatmap mode: K=17 with one sigma");
    delete h;
}

// Credible regions: two more outputs [N,K,Q] and [N,K,Q,5]; the fields round-trip; a blur
// needs a third map in shared memory and a side of at most kMaxBlurTaps.
void testDecodeRegions(Lib const& lib) {
    Fields f;
    f.f32("sigmas", cocoSigmas()).f32("masses", {0.62f, 0.93f}).f32("region_sigma", {1.5f});
    IPluginV3* p = lib.decode->createPlugin("decode", f.get(), TensorRTPhase::kBUILD);
    check(p != nullptr, "decode with masses and region_sigma");
    if (!p) return;
    testOutputs(p, 4, {DataType::kFLOAT, DataType::kFLOAT, DataType::kFLOAT, DataType::kFLOAT},
                {"Nx17x2", "Nx17", "Nx17x2", "Nx17x2x5"});
    PluginTensorDesc in = desc({4, 17, 64, 48}, DataType::kHALF);
    PluginTensorDesc outs[4] = {desc({4, 17, 2}, DataType::kFLOAT), desc({4, 17}, DataType::kFLOAT),
                                desc({4, 17, 2}, DataType::kFLOAT), desc({4, 17, 2, 5}, DataType::kFLOAT)};
    check(rt(p)->onShapeChange(&in, 1, outs, 4) == 0, "regions onShapeChange 64x48");
    check(decode_regions_smem_bytes(64, 48, true) == 2048 + 12 * 3072, "64x48 with a blur needs 38,912 bytes");
    check(decode_regions_smem_bytes(64, 48, false) == decode_smem_bytes(64, 48), "no blur: the decode's bytes");
    DynamicPluginTensorDesc din = dyn({-1, 17, 2, 300}, DataType::kFLOAT);
    DynamicPluginTensorDesc dout[4] = {dyn({-1, 17, 2}, DataType::kFLOAT), dyn({-1, 17}, DataType::kFLOAT),
                                       dyn({-1, 17, 2}, DataType::kFLOAT), dyn({-1, 17, 2, 5}, DataType::kFLOAT)};
    expectLog("blur on a 300-wide map", "region_sigma blur", [&] {
        check(build(p)->configurePlugin(&din, 1, dout, 4) == -1, "a blur refuses a side over 256");
    });
    const std::string bytes = serialize(p);
    IPluginV3* again = lib.decode->createPlugin("decode", rt(p)->getFieldsToSerialize(), TensorRTPhase::kRUNTIME);
    check(again != nullptr && serialize(again) == bytes, "masses and region_sigma survive serialisation");
    check(again && build(again)->getNbOutputs() == 4, "the recreated plugin keeps four outputs");
    delete again;
    delete p;
}

void testSparsemax(Lib const& lib) {
    Fields good;
    good.f32("temperature", {0.7f}).i32("num_axes", {2});
    IPluginV3* p = lib.sparsemax->createPlugin("sm", good.get(), TensorRTPhase::kBUILD);
    check(p != nullptr, "sparsemax from good fields");
    if (!p) return;
    testOutputs(p, 1, {DataType::kHALF}, {"Nx17x64x48"});
    PluginTensorDesc in = desc({2, 17, 64, 48}, DataType::kFLOAT), out = in;
    check(rt(p)->onShapeChange(&in, 1, &out, 1) == 0, "sparsemax onShapeChange without configure");
    DynamicPluginTensorDesc din = dyn({-1, 17, 64, 48}, DataType::kFLOAT), dout = din;
    check(build(p)->configurePlugin(&din, 1, &dout, 1) == 0, "sparsemax configure 64x48 rows");
    din = dyn({-1, 17, 128, 96}, DataType::kFLOAT);
    expectLog("sparsemax row 12288", "exceeds", [&] {
        check(build(p)->configurePlugin(&din, 1, &dout, 1) == -1, "sparsemax refuses a 12288 row");
    });
    const std::string bytes = serialize(p);
    IPluginV3* again = lib.sparsemax->createPlugin("sm", rt(p)->getFieldsToSerialize(), TensorRTPhase::kRUNTIME);
    IPluginV3* clone = p->clone();
    delete p;
    check(again && serialize(again) == bytes, "sparsemax recreate byte-identical");
    check(clone && serialize(clone) == bytes, "sparsemax clone outlives its original");
    delete again;
    delete clone;
}

// The launch's shared memory for the largest map the plugin accepts, from the same
// function the launcher uses (decode_smem_bytes), against real devices' opt-in limits.
void testSharedMemoryRule() {
    check(decode_smem_bytes(64, 48) == 2048 + 8 * 3072, "64x48 needs 26,624 bytes");
    check(decode_smem_bytes(96, 72) == 57344 && decode_smem_bytes(96, 72) > kDefaultSmemBytes,
          "96x72 needs 57,344 bytes, over the 48 KB default");
    check(decode_smem_bytes(1, kMaxDecodePixels) == 67584, "largest accepted map (8192 px) needs 67,584 bytes");
    check(sparsemax_smem_bytes(kMaxSparsemaxRow) == kDefaultSmemBytes, "largest sparsemax row fits 48 KB exactly");
    struct Gpu {
        char const* name;
        size_t optin;
        int64_t maxPixels;  // largest H*W that fits, capped by kMaxDecodePixels
    };
    for (Gpu g : {Gpu{"48 KB default", 49152, 5888}, Gpu{"T4 sm_75", 65536, 7936}, Gpu{"Orin sm_87", 166912, 8192},
                  Gpu{"A100 sm_80", 166912, 8192}, Gpu{"H100 sm_90", 232448, 8192}}) {
        int64_t largest = 0;
        for (int64_t px = 1; px <= kMaxDecodePixels + 1; ++px)
            if (decode_fits(1, px, g.optin)) largest = px;
        check(largest == g.maxPixels, std::string(g.name) + ": largest accepted map " + std::to_string(largest) +
                                          " px == " + std::to_string(g.maxPixels));
        check(decode_smem_bytes(1, largest) <= g.optin, std::string(g.name) + ": its launch fits the limit");
    }
}

}  // namespace

int main(int argc, char** argv) {
    char const* path = argc > 1 ? argv[1] : DYNPOSE_PLUGIN_LIB;
    void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        std::printf("FAIL: dlopen %s: %s\n", path, dlerror());
        return 2;
    }
    Finder finder(&gLog);
    auto setFinder = reinterpret_cast<SetLoggerFinder>(dlsym(h, "setLoggerFinder"));
    check(setFinder != nullptr, "setLoggerFinder is exported");
    if (setFinder) setFinder(&finder);

    Lib lib;
    testAbiAndCreators(h, &lib);
    if (lib.decode && lib.sparsemax && lib.smemLimit) {
        testBadFields(lib);
        testDecode(lib);
        testDecodeSigmaCountOnShapeChange(lib);
        testDecodeRegions(lib);
        testSparsemax(lib);
    }
    testSharedMemoryRule();
    if (setFinder) setFinder(nullptr);
    dlclose(h);
    std::printf("TensorRT %d.%d headers: %s (%d checks, %d failures)\n", NV_TENSORRT_MAJOR, NV_TENSORRT_MINOR,
                gFailures ? "FAILED" : "OK", gChecks, gFailures);
    return gFailures ? 1 : 0;
}
