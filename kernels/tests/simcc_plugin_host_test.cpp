// ctest: DynPoseSimCCDecode's host code, executed (the SimCC twin of plugin_host_test.cpp).
// Loads libdynpose_plugins.so with dlopen - no libnvinfer, no GPU - and drives every
// IPluginV3 method except enqueue as TensorRT's builder and runtime would, under valgrind
// when it is installed: two inputs of different lengths are where an index slip would read
// the wrong tensor's dims.
#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <NvInferRuntime.h>
#include <NvInferVersion.h>

#include "dynpose_kernels.h"
#include "plugin_test_support.h"

using namespace nvinfer1;
using namespace plugin_test;

#ifndef DYNPOSE_PLUGIN_LIB
#define DYNPOSE_PLUGIN_LIB "libdynpose_plugins.so"
#endif

namespace {

IPluginCreatorV3One* findCreator(void* h) {
    auto get = reinterpret_cast<GetCreators>(dlsym(h, "getCreators"));
    check(get != nullptr, "getCreators is exported");
    if (!get) return nullptr;
    int32_t n = -1;
    IPluginCreatorInterface* const* creators = get(n);
    IPluginCreatorV3One* found = nullptr;
    for (int32_t i = 0; creators && i < n; ++i) {
        auto* c = static_cast<IPluginCreatorV3One*>(creators[i]);
        if (std::strcmp(c->getPluginName(), "DynPoseSimCCDecode") == 0) found = c;
    }
    check(found != nullptr, "getCreators lists DynPoseSimCCDecode");
    if (!found) return nullptr;
    InterfaceInfo const info = found->getInterfaceInfo();
    check(std::strcmp(info.kind, "PLUGIN CREATOR_V3ONE") == 0 && info.major == 1 && info.minor == 0,
          std::string("creator interface is IPluginCreatorV3One 1.0, got ") + info.kind);
    check(std::strcmp(found->getPluginVersion(), "1") == 0 && std::strcmp(found->getPluginNamespace(), "dynpose") == 0,
          "creator version 1, namespace dynpose");
    std::string names;
    PluginFieldCollection const* fc = found->getFieldNames();
    for (int32_t k = 0; fc && k < fc->nbFields; ++k) names += std::string(fc->fields[k].name) + ",";
    check(names == "split_ratio,", "simcc decode fields: " + names);
    return found;
}

void testBadFields(IPluginCreatorV3One* c) {
    auto rejects = [&](std::string const& what, Fields f) {
        expectLog("bad field (" + what + ")", "split_ratio", [&] {
            IPluginV3* p = c->createPlugin("x", f.get(), TensorRTPhase::kBUILD);
            check(p == nullptr, what + " returns null");
            delete p;
        });
    };
    rejects("split_ratio 0", std::move(Fields().f32("split_ratio", {0.f})));
    rejects("split_ratio negative", std::move(Fields().f32("split_ratio", {-2.f})));
    rejects("split_ratio NaN", std::move(Fields().f32("split_ratio", {NAN})));
    rejects("split_ratio inf", std::move(Fields().f32("split_ratio", {INFINITY})));
    rejects("split_ratio as int32", std::move(Fields().i32("split_ratio", {2})));
    rejects("split_ratio with two values", std::move(Fields().f32("split_ratio", {2.f, 2.f})));
    rejects("split_ratio with no value", std::move(Fields().f32("split_ratio", {})));
}

std::string shapeOf(DimsExprs const& e) {
    std::string s;
    for (int k = 0; k < e.nbDims; ++k)
        s += (e.d[k]->isConstant() ? std::to_string(e.d[k]->getConstantValue()) : "N") + (k + 1 < e.nbDims ? "x" : "");
    return s;
}

void testBuildInterface(IPluginV3* p) {
    IPluginV3OneBuild* b = build(p);
    check(b->getNbOutputs() == 2, "getNbOutputs");
    DataType in[2] = {DataType::kHALF, DataType::kHALF}, out[2] = {DataType::kINT8, DataType::kINT8};
    check(b->getOutputDataTypes(out, 2, in, 2) == 0 && out[0] == DataType::kFLOAT && out[1] == DataType::kFLOAT,
          "fp32 keypoints and scores from fp16 inputs");
    check(b->getOutputDataTypes(out, 2, in, 1) == -1, "getOutputDataTypes refuses one input");

    ExprBuilder eb;
    DimsExprs x{}, y{};
    x.nbDims = y.nbDims = 3;
    x.d[0] = y.d[0] = eb.make(false, -1);  // dynamic batch
    x.d[1] = y.d[1] = eb.constant(17);
    x.d[2] = eb.constant(384);
    y.d[2] = eb.constant(512);
    DimsExprs inputs[2] = {x, y}, o[2]{};
    check(b->getOutputShapes(inputs, 2, nullptr, 0, o, 2, eb) == 0, "getOutputShapes");
    check(shapeOf(o[0]) == "Nx17x2" && shapeOf(o[1]) == "Nx17",
          "outputs Nx17x2 and Nx17, got " + shapeOf(o[0]) + " and " + shapeOf(o[1]));
    expectLog("getOutputShapes on one input", "two inputs", [&] {
        check(b->getOutputShapes(inputs, 1, nullptr, 0, o, 2, eb) == -1, "getOutputShapes refuses one input");
    });
    inputs[1].nbDims = 4;
    expectLog("getOutputShapes on a 4-D simcc_y", "two inputs", [&] {
        check(b->getOutputShapes(inputs, 2, nullptr, 0, o, 2, eb) == -1, "getOutputShapes refuses a 4-D simcc_y");
    });

    // Formats: both inputs linear, fp32 or fp16, the same type; outputs linear fp32.
    DynamicPluginTensorDesc io[4] = {dyn({2, 17, 384}, DataType::kHALF), dyn({2, 17, 512}, DataType::kHALF),
                                     dyn({2, 17, 2}, DataType::kFLOAT), dyn({2, 17}, DataType::kFLOAT)};
    for (int pos = 0; pos < 4; ++pos) check(b->supportsFormatCombination(pos, io, 2, 2), "fp16 inputs, fp32 outputs");
    io[0].desc.type = io[1].desc.type = DataType::kFLOAT;
    check(b->supportsFormatCombination(0, io, 2, 2) && b->supportsFormatCombination(1, io, 2, 2), "fp32 inputs");
    io[1].desc.type = DataType::kHALF;
    check(!b->supportsFormatCombination(1, io, 2, 2), "simcc_y of another type than simcc_x refused");
    io[0].desc.type = DataType::kINT8;
    check(!b->supportsFormatCombination(0, io, 2, 2), "int8 simcc_x refused");
    io[0].desc.type = DataType::kFLOAT;
    io[0].desc.format = TensorFormat::kCHW32;
    check(!b->supportsFormatCombination(0, io, 2, 2), "non-linear simcc_x refused");
    io[0].desc.format = TensorFormat::kLINEAR;
    io[2].desc.type = DataType::kHALF;
    check(!b->supportsFormatCombination(2, io, 2, 2), "fp16 keypoints refused");
    io[3].desc.type = DataType::kINT32;
    check(!b->supportsFormatCombination(3, io, 2, 2), "int32 scores refused");

    check(b->getWorkspaceSize(io, 2, io + 2, 2) == 0, "no workspace");
    check(b->getNbTactics() == 0 && b->getTimingCacheID() == nullptr && b->getFormatCombinationLimit() > 0,
          "no custom tactics, default timing cache id and format limit");
    check(b->getMetadataString() == nullptr && rt(p)->setTactic(0) == 0, "no metadata string; setTactic(0)");
}

void testShapes(IPluginV3* p) {
    IPluginV3OneBuild* b = build(p);
    DynamicPluginTensorDesc out[2] = {dyn({-1, 17, 2}, DataType::kFLOAT), dyn({-1, 17}, DataType::kFLOAT)};
    DynamicPluginTensorDesc in[2] = {dyn({-1, 17, 384}, DataType::kFLOAT, {64, 17, 384}),
                                     dyn({-1, 17, 512}, DataType::kFLOAT, {64, 17, 512})};
    check(b->configurePlugin(in, 2, out, 2) == 0, "configure [-1,17,384] + [-1,17,512] (256x192)");
    in[0] = dyn({-1, 17, 576}, DataType::kHALF);
    in[1] = dyn({-1, 17, 768}, DataType::kHALF);
    check(b->configurePlugin(in, 2, out, 2) == 0, "configure 384x288 rows (no shared-memory limit)");
    in[1] = dyn({-1, 16, 768}, DataType::kHALF);
    expectLog("configure K 17 vs 16", "K differs", [&] { check(b->configurePlugin(in, 2, out, 2) == -1, "K 17 vs 16"); });
    in[0] = dyn({4, 17, 576}, DataType::kHALF);
    in[1] = dyn({8, 17, 768}, DataType::kHALF);
    expectLog("configure N 4 vs 8", "N differs", [&] { check(b->configurePlugin(in, 2, out, 2) == -1, "N 4 vs 8"); });
    in[1] = dyn({4, 17, 24, 32}, DataType::kHALF);
    expectLog("configure a 4-D simcc_y", "[N,K,bins]", [&] { check(b->configurePlugin(in, 2, out, 2) == -1, "4-D y"); });
    expectLog("configure one input", "two inputs", [&] { check(b->configurePlugin(in, 1, out, 2) == -1, "one input"); });

    // onShapeChange: the actual shapes (also without configurePlugin: a deserialised engine).
    PluginTensorDesc x = desc({4, 17, 384}, DataType::kFLOAT), y = desc({4, 17, 512}, DataType::kFLOAT);
    PluginTensorDesc io[2] = {x, y}, outs[2] = {desc({4, 17, 2}, DataType::kFLOAT), desc({4, 17}, DataType::kFLOAT)};
    check(rt(p)->onShapeChange(io, 2, outs, 2) == 0, "onShapeChange [4,17,384] + [4,17,512]");
    io[1] = desc({4, 5, 512}, DataType::kFLOAT);
    expectLog("onShapeChange K 17 vs 5", "K differs", [&] { check(rt(p)->onShapeChange(io, 2, outs, 2) == -1, "K"); });
    io[0] = desc({4, 5, 0}, DataType::kFLOAT);
    expectLog("onShapeChange Wx = 0", "Wx = 0", [&] { check(rt(p)->onShapeChange(io, 2, outs, 2) == -1, "Wx 0"); });
    io[0] = desc({0, 5, 384}, DataType::kFLOAT);
    io[1] = desc({0, 5, 512}, DataType::kFLOAT);
    check(rt(p)->onShapeChange(io, 2, outs, 2) == 0, "an empty batch (N = 0) is a valid shape");
}

void testLifecycle(IPluginCreatorV3One* c) {
    IPluginV3* dflt = c->createPlugin("simcc", Fields().get(), TensorRTPhase::kBUILD);
    check(dflt != nullptr, "no fields: the RTMPose default");
    Fields two;
    two.f32("split_ratio", {2.0f});
    check(dflt && serialize(dflt) == [&] {
        IPluginV3* q = c->createPlugin("simcc", two.get(), TensorRTPhase::kBUILD);
        std::string s = q ? serialize(q) : "";
        delete q;
        return s;
    }(), "the default split_ratio is 2.0");
    delete dflt;

    Fields good;
    good.f32("split_ratio", {3.0f});
    IPluginV3* p = c->createPlugin("simcc", good.get(), TensorRTPhase::kBUILD);
    check(p != nullptr, "simcc decode from good fields");
    if (!p) return;
    check(std::strcmp(core(p)->getPluginName(), "DynPoseSimCCDecode") == 0 &&
              std::strcmp(core(p)->getPluginVersion(), "1") == 0 &&
              std::strcmp(core(p)->getPluginNamespace(), "dynpose") == 0,
          "plugin name, version, namespace");
    check(p->getCapabilityInterface(PluginCapabilityType::kCORE) && build(p) && rt(p), "three capabilities");
    testBuildInterface(p);
    testShapes(p);

    const std::string bytes = serialize(p);
    check(bytes.find("split_ratio|") == 0, "serializes split_ratio");
    IPluginV3* again = c->createPlugin("simcc", rt(p)->getFieldsToSerialize(), TensorRTPhase::kRUNTIME);
    check(again != nullptr && serialize(again) == bytes, "recreate from serialized fields is byte-identical");
    IPluginV3* clone = p->clone();
    IPluginV3* attached = rt(p)->attachToContext(nullptr);
    delete p;
    PluginTensorDesc io[2] = {desc({2, 17, 384}, DataType::kHALF), desc({2, 17, 512}, DataType::kHALF)};
    PluginTensorDesc outs[2] = {desc({2, 17, 2}, DataType::kFLOAT), desc({2, 17}, DataType::kFLOAT)};
    check(clone && serialize(clone) == bytes, "clone serializes identically after its original is gone");
    check(attached && rt(attached)->onShapeChange(io, 2, outs, 2) == 0, "attachToContext copy works alone");
    delete clone;
    delete attached;
    delete again;
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
    if (IPluginCreatorV3One* c = findCreator(h)) {
        testBadFields(c);
        testLifecycle(c);
    }
    if (setFinder) setFinder(nullptr);
    dlclose(h);
    std::printf("TensorRT %d.%d headers, DynPoseSimCCDecode: %s (%d checks, %d failures)\n", NV_TENSORRT_MAJOR,
                NV_TENSORRT_MINOR, gFailures ? "FAILED" : "OK", gChecks, gFailures);
    return gFailures ? 1 : 0;
}
