"""TrtBackend on the API harness + the pycuda stand-in: results, buffers and stream/event ordering.

The stand-in runs queued GPU work only when something waits for it and
copies read host memory at execution time, so a missing event, a host read
before the wait, or a pinned buffer reused too early gives wrong numbers here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import runtime.backends.trt as trt_backend
from build.trt import build_engines, compat
from runtime.backends import BackendError
from runtime.backends.ort_session import open_session
from tests.abi_stub import write_abi_stub
from tests.trt_harness import fake_cuda
from tools.device_check.tiny_artifacts import make_artifacts

pytestmark = pytest.mark.trt


@pytest.fixture
def built(trt_world, tmp_path: Path, monkeypatch):
    trt_world.dla_cores = 2
    if compat.dla_typing(trt_world.spec.version) is None:  # 11.4.0 bindings stand for 11.4.1 (DLA again)
        monkeypatch.setattr(compat, "STRONG_DLA_FROM", compat.trt_release(trt_world.spec.version))
        trt_world.dla_from_11 = compat.STRONG_DLA_FROM
    root = tmp_path / "dyn-test-orin"
    manifest = make_artifacts(root)
    build_engines(root, manifest, "orin")
    return root, manifest


def _ref(root: Path, onnx_name: str, x: np.ndarray) -> np.ndarray:
    return open_session(root / onnx_name).run(None, {"input": x})[0]


def _crops(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3, 256, 192)).astype(np.float32)


def test_router_split_nets_ordering_and_results(built) -> None:
    root, manifest = built
    be = trt_backend.TrtBackend(root, manifest)
    be.check()
    router, small, large = (be.open_runner(r).activate() for r in ("router", "small", "large"))
    s_r, s_s, s_l = (be.new_stream(n) for n in ("router", "small", "large"))
    x = _crops(12)
    scores = router.infer_async(x, s_r).wait()["score"][:, 0]
    np.testing.assert_allclose(scores, _ref(root, "router.int8_trt.onnx", x)[:, 0], rtol=0, atol=0)
    hard = scores >= np.median(scores)  # the split, on the host
    n_before = len(fake_cuda.GPU.log)
    p_small, p_large = small.infer_async(x[~hard], s_s), large.infer_async(x[hard], s_l)
    assert len(fake_cuda.GPU.log) == n_before, "infer_async ran GPU work synchronously: no overlap possible"
    out_l, out_s = p_large.wait()["heatmaps"], p_small.wait()["heatmaps"]
    np.testing.assert_array_equal(out_s, _ref(root, "small.onnx", x[~hard]))
    np.testing.assert_array_equal(out_l, _ref(root, "large.onnx", x[hard]))
    log = fake_cuda.GPU.log
    kernel_at = {label: i for i, (_, kind, label) in enumerate(log) if kind == "kernel"}
    first_net_copy = min(i for i, (h, kind, _) in enumerate(log) if kind == "htod" and h != s_r.handle)
    assert kernel_at["router.int8_trt.onnx"] < first_net_copy  # router -> split -> nets
    assert {h for h, kind, _ in log if kind == "kernel"} == {s_r.handle, s_s.handle, s_l.handle}
    # pinned-only async copies and no device-wide sync are enforced by the stand-in itself


def test_back_to_back_calls_reuse_slots_safely(built) -> None:
    root, manifest = built
    be = trt_backend.TrtBackend(root, manifest, slots=2)
    small = be.open_runner("small").activate()
    stream = be.new_stream("small")
    xs = [_crops(n, seed) for n, seed in ((3, 1), (5, 2), (2, 3))]
    pend = [small.infer_async(x, stream) for x in xs]  # third call recycles slot 0
    for x, p in reversed(list(zip(xs, pend))):
        np.testing.assert_array_equal(p.wait()["heatmaps"], _ref(root, "small.onnx", x))


def test_runner_moved_to_another_stream_waits_for_the_first(built) -> None:
    root, manifest = built
    be = trt_backend.TrtBackend(root, manifest)
    small = be.open_runner("small").activate()
    a, b = be.new_stream("a"), be.new_stream("b")
    x1, x2 = _crops(4, 1), _crops(4, 2)
    p1, p2 = small.infer_async(x1, a), small.infer_async(x2, b)
    assert (b.handle, "wait") in [(h, k) for h, k, _ in fake_cuda.GPU.enqueued]
    np.testing.assert_array_equal(p2.wait()["heatmaps"], _ref(root, "small.onnx", x2))
    assert fake_cuda.GPU.log.index((a.handle, "kernel", "small.onnx")) < fake_cuda.GPU.log.index(
        (b.handle, "kernel", "small.onnx")
    )
    np.testing.assert_array_equal(p1.wait()["heatmaps"], _ref(root, "small.onnx", x1))


def test_static_dla_profile_pads_and_caps(built) -> None:
    root, manifest = built
    be = trt_backend.TrtBackend(root, manifest)
    router = be.open_runner("router").activate()
    assert (router.max_batch, router.static_batch) == (32, 32)
    x = _crops(5)
    out = router.infer(x, be.new_stream("r"))["score"]
    assert out.shape == (5, 1)
    np.testing.assert_array_equal(out, _ref(root, "router.int8_trt.onnx", x))
    with pytest.raises(BackendError, match="exceeds the engine profile max 32"):
        router.infer_async(_crops(33), be.new_stream("r2"))
    assert be.open_runner("large").activate().max_batch == 64


@pytest.mark.parametrize(
    "field,value",
    [("trt_version", "10.2.0"), ("gpu", "NVIDIA GeForce RTX 4090"), ("sm", "8.9"), ("l4t", "R36.4.3")],
)
def test_check_refuses_an_engine_from_another_machine(built, field: str, value: str) -> None:
    root, manifest = built
    manifest["models"]["large"]["engine"][field] = value
    with pytest.raises(BackendError) as e:
        trt_backend.TrtBackend(root, manifest).check()
    msg = str(e.value)
    assert "\n" not in msg and field in msg and value in msg
    assert f"rebuild: python -m build.engines --config dyn-test --target orin --out {root.parent}" in msg


def test_check_reads_l4t_of_this_machine(built, monkeypatch, tmp_path: Path) -> None:
    root, manifest = built
    rel = tmp_path / "nv_tegra_release"
    rel.write_text("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: x\n")
    assert trt_backend.read_l4t(rel) == "R36.4.3"
    monkeypatch.setattr(trt_backend, "NV_TEGRA_RELEASE", rel)
    with pytest.raises(BackendError, match="l4t None != 'R36.4.3'"):
        trt_backend.TrtBackend(root, manifest).check()  # built off-Jetson, run on Jetson


def test_plugin_library_loaded_or_clear_error(built, trt_world, tmp_path: Path) -> None:
    root, manifest = built
    rec = manifest["models"]["small"]["engine"]
    rec["plugin_library"] = "libdynpose_plugins.so"
    be = trt_backend.TrtBackend(root, manifest)
    with pytest.raises(
        BackendError, match=r"plugin library .*libdynpose_plugins.so, which does not exist; build it"
    ):
        be.open_runner("small").activate()
    write_abi_stub(root / "libdynpose_plugins.so", trt_world.trt.__version__)  # loadable, ABI record
    be.open_runner("small").activate()
    loads = [a for c, m, a, _ in trt_world.calls if (c, m) == ("IPluginRegistry", "load_library")]
    assert loads == [(str(root / "libdynpose_plugins.so"),)]


def test_missing_engine_and_manifest_without_engines(built) -> None:
    root, manifest = built
    (root / "small.engine").unlink()
    with pytest.raises(BackendError, match="small.engine is missing; build: python -m build.engines"):
        trt_backend.TrtBackend(root, manifest).open_runner("small").activate()
    bare = json.loads(json.dumps(manifest))
    del bare["models"]["router"]["engine"]
    with pytest.raises(BackendError, match="router: no TensorRT engine"):
        trt_backend.TrtBackend(root, bare).check()


def test_scheduler_drives_trt_exactly_like_ort(trt_world, tmp_path: Path, coco_mini: Path) -> None:
    """The real PosePipeline on TrtBackend (harness + pycuda stand-in) gives the ORT backend's
    routes and keypoints on a real image with its real detector boxes."""
    import cv2

    from runtime.pose.pipeline import PosePipeline

    root = tmp_path / "dyn-test-orin"
    manifest = make_artifacts(root, int8_router=False)
    build_engines(root, manifest, "orin")
    (root / "manifest.json").write_text(json.dumps(manifest))
    img = cv2.imread(str(coco_mini / "000000196141.jpg"))
    dets = [
        d for d in json.loads((coco_mini / "person_detections.json").read_text()) if d["image_id"] == 196141
    ]
    boxes = np.array([d["bbox"] for d in dets])
    with PosePipeline(root, backend="trt", max_batch=8) as p_trt, PosePipeline(root, backend="ort") as p_ort:
        assert type(p_trt.backend).__name__ == "TrtBackend"
        got, ref = p_trt(img, boxes), p_ort(img, boxes)
        frames = [(img, boxes[:5], None), (img, boxes[5:9], None)]
        streamed = list(p_trt.run_many(frames))
    assert 0 < (got.route == 1).sum() < len(boxes)  # both nets ran
    np.testing.assert_array_equal(got.route, ref.route)
    np.testing.assert_allclose(got.keypoints, ref.keypoints, atol=1e-4)
    np.testing.assert_allclose(streamed[1].keypoints, ref.keypoints[5:9], atol=1e-4)
    kinds = [kind for _, kind, _ in fake_cuda.GPU.log]
    assert kinds.count("kernel") >= 3
