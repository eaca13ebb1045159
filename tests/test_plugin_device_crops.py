"""Crops on the device in the TensorRT runtime path (runtime/backends/trt.py), on the API harness.

The crop kernel cannot run here (no GPU), so its launcher is the kernel's own source built for
the host (kernels.host_build: dynpose_crop.cuh), queued on the fake CUDA stream and run on the
fake device memory when the stream executes. The stand-in runs queued work only when something
waits, so a missing frame event, a frame buffer reused while a crop still reads it, or a crop
written after the net read its input gives wrong numbers here, not a lucky pass.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import runtime.backends.trt as trt_backend
from build.trt import build_engines
from kernels.host_build import HostKernels
from runtime.backends import BackendError
from runtime.backends.base import device_crops_plan
from runtime.pose.preprocess import MEAN, STD, boxes_to_center_scale, crop_affines, make_crops
from tests.trt_harness import fake_cuda
from tests.trt_harness.crop_kernel import host_crop_launcher
from tools.device_check.tiny_artifacts import make_artifacts

NORM = (MEAN, STD)


def test_refusal_rules_say_why():
    f32, f16, i8 = np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.int8)
    launch = lambda *a: 0  # noqa: E731 - any launcher
    assert trt_backend.device_crops_refusal((8, 3, 256, 192), f32, launch) is None
    assert trt_backend.device_crops_refusal((8, 3, 384, 288), f16, launch) is None
    assert "plugin library" in trt_backend.device_crops_refusal((8, 3, 256, 192), f32, None)
    assert "[N,3,H,W]" in trt_backend.device_crops_refusal((8, 256, 192, 3), f32, launch)
    assert "int8" in trt_backend.device_crops_refusal((8, 3, 256, 192), i8, launch)


def test_pipeline_plan_for_runners_of_other_backends():
    """A runner without device crops (ONNX Runtime, Triton) keeps every crop on the host."""
    why = device_crops_plan({"router": object()})
    assert why == "router: the object backend has no device crops"


@pytest.fixture
def built(trt_world, tmp_path: Path):
    root = tmp_path / "dyn-crops"
    manifest = make_artifacts(root)
    build_engines(root, manifest, "x86-gpu")
    return root, manifest


@pytest.mark.trt
def test_device_crops_give_the_nets_the_host_crops(built, coco_mini: Path):
    """One frame upload, one crop launch per net on the net's own stream, and outputs equal to
    the same engines run on make_crops' tensor."""
    root, manifest = built
    frame = cv2.imread(str(coco_mini / "000000000785.jpg"))
    boxes = np.array([[30.5, 40.0, 180.0, 300.0], [250.0, 60.0, 120.0, 200.0], [-20.0, 300.0, 90.0, 150.0]])
    c, s = boxes_to_center_scale(boxes)
    calls: list[tuple[int, int]] = []
    be = trt_backend.TrtBackend(root, manifest)
    be.use_crop_launcher(host_crop_launcher(HostKernels(), calls))
    small, large = (be.open_runner(r).activate() for r in ("small", "large"))
    assert small.crops_refusal is None and large.crops_refusal is None
    assert device_crops_plan({"small": small, "large": large}) is None
    s_up, s_s, s_l = (be.new_stream(n) for n in ("upload", "small", "large"))
    n_htod = sum(1 for _, kind, _ in fake_cuda.GPU.enqueued if kind == "htod")
    dev = be.upload_frame(frame, s_up)
    mats = crop_affines(c, s)
    p_small = small.infer_crops_async(dev, mats[:2], NORM, s_s)
    p_large = large.infer_crops_async(dev, mats[2:], NORM, s_l)
    out_s, out_l = p_small.wait(), p_large.wait()
    ref = make_crops(frame, c, s)
    ref_s = small.infer_async(ref[:2], s_s).wait()
    ref_l = large.infer_async(ref[2:], s_l).wait()
    for got, want in ((out_s, ref_s), (out_l, ref_l)):
        assert got.keys() == want.keys()
        for k in got:
            np.testing.assert_array_equal(got[k], want[k])
    assert calls == [(s_s.handle, 2), (s_l.handle, 1)]
    frame_copies = [
        (h, label)
        for h, kind, label in fake_cuda.GPU.enqueued[n_htod:]
        if kind == "htod" and h == s_up.handle
    ]
    assert len(frame_copies) == 1, "the frame crosses once, whatever the number of crops and nets"
    be.close()


@pytest.mark.trt
def test_frame_buffers_are_reused_only_after_their_crops(built, coco_mini: Path):
    """Three frames through a ring of two, nothing waited in between: the third upload must wait
    for the first frame's crops, or the first crops would read the third frame."""
    root, manifest = built
    be = trt_backend.TrtBackend(root, manifest, slots=3)
    be.use_crop_launcher(host_crop_launcher(HostKernels(), []))
    small = be.open_runner("small").activate()
    s_up, s_s = be.new_stream("upload"), be.new_stream("small")
    paths = sorted(coco_mini.glob("*.jpg"))[:3]
    frames = [cv2.resize(cv2.imread(str(p)), (640, 480)) for p in paths]  # one size: no regrowth
    c, s = boxes_to_center_scale(np.array([[20.0, 20.0, 150.0, 260.0]]))
    pending = []
    for f in frames:
        dev = be.upload_frame(f, s_up, ring=2)
        pending.append(small.infer_crops_async(dev, crop_affines(c, s), NORM, s_s))
    got = [p.wait()["heatmaps"] for p in pending]
    for f, g in zip(frames, got):
        np.testing.assert_array_equal(g, small.infer_async(make_crops(f, c, s), s_s).wait()["heatmaps"])
    be.close()


@pytest.mark.trt
def test_without_the_crop_kernel_the_runner_says_why(built):
    root, manifest = built
    be = trt_backend.TrtBackend(root, manifest)
    small = be.open_runner("small").activate()
    assert "plugin library" in small.crops_refusal
    assert device_crops_plan({"small": small}).startswith("small: no crop kernel")
    s = be.new_stream("small")
    with pytest.raises(BackendError, match="crops cannot be made on the device"):
        small.infer_crops_async(None, np.zeros((1, 2, 3)), NORM, s)  # type: ignore[arg-type]
    be.close()


def _as_probmap_net(path: Path) -> None:
    """The tiny pose net with its map named ``probmaps``: a probability-map head's output."""
    import onnx

    m = onnx.load(str(path))
    for node in m.graph.node:
        node.output[:] = ["probmaps" if o == "heatmaps" else o for o in node.output]
    for o in m.graph.output:
        if o.name == "heatmaps":
            o.name = "probmaps"
    onnx.save(m, str(path))


@pytest.mark.trt
def test_probmap_engine_is_built_with_the_calibrated_regions(trt_world, tmp_path: Path):
    """A probability-map net built with the plugin library gets the fused decode with regions for
    the default masses under the manifest's calibration; the runtime accepts them as its own."""
    from build.plugin_nodes import region_spec
    from build.trt.targets import BuildOptions
    from runtime.artifacts.manifest import sha256_file
    from runtime.heads.probfields import ProbFieldsDecoder
    from tests.abi_stub import write_abi_stub

    root = tmp_path / "a"
    manifest = make_artifacts(root, plugin_large=True)
    for name in ("large.onnx", "large.fp16.onnx"):
        _as_probmap_net(root / name)
    large = manifest["models"]["large"]
    large["head"] = "probmap"
    large["sha256"] = sha256_file(root / "large.onnx")
    large["variants"]["fp16"]["sha256"] = sha256_file(root / "large.fp16.onnx")
    cov = {"nominal": [0.2, 0.4, 0.6, 0.8, 1.0], "coverage": [0.1, 0.3, 0.5, 0.7, 1.0], "sigma": 1.0}
    manifest["credible"] = {"fitted": True, "coverage_map": cov}
    lib = tmp_path / "libdynpose_plugins.so"
    write_abi_stub(lib, trt_world.trt.__version__)
    trt_world.plugin_libs[str(lib)] = ["DynPoseDecode"]
    build_engines(root, manifest, "x86-gpu", BuildOptions(plugin_lib=str(lib)))
    rec = large["engine"]
    outputs = [t["name"] for t in rec["io"] if t["mode"] == "output"]
    assert outputs[-4:] == ["keypoints", "keypoint_scores", "region_pixels", "region_ellipses"]
    assert "probmaps" not in outputs  # the maps stay on the device
    variant = next(v for v in large["variants"].values() if v["onnx"] == rec["onnx"])
    assert variant["regions"] == region_spec(manifest).to_json()
    assert variant["regions"]["nominal"] != [0.5, 0.9]  # calibrated, not the reported masses
    assert ProbFieldsDecoder(manifest).device_regions
    assert not ProbFieldsDecoder(manifest, (0.5, 0.8)).device_regions


@pytest.mark.cuda
def test_the_real_library_exports_the_crop_kernel(tmp_path: Path):
    """The runtime's ctypes binding against the real libdynpose_plugins.so (TensorRT 10.3 headers):
    the symbol resolves, the argument checks answer before any CUDA call (no GPU here), and a
    library without the kernel gives no launcher."""
    from kernels.host_build import build_host_lib
    from kernels.plugin_build import SHARED_TRT_HEADERS, build_plugin_lib

    lib = build_plugin_lib(SHARED_TRT_HEADERS / "10.3.0" / "include")
    launch = trt_backend.library_crop_launcher(lib)
    assert launch is not None
    mean, std = np.ascontiguousarray(MEAN, np.float32), np.ascontiguousarray(STD, np.float32)
    ptrs = (mean.ctypes.data, std.ctypes.data, 0)
    assert launch(0, 480, 640, 0, 0, 0, False, 256, 192, *ptrs) == 0  # no crops: nothing launched
    assert launch(0, 0, 640, 0, 1, 0, False, 256, 192, *ptrs) == -8  # an empty frame is refused
    zero_std = np.zeros(3, np.float32)
    assert launch(0, 480, 640, 0, 1, 0, False, 256, 192, mean.ctypes.data, zero_std.ctypes.data, 0) == -8
    assert trt_backend.library_crop_launcher(tmp_path / "missing.so") is None
    assert trt_backend.library_crop_launcher(build_host_lib()) is None  # a real library without it
