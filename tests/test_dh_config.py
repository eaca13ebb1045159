"""``--config fixture-dyn-dh``: the double-heatmap large net as a build config.

Fast tests: the config's two weight files merge into the DH net (and a part that
repeats another's tensors is refused), the cached outer branch was trained on
the current fixture-l, and which calibration domain a manifest gets. Slow test:
the real build CLI, then images through runtime.PosePipeline in ONNX Runtime;
keypoints the presence head calls absent come from the outer map (checked
against the outer map decoded here from the same crops) and land outside the
crop window, and the fused-decode variant keeps ``outer_probmaps`` for the host.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from build.artifacts import build_network, load_weights
from build.checkpoint import CheckpointMismatch, load_strict, read_state_dict
from build.configs import get_config
from build.models.double_head import DoubleProbMapHead
from build.train.double import FIXTURE, OUTER_FIXTURE, OUTER_PREFIX
from calib.data import calibration_domain
from runtime.artifacts.manifest import sha256_file


def test_dh_config_merges_fixture_l_and_the_outer_branch():
    cfg = get_config("fixture-dyn-dh")
    net = build_network(cfg, "large")
    assert isinstance(net.head, DoubleProbMapHead)
    info = load_weights(net, cfg, "large", None, seed=0)
    assert info["bundled"] and [Path(p["path"]).name for p in info["parts"]] == [
        "large.pth",
        "large-dh-outer.pth",
    ]
    base, outer = read_state_dict(FIXTURE), read_state_dict(OUTER_FIXTURE)
    assert outer and all(k.startswith(OUTER_PREFIX) for k in outer)
    got = net.state_dict()
    assert set(got) == set(base) | set(outer)
    for k in (next(iter(base)), next(iter(outer))):
        torch.testing.assert_close(got[k], (base | outer)[k], rtol=0, atol=0)
    assert net.output_names[-1] == "outer_probmaps"


def test_overlapping_parts_are_one_clear_error():
    net = build_network(get_config("fixture-dyn-dh"), "large")
    with pytest.raises(CheckpointMismatch, match="parts overlap.*each part must hold its own tensors"):
        load_strict(net, [FIXTURE, FIXTURE], "large")


def test_cached_outer_branch_was_trained_on_the_current_fixture_l():
    meta = torch.load(OUTER_FIXTURE, map_location="cpu", weights_only=True)["meta"]
    assert meta["base_sha256"] == sha256_file(FIXTURE), (
        "fixture-l changed: retrain the outer branch (python -m build.train.double --fixture --retrain)"
    )
    assert meta["train"]["seconds"] < 25 * 60


@pytest.mark.parametrize(
    "domain, weights, want",
    [
        ("synthetic", "fixture", "synthetic"),
        ("synthetic", "checkpoint", "photos"),
        ("photos", "fixture", "photos"),
        (None, "fixture", "photos"),
    ],
)
def test_calibration_domain(domain, weights, want):
    pipe = {} if domain is None else {"calib_domain": domain}
    assert calibration_domain({"pipeline": pipe, "weights": weights}) == want


def _cut_scenes(n: int, seed: int):
    """Synthetic scenes cut through one person each (CropCOCO style): (sub-image, clipped box xywh)."""
    from build.synth import load_photos, make_scene
    from calib.presence import cut_person

    photos, rng, out = load_photos(), np.random.default_rng(seed), []
    for i in range(n):
        sc = make_scene(np.random.default_rng([seed, i]), photos)
        for p in sc.people:
            cut = cut_person(sc.image, np.asarray(p.bbox, np.float64), rng)
            if cut is not None:
                out.append((cut[0], cut[1]))
    return out


@pytest.mark.slow
def test_dh_build_runs_end_to_end_with_outer_keypoints(tmp_path, coco_mini):
    from bench.data import build_artifacts
    from calib.report import run_onnx
    from runtime.heads.base import scaled_presence
    from runtime.heads.decode import decode_probmaps
    from runtime.heads.double_decode import merge_double
    from runtime.heads.grid import heatmap_to_image
    from runtime.pose.pipeline import PosePipeline
    from runtime.pose.preprocess import boxes_to_center_scale, make_crops

    root = build_artifacts(
        tmp_path, "fixture-dyn-dh", extra=("--calib-data", str(coco_mini), "--fuse-decode")
    )
    m = json.loads((root / "manifest.json").read_text())
    large = m["models"]["large"]
    assert large["head"] == "probmap" and "outer_probmaps" in [o["name"] for o in large["outputs"]]
    assert "outer_probmaps" in large["variants"]["plugin"]["outputs"]  # the host merges it after the plugin
    assert m["presence"]["domain"] == "synthetic" and m["credible"]["fitted"]
    temp, thr = m["presence"]["temperature"], m["presence"]["threshold"]
    pipe = PosePipeline(root, policy="large")
    n_out, checked = 0, 0
    for img, box in _cut_scenes(12, seed=77):
        res = pipe(img, box)
        c, s = boxes_to_center_scale(box)
        outs = run_onnx(root / large["onnx"], make_crops(img, c, s))
        coords, scores = decode_probmaps(outs["probmaps"])
        pres = scaled_presence(outs, 1, temp)
        ref, _ = merge_double(coords, scores, outs["outer_probmaps"], pres, thr)
        ref_img = heatmap_to_image(ref, c, s)[0]
        np.testing.assert_allclose(res.keypoints[0, :, :2], ref_img, atol=0.05)
        np.testing.assert_allclose(res.presence[0], pres[0], atol=1e-5)
        absent = res.presence[0] < thr
        x0, y0 = c[0] - s[0] / 2
        x1, y1 = c[0] + s[0] / 2
        kp = res.keypoints[0, absent, :2]
        n_out += int(((kp[:, 0] < x0) | (kp[:, 0] > x1) | (kp[:, 1] < y0) | (kp[:, 1] > y1)).sum())
        checked += 1
    assert checked >= 10
    assert n_out > 0, "no keypoint was placed outside the crop window: the outer map is not used"
    _plan_has_the_dh_engine(root, m)
    _sweep_composes_what_the_pipeline_returns(root, coco_mini)


def _sweep_composes_what_the_pipeline_returns(root: Path, coco_mini: Path) -> None:
    """The sweep (measure.net_outputs) decodes the double map as the pipeline does: one assembler, the manifest's
    presence threshold (the sweep once merged at 0.5 whatever the manifest said)."""
    from measure.net_outputs import compose, run_nets
    from measure.workload import load_frames
    from runtime.pose.pipeline import PipelineOptions, PosePipeline

    frames = [f for f in load_frames(coco_mini) if f.image_id in (785, 40083)]
    with PosePipeline(root, PipelineOptions(policy="large", backend="ort")) as pipe:
        cs, nets = run_nets(pipe, frames)
        got = compose(frames, cs, nets, np.ones(len(cs), bool), with_router=False)
        for g, f in zip(got, frames):
            np.testing.assert_array_equal(g.keypoints, pipe(f.image, f.boxes, f.scores).keypoints)


def _plan_has_the_dh_engine(root: Path, manifest: dict) -> None:
    """Without TensorRT the build writes trtexec lines for every net, the DH one included."""
    import argparse
    import sys

    from build.trt import add_trt_arguments, build_or_plan
    from calib.stage import add_calib_arguments

    p = argparse.ArgumentParser()
    add_calib_arguments(p)
    add_trt_arguments(p)
    saved = sys.modules.get("tensorrt")
    sys.modules["tensorrt"] = None  # `import tensorrt` raises ImportError, as on this machine
    try:
        assert build_or_plan(root, manifest, p.parse_args(["--target", "orin", "--precision", "fp32"])) == 0
    finally:
        if saved is None:
            del sys.modules["tensorrt"]
        else:
            sys.modules["tensorrt"] = saved
    plan = (root / "build_plan.sh").read_text()
    assert "large" in manifest["trt_plan"]["engines"]
    assert "--onnx=large.onnx" in plan and "--saveEngine=large.engine" in plan
