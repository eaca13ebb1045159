"""The TensorRT rules NVIDIA documents, on the checked fakes of the selected bindings
(DYNPOSE_TRT_HARNESS=10 and =11): DLA typing and placement, INT8 -> FP16 fallback,
TensorRT's error recorder, engine version comparison, event flags and elapsed_ms in
budget mode, and cleanup of streams/slots/events inside the CUDA context.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

import runtime.backends.trt as trt_backend
from build.trt import build_engines, compat
from build.trt.builder import EngineBuildError
from build.trt.targets import BuildOptions
from runtime.backends.trt_rules import same_trt_release, trt_release
from tests.abi_stub import write_abi_stub
from tests.trt_harness import fake_cuda
from tests.trt_harness.api import HarnessApiError
from tools.device_check.tiny_artifacts import make_artifacts, router_model

pytestmark = pytest.mark.trt
CHECKLINKS = "[checkLinks] Error Code 2: Internal Error (Assertion: the Q/DQ graph could not be linked)"


def _plan(path: Path) -> dict:
    return json.loads(path.read_bytes())


def _emulate_dla_release(world, monkeypatch) -> None:
    """11.4.0 bindings stand for 11.4.1 (same API; DLA is back from 11.4.1)."""
    if compat.dla_typing(world.spec.version) is None:
        monkeypatch.setattr(compat, "STRONG_DLA_FROM", compat.trt_release(world.spec.version))
        world.dla_from_11 = compat.STRONG_DLA_FROM


# -- the rules themselves (pure functions, same on every binding) ------------------------------
@pytest.mark.parametrize(
    "version,typing_",
    [
        ("10.3.0", "weak"),
        ("10.3.0.30", "weak"),
        ("10.16.1", "weak"),
        ("11.0.0", None),
        ("11.4.0.106", None),
        ("11.4.1", "strong"),
        ("11.5", "strong"),
        ("12.0.0", "strong"),
    ],
)
def test_dla_typing_per_release(version: str, typing_: str | None) -> None:
    assert compat.dla_typing(version) == typing_
    assert compat.dla_precision_flags("int8", typing_) == (["FP16", "INT8"] if typing_ == "weak" else [])
    assert compat.dla_precision_flags("fp16", typing_) == (["FP16"] if typing_ == "weak" else [])
    args = compat.trtexec_precision_args("int8", typing_)
    assert ("--stronglyTyped" in args) == (typing_ != "weak")  # never with --useDLACore on 10.x


@pytest.mark.parametrize(
    "built,running,same",
    [
        ("10.3.0", "10.3.0.30", True),
        ("11.4.0", "11.4.0.106", True),
        ("10.3", "10.3.0", True),
        ("10.3.0", "10.3.1", False),
        ("10.3.0", "10.4.0.26", False),
        ("11.4.0.106", "10.3.0", False),
        (None, "10.3.0", False),
        ("", "10.3.0", False),
    ],
)
def test_engine_version_rule(built, running, same: bool) -> None:
    assert same_trt_release(built, running) is same
    assert trt_release("11.4.0.106") == (11, 4, 0) and trt_release("10.3") == (10, 3, 0)
    assert compat.trtexec_version(100300) == (10, 3, 0) and compat.trtexec_version(110401) == (11, 4, 1)


def test_dla_layer_count_reads_detailed_layer_info_only() -> None:
    dla = {
        "Layers": [
            {"Name": "{ForeignNode[a...b]}", "LayerType": "DLA"},
            {"Name": "out", "LayerType": "Reformat"},
        ]
    }
    assert compat.count_dla_layers(json.dumps(dla)) == 1
    assert compat.count_dla_layers({"Layers": [{"Name": "conv", "LayerType": "CaskConvolution"}]}) == 0
    assert compat.count_dla_layers({"Layers": ["conv", "relu"]}) is None  # names only: unknown


# -- DLA on the Python builder ---------------------------------------------------------------
def test_dla_build_follows_the_release_rule(trt_world, tmp_path: Path, monkeypatch) -> None:
    trt_world.dla_cores = 2
    _emulate_dla_release(trt_world, monkeypatch)
    trt = trt_world.trt
    root = tmp_path / "a"
    manifest = make_artifacts(root)
    build_engines(root, manifest, "orin")
    rec, plan = manifest["models"]["router"]["engine"], _plan(root / "router.engine")
    typing_ = compat.dla_typing(trt.__version__)
    assert rec["dla_core"] == 0 and rec["dla_layers"] > 0 and rec["static_batch"] == 32
    assert plan["strongly_typed"] is (typing_ == "strong")
    if typing_ == "weak":  # 10.x: weakly typed, FP16 + INT8 for the Q/DQ router, GPU fallback
        assert plan["flags"] == ["FP16", "GPU_FALLBACK", "INT8"] and plan["network_flags"] == 0
    else:  # >= 11.4.1: strongly typed, no precision flag exists
        assert plan["flags"] == ["GPU_FALLBACK"]
    configs = [a[0] for c, m, a, _ in trt_world.calls if (c, m) == ("IBuilderConfig", "profiling_verbosity=")]
    assert configs == [trt.ProfilingVerbosity.DETAILED]  # placement readable, DLA build only
    for role in ("small", "large"):  # GPU nets stay strongly typed, no flags
        assert (
            _plan(root / f"{role}.engine")["strongly_typed"] and _plan(root / f"{role}.engine")["flags"] == []
        )


def test_placement_checked_before_dla_core_is_recorded(trt_world, tmp_path: Path, monkeypatch) -> None:
    """A DLA build whose layers all fell back to the GPU (10.x: no FP16 flag, the old bug) is not
    recorded as dla_core=0 with a static batch: it is rebuilt with the dynamic GPU profile."""
    trt_world.dla_cores = 2
    if compat.dla_typing(trt_world.spec.version) == "weak":
        monkeypatch.setattr(compat, "dla_precision_flags", lambda precision, typing_: [])
    else:  # >= 11.4.1: TensorRT may still place every layer on the GPU (unsupported layers)
        _emulate_dla_release(trt_world, monkeypatch)
        trt_world.dla_places_nothing = True
    root = tmp_path / "a"
    manifest = make_artifacts(root)
    build_engines(root, manifest, "orin")
    rec = manifest["models"]["router"]["engine"]
    assert rec["dla_core"] is None and rec["static_batch"] is None
    assert rec["profiles"] == [{"min": 1, "opt": 32, "max": 128}]
    assert rec["dla_fallback"] == "no layer runs on DLA"


def test_release_without_dla_builds_router_on_gpu(trt_world, tmp_path: Path, caplog) -> None:
    if compat.dla_typing(trt_world.spec.version) is not None:
        trt_world.dla_cores = 0  # 10.3 on Orin Nano / dGPU: no cores
    else:
        trt_world.dla_cores = 2  # 11.4.0 on Jetson: the release has no DLA, whatever the cores
    root = tmp_path / "a"
    manifest = make_artifacts(root)
    build_engines(root, manifest, "orin")
    rec = manifest["models"]["router"]["engine"]
    assert rec["dla_core"] is None and rec["profiles"] == [{"min": 1, "opt": 32, "max": 128}]
    assert not [c for c in trt_world.calls if c[:2] == ("IBuilderConfig", "DLA_core=")]
    assert "building for the GPU" in caplog.text


# -- INT8 -> FP16 fallback and TensorRT's own reason -----------------------------------------
def test_failed_int8_build_falls_back_to_fp16_with_one_line(
    trt_world, tmp_path: Path, capsys, monkeypatch
) -> None:
    trt_world.dla_cores = 2
    _emulate_dla_release(trt_world, monkeypatch)
    trt_world.fail_int8 = CHECKLINKS
    root = tmp_path / "a"
    manifest = make_artifacts(root)
    onnx.save(router_model(), str(root / "router.fp16.onnx"))  # stands for calib's FP16 router
    manifest["models"]["router"]["variants"]["fp16"] = {"onnx": "router.fp16.onnx"}
    build_engines(root, manifest, "orin")
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("router: INT8 engine build failed (")
    assert CHECKLINKS in lines[0] and "building FP16 from router.fp16.onnx instead" in lines[0]
    rec = manifest["models"]["router"]["engine"]
    assert (rec["precision"], rec["onnx"]) == ("fp16", "router.fp16.onnx")
    assert rec["fallback"] == {
        "from": "int8",
        "to": "fp16",
        "onnx": "router.int8_trt.onnx",
        "reason": CHECKLINKS,
    }
    assert rec["dla_core"] == 0  # FP16 still runs on DLA
    assert json.loads((root / "router.engine.json").read_text())["fallback"]["to"] == "fp16"
    assert "fallback" not in manifest["models"]["small"]["engine"]


def test_int8_failure_without_fallback_reports_tensorrts_reason(trt_world, tmp_path: Path) -> None:
    from dataclasses import replace

    from build.trt.builder import EngineBuilder
    from build.trt.targets import engine_specs, get_target

    trt_world.fail_int8 = CHECKLINKS
    root = tmp_path / "a"
    manifest = make_artifacts(root)
    router = next(s for s in engine_specs(root, manifest, get_target("x86-gpu")) if s.role == "router")
    assert router.precision == "int8" and router.fallback_onnx.name == "router.onnx"
    builder = EngineBuilder(trt_world.trt, tmp_path / "cache")
    with pytest.raises(EngineBuildError) as e:
        builder.build(replace(router, fallback_onnx=None, fallback_precision=None))
    assert "router.int8_trt.onnx" in str(e.value) and CHECKLINKS in str(e.value) and "\n" not in str(e.value)
    recorders = [a[0] for c, m, a, _ in trt_world.calls if (c, m) == ("Builder", "error_recorder=")]
    assert len(recorders) == 1 and isinstance(recorders[0], trt_world.trt.IErrorRecorder)


def test_fakes_check_the_new_api_against_the_real_classes(trt_world) -> None:
    trt = trt_world.trt
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    with pytest.raises(HarnessApiError, match="expects IErrorRecorder"):
        builder.error_recorder = object()
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    runtime.error_recorder = compat.make_error_recorder(trt)
    with pytest.raises(HarnessApiError, match="has no attribute 'error_reporter'"):
        runtime.error_reporter = None
    engine = trt_world.default("ICudaEngine")
    inspector = engine.create_engine_inspector()
    with pytest.raises(HarnessApiError, match="matches no signature"):
        inspector.get_engine_information("json")  # a LayerInformationFormat
    with pytest.raises(HarnessApiError, match="has no attribute"):
        engine.create_inspector()


# -- runtime: events, elapsed_ms, budget mode, cleanup ---------------------------------------
@pytest.fixture
def built(trt_world, tmp_path: Path):
    root = tmp_path / "dyn-test-x86"
    manifest = make_artifacts(root, int8_router=False, target="x86-gpu")
    build_engines(root, manifest, "x86-gpu")
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root, manifest


def test_engine_from_trtexec_three_part_version_is_accepted(built) -> None:
    root, manifest = built
    running = trt_backend.TrtBackend(root, manifest).trt.__version__
    three = ".".join(running.split(".")[:3])
    for entry in manifest["models"].values():
        entry["engine"]["trt_version"] = three  # what trtexec records
    trt_backend.TrtBackend(root, manifest).check()
    major, minor, patch = trt_release(running)
    manifest["models"]["large"]["engine"]["trt_version"] = f"{major}.{minor}.{patch + 1}"
    with pytest.raises(trt_backend.BackendError, match="trt_version"):
        trt_backend.TrtBackend(root, manifest).check()


def test_done_events_block_and_timing_events_time(built) -> None:
    root, manifest = built
    be = trt_backend.TrtBackend(root, manifest)
    small = be.open_runner("small").activate()
    stream = be.new_stream("small")
    x = np.random.default_rng(0).normal(size=(3, 3, 256, 192)).astype(np.float32)
    pending = small.infer_async(x, stream)
    assert pending.elapsed_ms is None
    pending.wait()
    assert isinstance(pending.elapsed_ms, float) and pending.elapsed_ms > 0
    flags = fake_cuda.event_flags
    events = list(fake_cuda.GPU.events)
    done = [e for e in events if e.flags & flags.BLOCKING_SYNC]
    timing = [e for e in events if not e.flags & flags.DISABLE_TIMING]
    assert len(done) == 2 and all(e.flags == flags.DISABLE_TIMING | flags.BLOCKING_SYNC for e in done)
    assert len(timing) == 4 and len(events) == 6  # 2 slots x (done + start/end)
    assert fake_cuda.GPU.spin_waits == 0  # no host thread spun on an event
    with pytest.raises(fake_cuda.CudaOrderError, match="DISABLE_TIMING"):
        done[0].time_since(done[1])  # the stand-in enforces the flag
    be.close()


def test_budget_mode_learns_from_elapsed_ms(built) -> None:
    from runtime.pose.pipeline import PosePipeline

    root, _ = built
    img = np.random.default_rng(1).integers(0, 255, (480, 640, 3), np.uint8)
    boxes = np.array(
        [[40, 30, 120, 260], [300, 50, 110, 250], [500, 100, 100, 240], [200, 200, 90, 200]], float
    )
    with PosePipeline(root, backend="trt", budget_ms=50.0) as p:
        cold = dict(p._ms_per_crop)  # one cold 4-crop call per net
        seen: list[float] = []
        original = trt_backend.TrtPending.wait

        def wait(self):
            out = original(self)
            seen.append(self.elapsed_ms)
            return out

        trt_backend.TrtPending.wait = wait
        try:
            for _ in range(3):
                p(img, boxes)
        finally:
            trt_backend.TrtPending.wait = original
        assert seen and all(isinstance(ms, float) for ms in seen)
        assert any(p._ms_per_crop[r] != cold[r] for r in ("small", "large"))  # corrected, not frozen


def test_close_frees_everything_inside_the_context_in_order(built) -> None:
    root, manifest = built
    be = trt_backend.TrtBackend(root, manifest)
    runners = [be.open_runner(r).activate() for r in ("small", "large")]
    streams = [be.new_stream(r) for r in ("small", "large")]
    x = np.zeros((2, 3, 256, 192), np.float32)
    pend = [r.infer_async(x, s) for r, s in zip(runners, streams)]  # left in flight on purpose
    assert fake_cuda.GPU.pinned_live == 8  # 2 runners x 2 slots x (in + out)
    del pend
    be.close()
    released = fake_cuda.GPU.released
    assert released and all(inside for _, inside in released), released
    kinds = [k for k, _ in released]
    assert kinds.count("stream") == 2 and kinds.count("event") == 12 and kinds.count("pinned") == 8
    assert max(i for i, k in enumerate(kinds) if k in ("pinned", "device", "event")) < kinds.index("stream")
    assert fake_cuda.GPU.pinned_live == 0 and not fake_cuda.GPU.mem
    assert all(s.cuda_stream is None for s in streams) and not any(r.is_active for r in runners)
    be.close()  # idempotent


def test_stand_in_catches_release_outside_the_context() -> None:
    """Meta-test: the stand-in does flag what the old close() did (streams collected after detach)."""
    cuda = fake_cuda.install()
    ctx = cuda.Device(0).retain_primary_context()
    ctx.push()
    stream = cuda.Stream()
    cuda.Context.pop()
    ctx.detach()
    del stream
    assert fake_cuda.GPU.released == [("stream", False)]


def test_plugin_lib_with_precision_auto_builds_the_int8_fused_variant(trt_world, tmp_path: Path) -> None:
    from tools.device_check.tiny_artifacts import pose_model

    root = tmp_path / "a"
    manifest = make_artifacts(root, plugin_large=True)
    onnx.save(pose_model(2), str(root / "large.int8_trt.onnx"))  # stands for calib's Q/DQ large net
    manifest["models"]["large"]["variants"]["int8_trt"] = {"onnx": "large.int8_trt.onnx"}
    lib = tmp_path / "libdynpose_plugins.so"
    write_abi_stub(lib, trt_world.trt.__version__)  # a loadable library with the ABI record
    trt_world.plugin_libs[str(lib)] = ["DynPoseDecode"]
    build_engines(root, manifest, "x86-gpu", BuildOptions(plugin_lib=str(lib)))
    rec = manifest["models"]["large"]["engine"]
    assert (rec["precision"], rec["onnx"]) == (
        "int8",
        "large.plugin.int8_trt.onnx",
    )  # not the fp32 plugin.onnx
    variant = manifest["models"]["large"]["variants"]["plugin_int8_trt"]
    assert variant["from"] == "large.int8_trt.onnx" and variant["outputs"] == ["keypoints", "keypoint_scores"]
    fused = onnx.load(str(root / "large.plugin.int8_trt.onnx"))
    assert [n.op_type for n in fused.graph.node][-1] == "DynPoseDecode"
    assert manifest["models"]["small"]["engine"]["onnx"] == "small.onnx"  # no fused variant: plain net


# -- deconvolution weight axis -------------------------------------------------------------------
def _deconv_router(axis: int) -> onnx.ModelProto:
    """A router-shaped Q/DQ net with a ConvTranspose (3 -> 2 channels) whose weight scales are per
    channel on ``axis``: 0 is TensorRT's (input channels, 3 scales), 1 ONNX Runtime's (2 scales)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.integers(-100, 100, (3, 2, 2, 2)).astype(np.int8)
    inits = [
        numpy_helper.from_array(np.array(0.02, np.float32), "s"),
        numpy_helper.from_array(np.array(0, np.int8), "z"),
        numpy_helper.from_array(w, "wq"),
        numpy_helper.from_array(np.full(w.shape[axis], 0.01, np.float32), "ws"),
        numpy_helper.from_array(np.zeros(w.shape[axis], np.int8), "wz"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["x"]),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=axis),
        helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up", strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["y"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("ReduceMean", ["f"], ["score"], axes=[1], keepdims=1),
    ]
    io = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 256, 192])]
    g = helper.make_graph(
        nodes, "router", io, [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])], inits
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_deconv_weights_on_onnxruntimes_axis_are_refused_before_tensorrt_parses(
    trt_world, tmp_path: Path
) -> None:
    root = tmp_path / "a"
    manifest = make_artifacts(root)
    onnx.save(_deconv_router(axis=1), str(root / "router.int8_trt.onnx"))
    with pytest.raises(
        EngineBuildError,
        match=r"router.int8_trt.onnx: .*quantized on axis 1; TensorRT reads "
        r"deconvolution weight scales on axis 0",
    ):
        build_engines(root, manifest, "orin")
    onnx.save(_deconv_router(axis=compat.DECONV_WEIGHT_AXIS), str(root / "router.int8_trt.onnx"))
    build_engines(root, manifest, "orin")
    rec = manifest["models"]["router"]["engine"]
    assert (rec["precision"], rec["onnx"]) == ("int8", "router.int8_trt.onnx")
