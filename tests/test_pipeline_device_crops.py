"""The pose pipeline's crops on the device (runtime/pose/pipeline.py, device_crops_plan).

A real PosePipeline over TensorRT-harness engines whose runners have the crop kernel (its host
build, queued on the fake CUDA streams: tests/trt_harness/crop_kernel.py) makes no crop on the
host: one frame upload per view, one kernel launch per net chunk, and results equal to the same
pipeline making its crops on the host from the same frames and boxes. A pipeline whose runners
cannot take device crops (ORT, or TensorRT without the kernel) keeps every crop on the host and
says why once.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

import runtime.backends.trt as trt_backend
from build.trt import build_engines
from kernels.host_build import HostKernels
from runtime.backends import BackendError
from runtime.pose.pipeline import PosePipeline
from tests.trt_harness import fake_cuda
from tests.trt_harness.crop_kernel import host_crop_launcher
from tools.device_check.tiny_artifacts import make_artifacts

LOGGER = "runtime.pose.pipeline"


def _artifacts(root: Path, engines: bool = True) -> Path:
    """Tiny artifacts whose large net takes 384x288 crops beside 256x192 router/small ones, so
    both the shared-size and the own-size crop paths run."""
    manifest = make_artifacts(root, int8_router=False, input_hw={"large": (384, 288)})
    if engines:
        build_engines(root, manifest, "x86-gpu")
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _frames(coco_mini: Path) -> list[tuple[np.ndarray, np.ndarray, None]]:
    """Real images with their real detector boxes (one image without any box)."""
    dets = json.loads((coco_mini / "person_detections.json").read_text())
    out = []
    for image_id in (196141, 785, 196141):
        img = cv2.imread(str(coco_mini / f"{image_id:012d}.jpg"))
        boxes = np.array([d["bbox"] for d in dets if d["image_id"] == image_id]).reshape(-1, 4)
        out.append((img, boxes, None))
    out.append((out[1][0], np.zeros((0, 4)), None))
    return out


def _same(got, want) -> None:  # noqa: ANN001 - FrameResult pairs
    np.testing.assert_array_equal(got.route, want.route)
    np.testing.assert_array_equal(got.router_score, want.router_score)
    np.testing.assert_array_equal(got.keypoints, want.keypoints)
    np.testing.assert_array_equal(got.presence, want.presence)


@pytest.mark.trt
def test_pipeline_makes_its_crops_on_the_device(trt_world, tmp_path: Path, coco_mini: Path, monkeypatch):
    root = _artifacts(tmp_path / "dyn")
    frames = _frames(coco_mini)
    calls: list[tuple[int, int]] = []
    launcher = host_crop_launcher(HostKernels(), calls)
    # one process, one primary context: both pipelines live side by side (the harness's context
    # is detached for good by the first close)
    with PosePipeline(root, backend="trt", max_batch=4) as host:
        assert host.host_crops_reason is not None and "no crop kernel" in host.host_crops_reason
        want = [host(*f) for f in frames]
        want_many = list(host.run_many(frames))
        want_views = host.run_views(frames[:2])
        monkeypatch.setattr(trt_backend.TrtBackend, "crop_launcher", lambda self: launcher)
        with PosePipeline(root, backend="trt", max_batch=4) as dev:
            assert dev.host_crops_reason is None
            start = len(fake_cuda.GPU.enqueued)
            got = [dev(*f) for f in frames]
            frame_stream = dev._frame_stream.handle
            frame_copies = [
                h for h, kind, _ in fake_cuda.GPU.enqueued[start:] if kind == "htod" and h == frame_stream
            ]
            streams = {r: s.handle for r, s in dev.streams.items()}
            n_single = len(calls)
            got_many = list(dev.run_many(frames))  # frame t+1 uploaded while frame t's nets run
            got_views = dev.run_views(frames[:2])  # two frames, one submission
            assert dev._makers == {}, "no crop was made on the host"
    assert len(frame_copies) == 3, "one upload per frame with boxes, none for the empty frame"
    for g, w in zip([*got, *got_many, *got_views], [*want, *want_many, *want_views]):
        _same(g, w)
    assert 0 < (want[0].route == 1).sum() < len(want[0].route), "both nets ran"
    assert np.isfinite(want[0].keypoints).all() and len(want[0]) > 4  # real numbers, several chunks
    single = calls[:n_single]
    assert {h for h, _ in single} == set(streams.values()), "each net's crops on its own stream"
    assert max(n for _, n in single) <= 4, "chunked at the batch the pipeline runs"
    per_role = {r: sum(n for h, n in single if h == streams[r]) for r in streams}
    n_boxes = sum(len(r.route) for r in got)
    n_large = sum(int((r.route == 1).sum()) for r in got)
    assert per_role == {"router": n_boxes, "small": n_boxes - n_large, "large": n_large}


@pytest.mark.trt
def test_trt_without_the_crop_kernel_keeps_host_crops_and_says_why_once(
    trt_world, tmp_path: Path, coco_mini: Path, caplog
):
    root = _artifacts(tmp_path / "dyn")
    frames = _frames(coco_mini)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        with PosePipeline(root, backend="trt") as pipe:
            for f in frames:
                pipe(*f)
            assert pipe._makers, "the crops were made on the host"
            assert pipe._frame_stream is None
    said = [r for r in caplog.records if r.name == LOGGER and "crops are made on the host" in r.message]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    assert "router: no crop kernel" in said[0].message and "plugin library" in said[0].message


def test_ort_pipeline_keeps_host_crops(tmp_path: Path, coco_mini: Path, caplog):
    """The ORT path is unchanged: host crops, the reason said once (quietly: ORT has no device
    crops to miss), and the device entry points refuse cleanly."""
    root = _artifacts(tmp_path / "dyn", engines=False)
    frames = _frames(coco_mini)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        with PosePipeline(root, backend="ort") as pipe:
            results = [pipe(*f) for f in frames]
            assert pipe.host_crops_reason == "router: the OrtRunner takes host crops only"
            with pytest.raises(BackendError, match="no crops on a device"):
                pipe.backend.upload_frame(frames[0][0], pipe.streams["router"])
            with pytest.raises(BackendError, match="small: crops cannot be made on the device"):
                pipe.runners["small"].infer_crops_async(
                    None, np.zeros((1, 2, 3)), (np.zeros(3), np.ones(3)), pipe.streams["small"]
                )
    said = [r for r in caplog.records if r.name == LOGGER and "crops are made on the host" in r.message]
    assert len(said) == 1 and said[0].levelno == logging.INFO
    assert len(results[0].route) == len(frames[0][1])
