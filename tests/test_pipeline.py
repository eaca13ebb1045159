"""The scheduler on the ONNX Runtime backend, on coco-mini's 4 images and 118 detector boxes."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from runtime.backends.ort_session import open_session
from runtime.heads.grid import heatmap_to_image
from runtime.heads.registry import decode_outputs
from runtime.pose.pipeline import PipelineOptions, PosePipeline
from runtime.pose.preprocess import boxes_to_center_scale, make_crops, sanitize_boxes


@pytest.fixture(scope="module")
def frames(coco_mini):
    gt = json.loads((coco_mini / "person_keypoints.json").read_text())
    dets = json.loads((coco_mini / "person_detections.json").read_text())
    out = []
    for im in sorted(gt["images"], key=lambda i: i["id"]):
        d = [x for x in dets if x["image_id"] == im["id"]]
        out.append(
            (
                cv2.imread(str(coco_mini / im["file_name"])),
                np.array([x["bbox"] for x in d]),
                np.array([x["score"] for x in d]),
            )
        )
    assert sum(len(b) for _, b, _ in out) == 118
    return out


@pytest.fixture(scope="module")
def dyn_results(cpu_artifacts, frames):
    with PosePipeline(cpu_artifacts, PipelineOptions(policy="dyn", backend="ort")) as pipe:
        return [pipe(img, b, s) for img, b, s in frames]


def _alone(artifacts, role, img, boxes):
    """Run one net by itself, outside the scheduler: the reference."""
    m = json.loads((artifacts / "manifest.json").read_text())
    b, _, _ = sanitize_boxes(boxes, img.shape[:2], max_boxes=None)
    c, s = boxes_to_center_scale(b)
    sess = open_session(artifacts / m["models"][role]["onnx"])
    names = [o.name for o in sess.get_outputs()]
    outs = dict(zip(names, sess.run(names, {"input": make_crops(img, c, s)})))
    coords, scores, _ = decode_outputs(m["models"][role]["head"], outs)
    return np.concatenate([heatmap_to_image(coords, c, s), scores[..., None]], axis=-1)


def test_every_box_one_result_in_input_order(dyn_results, frames):
    for res, (_, boxes, scores) in zip(dyn_results, frames):
        assert len(res) == len(boxes)
        np.testing.assert_allclose(res.boxes, boxes, rtol=1e-6)
        np.testing.assert_allclose(res.box_score, scores, rtol=1e-6)
        assert (res.route >= 0).all() and np.isfinite(res.keypoints).all()


def test_dyn_keypoints_come_from_the_routed_net(dyn_results, frames, cpu_artifacts):
    for res, (img, boxes, _) in zip(dyn_results[:2], frames[:2]):
        small, large = (_alone(cpu_artifacts, r, img, boxes) for r in ("small", "large"))
        expect = np.where((res.route == 1)[:, None, None], large, small)
        np.testing.assert_allclose(res.keypoints, expect, atol=1e-3)


def test_route_fraction_matches_manifest_p(dyn_results, cpu_artifacts):
    m = json.loads((cpu_artifacts / "manifest.json").read_text())
    n = sum(len(r) for r in dyn_results)
    n_large = sum(int((r.route == 1).sum()) for r in dyn_results)
    assert n == m["routing"]["n_calib"]
    assert abs(n_large - math.ceil(n * m["routing"]["p"] / 100)) <= 1


@pytest.mark.parametrize("policy", ["small", "large"])
def test_single_net_policies_equal_that_net_alone(policy, frames, cpu_artifacts):
    img, boxes, scores = frames[0]
    with PosePipeline(cpu_artifacts, policy=policy, backend="ort") as pipe:
        res = pipe(img, boxes, scores)
    assert (res.route == (policy == "large")).all()
    np.testing.assert_allclose(res.keypoints, _alone(cpu_artifacts, policy, img, boxes), atol=1e-3)


def test_edge_cases_and_chunking(frames, cpu_artifacts):
    img, boxes, scores = frames[1]
    with PosePipeline(cpu_artifacts, policy="dyn", backend="ort", max_batch=3) as pipe:
        empty = pipe(img, [])
        assert len(empty) == 0 and empty.keypoints.shape == (0, 17, 3)
        one = pipe(img, boxes[:1], scores[:1])
        assert len(one) == 1 and np.isfinite(one.keypoints).all()
        off = pipe(img, [[-500, -500, 20, 20], [1e5, 1e5, 30, 30], [np.nan, 1, 2, 3]])
        assert (off.route == -1).all() and np.isnan(off.keypoints).all() and len(off.dropped) == 3
        chunked = pipe(img, boxes, scores)  # N > max_batch: chunked
    with PosePipeline(cpu_artifacts, policy="dyn", backend="ort", max_batch=64) as pipe:
        whole = pipe(img, boxes, scores)
    assert len(boxes) > 3
    np.testing.assert_array_equal(chunked.route, whole.route)
    np.testing.assert_allclose(chunked.keypoints, whole.keypoints, atol=1e-4)


def test_pipelined_frames_equal_single_calls(frames, cpu_artifacts, dyn_results):
    few = [(img, b[:6], s[:6]) for img, b, s in frames]
    with PosePipeline(cpu_artifacts, policy="dyn", backend="ort") as pipe:
        single = [pipe(*f) for f in few]
        streamed = list(pipe.run_many(few))
    for a, b in zip(single, streamed):
        np.testing.assert_array_equal(a.route, b.route)
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-5)


def test_budget_mode_caps_large_crops(frames, cpu_artifacts):
    img, boxes, scores = frames[1]
    with PosePipeline(cpu_artifacts, policy="large", backend="ort", budget_ms=1e-3) as pipe:
        res = pipe(img, boxes, scores)
    assert (res.route == 0).all()  # an impossible budget leaves nothing for the large net
    with PosePipeline(cpu_artifacts, policy="large", backend="ort", budget_ms=1e9) as pipe:
        res = pipe(img, boxes, scores)
    assert (res.route == 1).all()


def test_bad_inputs_are_named(cpu_artifacts, frames):
    with PosePipeline(cpu_artifacts, backend="ort") as pipe:
        with pytest.raises(ValueError, match="HxWx3 BGR"):
            pipe(None, [[0, 0, 1, 1]])
        with pytest.raises(ValueError, match="x,y,w,h"):
            pipe(frames[0][0], [[1, 2]])
    with pytest.raises(ValueError, match="unknown policy"):
        PosePipeline(cpu_artifacts, policy="fastest")


def test_cpu_pose_nets_share_one_worker_unless_asked(frames, cpu_artifacts, dyn_results):
    """On ONNX Runtime CPU the small and large nets run on one worker (each session already uses
    every core; both at once cost dyn 8 % of its ideal mixture in CPU time), the router on its own;
    ``overlap_nets=True`` gives each net its worker back, with the same results."""
    with PosePipeline(cpu_artifacts, PipelineOptions(policy="dyn", backend="ort")) as pipe:
        assert pipe.streams["small"] is pipe.streams["large"]
        assert pipe.streams["router"] is not pipe.streams["small"]
    with PosePipeline(
        cpu_artifacts, PipelineOptions(policy="dyn", backend="ort", backend_options={"overlap_nets": True})
    ) as pipe:
        assert pipe.streams["small"] is not pipe.streams["large"]
        got = list(pipe.run_many(frames))
    for a, b in zip(got, dyn_results):
        np.testing.assert_array_equal(a.route, b.route)
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-4)
