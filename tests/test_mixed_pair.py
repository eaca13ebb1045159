"""A pair of nets of different input sizes from the command line (issue #28 item 3):
``--small rtmpose-t --large rtmpose-m-384`` (256x192 and 384x288, random weights).

It builds at ``--target cpu`` (fp32 and ``--precision int8``: each net calibrated on crops at its
own size) and ``--target orin`` (each engine's trtexec shapes at its own size); ``runtime.images``
and ``runtime.video`` put every person's keypoints where the same crops, cut at the routed net's
size and run through that net alone, put them; the routing-cost table runs each net at its size
(ONNX Runtime refuses a 256x192 tensor for the 384x288 net, so a wrong size cannot time); the
Triton repository's BLS model takes one crop tensor per size and serves (marker ``triton``).
Before this change the build refused the pair in one line ("pair nets of the same input size").
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from build.engines import main as build_main
from runtime.artifacts.manifest import load_manifest
from runtime.backends.ort_session import open_session
from runtime.heads.base import DecodeContext
from runtime.heads.grid import heatmap_to_image
from runtime.heads.registry import decode_outputs, decoder_for
from runtime.pose.preprocess import CropWindows, net_input_hw, net_sizes, sanitize_boxes

REPO = Path(__file__).resolve().parents[1]
SMALL, LARGE = (256, 192), (384, 288)
PAIR = ("--small", "rtmpose-t", "--large", "rtmpose-m-384")
NAME = "pair-rtmpose-t-rtmpose-m-384"
TOL_PX = 0.011  # the CLIs write keypoints rounded to 2 decimals


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, coco_mini: Path) -> tuple[Path, Path]:
    """(artifacts, Triton repository) of one int8 CPU build of the mixed pair (fp32 + int8_cpu)."""
    root = tmp_path_factory.mktemp("mixed")
    repo = root / "repo"
    extra = (*PAIR, "--precision", "int8", "--calib-max-crops", "8", "--calib-data", str(coco_mini))
    return _build(root / "art", "cpu", *extra, "--triton-repo", str(repo)), repo


def _build(out: Path, target: str, *flags: str) -> Path:
    assert build_main(["--config", "dyn-r50-h32", "--target", target, "--out", str(out), *flags]) == 0
    return out / f"{NAME}-{target}"  # a pair from the command line is named after its nets


def _session(art: Path, role: str) -> ort.InferenceSession:
    m = load_manifest(art, verify=False)
    return open_session(art / m["models"][role]["onnx"])


def _alone(art: Path, image: np.ndarray, boxes: np.ndarray, role: str) -> np.ndarray:
    """[N,17,3] image xy + score: the boxes cut at ``role``'s own size, through that net alone."""
    m = load_manifest(art, verify=False)
    hw = net_input_hw(m, role)
    windows = CropWindows(boxes)
    sess = _session(art, role)
    names = [o.name for o in sess.get_outputs()]
    outs = dict(zip(names, sess.run(names, {"input": windows.crops(image, hw)})))
    net = decoder_for(m["models"][role]["head"], outs).decode(outs, DecodeContext(input_hw=hw))
    xy = heatmap_to_image(net.coords, *windows.at(hw), net.grid_hw)
    return np.concatenate([xy, net.scores[..., None]], -1)


def test_the_pair_builds_at_each_nets_size_fp32_and_int8(built):
    art, _ = built
    m = load_manifest(art, verify=False)
    assert net_sizes(m) == (SMALL, LARGE)
    assert {r: net_input_hw(m, r) for r in ("router", "small", "large")} == {
        "router": SMALL,  # the router reads the small net's crops
        "small": SMALL,
        "large": LARGE,
    }
    for role, hw in (("router", SMALL), ("small", SMALL), ("large", LARGE)):
        v = m["models"][role]["variants"]["int8_cpu"]
        q = open_session(art / v["onnx"])
        assert q.get_inputs()[0].shape[2:] == list(hw), role  # calibrated and quantized at its size
        assert v["n_calib_crops"] == 8
    assert m["calibration"]["n_crops"] == 8 and m["calibration"]["variants"] == ["int8_cpu"]
    assert set(m["calibration"]["report"]["nets"]) == {"router", "small", "large"}
    entries = {e["precision"]: e for e in m["routing"]["costs"]["entries"]}  # the routing-cost table
    assert set(entries) == {"fp32", "int8_cpu"} and m["routing"]["costs"]["shipped"] == "int8_cpu"
    for e in entries.values():
        assert set(e["ms_per_crop"]) == {"router", "small", "large"} and e["ratios"]["large"] > 1


def test_the_cost_table_times_each_net_at_its_size(built):
    """build.costs.time_variants: the 384x288 net is fed 384x288 crops (ORT refuses any other)."""
    from build.costs import time_variants

    art, _ = built
    m = load_manifest(art, verify=False)
    entries, _ = time_variants(art, m, ("fp32", "int8_cpu"), batch=2, rounds=1, threads=1)
    for v in ("fp32", "int8_cpu"):
        assert set(entries[v]["ms_per_crop"]) >= {"small", "large"}
    sess = _session(art, "large")
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        sess.run(None, {"input": np.zeros((1, 3, *SMALL), np.float32)})


def test_orin_plan_shapes_each_engine_at_its_size(tmp_path, coco_mini):
    art = _build(tmp_path, "orin", *PAIR, "--precision", "fp32", "--calib-data", str(coco_mini))
    plan = (art / "build_plan.sh").read_text()
    for role, (h, w) in (("router", SMALL), ("small", SMALL), ("large", LARGE)):
        block = plan[plan.index(f"--onnx={role}.onnx") :].split("tee ")[0]
        shapes = re.findall(r"--(min|opt|max)Shapes=input:(\d+)x3x(\d+)x(\d+)", block)
        assert [s[0] for s in shapes] == ["min", "opt", "max"], block
        assert all((int(s[2]), int(s[3])) == (h, w) for s in shapes), (role, shapes)


def _dets(coco_mini: Path) -> dict[int, tuple[list, list, list]]:
    """image id -> (boxes, scores, each record's index in the file: the CLI's ``det_index``)."""
    per: dict[int, tuple[list, list, list]] = {}
    for k, d in enumerate(json.loads((coco_mini / "person_detections.json").read_text())):
        boxes, scores, index = per.setdefault(d["image_id"], ([], [], []))
        boxes.append(d["bbox"])
        scores.append(d["score"])
        index.append(k)
    return per


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def test_images_cli_keypoints_match_each_net_alone(built, coco_mini, tmp_path):
    art, _ = built
    dets = coco_mini / "person_detections.json"
    files = {
        im["id"]: im["file_name"]
        for im in json.loads((coco_mini / "person_keypoints.json").read_text())["images"]
    }
    per = _dets(coco_mini)
    got: dict[str, list[dict]] = {}
    for policy in ("small", "large", "dyn"):
        out = tmp_path / policy
        _run(
            "runtime.images", "--engines", str(art), "--images", str(coco_mini), "--dets", str(dets),
            "--out", str(out), "--policy", policy,
        )  # fmt: skip
        got[policy] = json.loads((out / "results.json").read_text())
    ref: dict[str, dict[int, np.ndarray]] = {"small": {}, "large": {}}
    for image_id, (boxes, scores, index) in per.items():
        image = cv2.imread(str(coco_mini / files[image_id]))
        b, kept, _ = sanitize_boxes(boxes, image.shape[:2], scores)
        for role in ref:
            for i, kp in zip(kept, _alone(art, image, b, role)):
                ref[role][index[i]] = kp
    routed = {"small": 0, "large": 0}
    for policy, recs in got.items():
        assert len(recs) == len(ref["small"]) == 118
        for rec in recs:
            kp = np.asarray(rec["keypoints"], np.float64).reshape(17, 3)[:, :2]
            key = rec["det_index"]
            err = {r: np.abs(kp - ref[r][key][:, :2]).max() for r in ref}
            if policy != "dyn":
                assert err[policy] <= TOL_PX, (policy, key, err)
            else:
                best = min(err, key=err.get)
                assert err[best] <= TOL_PX, (key, err)
                routed[best] += 1
    assert routed["small"] > 0 and routed["large"] > 0, routed  # both sizes really served


def test_video_cli_keypoints_match_the_routed_net_alone(built, coco_mini, tmp_path):
    art, _ = built
    per = _dets(coco_mini)
    image_id = min(per)
    name = f"{image_id:012d}.jpg"
    image = cv2.imread(str(coco_mini / name))
    video = tmp_path / "v.avi"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, image.shape[1::-1])
    for _ in range(3):
        vw.write(image)
    vw.release()
    boxes, scores, _ = per[image_id]
    recs = [{"frame": f, "bbox": b, "score": s} for f in range(3) for b, s in zip(boxes, scores)]
    (tmp_path / "dets.json").write_text(json.dumps(recs))
    out = tmp_path / "out"
    _run(
        "runtime.video", "--engines", str(art), "--source", str(video),
        "--detector", f"json:{tmp_path / 'dets.json'}", "--out", str(out), "--no-video", "--quiet",
    )  # fmt: skip
    lines = [json.loads(x) for x in (out / "v.jsonl").read_text().splitlines()]
    cap = cv2.VideoCapture(str(video))
    seen = set()
    for rec in lines:
        ok, frame = cap.read()  # the frames as the reader decoded them (MJPG is lossy)
        assert ok
        b, kept, _ = sanitize_boxes(boxes, frame.shape[:2], scores)
        alone = {r: _alone(art, frame, b, r) for r in ("small", "large")}
        row = {int(i): j for j, i in enumerate(kept)}
        assert len(rec["persons"]) == len(kept)
        for p in rec["persons"]:
            kp = np.asarray(p["keypoints"], np.float64)[:, :2]
            want = alone[p["route"]][row[p["index"]], :, :2]
            assert np.abs(kp - want).max() <= TOL_PX, (rec["frame"], p["index"], p["route"])
            seen.add(p["route"])
    assert seen == {"small", "large"}


@pytest.mark.triton
def test_triton_repository_of_the_pair_serves(built, coco_mini):
    """The per-net models and the BLS model (``crops`` at 256x192 for the router and small net,
    ``crops_384x288`` for the large one) of the mixed pair on a real tritonserver."""
    import tritonclient.grpc as grpcclient

    from runtime.pose.pipeline import PipelineOptions, PosePipeline
    from tools.triton_server import start_server

    art, repo = built
    per = _dets(coco_mini)
    image_id = min(per)
    image = cv2.imread(str(coco_mini / f"{image_id:012d}.jpg"))
    boxes, scores, _ = per[image_id]
    server = start_server(repo)
    try:
        with PosePipeline(art, PipelineOptions(backend="ort")) as pipe:
            ref = pipe(image, boxes, scores)
            k1, k2, heads = pipe.k1, pipe.k2, pipe.heads
        opts = {"url": server.grpc_url, "timeout_s": 120.0}
        with PosePipeline(art, PipelineOptions(backend="triton", backend_options=opts)) as pipe:
            got = pipe(image, boxes, scores)
        np.testing.assert_array_equal(got.route, ref.route)
        assert set(ref.route.tolist()) == {0, 1}
        assert np.nanmax(np.abs(got.keypoints[..., :2] - ref.keypoints[..., :2])) <= 1e-3

        b, _, _ = sanitize_boxes(boxes, image.shape[:2], scores)
        crops = CropWindows(b).crops_by_size(image, (SMALL, LARGE))
        inputs = []
        for name, hw in (("crops", SMALL), ("crops_384x288", LARGE)):
            t = grpcclient.InferInput(name, list(crops[hw].shape), "FP32")
            t.set_data_from_numpy(crops[hw])
            inputs.append(t)
        out = grpcclient.InferenceServerClient(server.grpc_url).infer("dynpose", inputs, client_timeout=120)
        score = _session(art, "router").run(["score"], {"input": crops[SMALL]})[0].reshape(-1)
        large = (score >= k1) & (score <= k2)
        np.testing.assert_array_equal(out.as_numpy("route"), large.astype(np.int8))
        for role, mask, hw in (("small", ~large, SMALL), ("large", large, LARGE)):
            sess = _session(art, role)
            names = [o.name for o in sess.get_outputs()]
            outs = dict(zip(names, sess.run(names, {"input": np.ascontiguousarray(crops[hw][mask])})))
            xy, ks, _ = decode_outputs(heads[role], outs)
            assert np.abs(out.as_numpy("keypoints")[mask] - xy).max() <= 1e-3, role
            np.testing.assert_allclose(out.as_numpy("keypoint_scores")[mask], ks, atol=1e-4)
    finally:
        server.stop()
