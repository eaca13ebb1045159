"""Each net gets crops at its own input size, read from the manifest (issue #29 item 1).

Real tiny ONNX nets (tools/device_check/tiny_artifacts.py, ``spot=True``): every keypoint's
heatmap is the crop's red channel pooled at stride 4, so each net's keypoints land on a red
spot drawn at a known image position. A small net at 256x192 and a large net at 384x288 run
through ``load_pipeline`` and ``python -m runtime.images``; both must put the keypoints back
on the spot. Before per-net sizes the 384x288 net was fed 256x192 crops and ONNX Runtime
refused them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.artifacts.manifest import ManifestError, load_manifest
from runtime.pose.pipeline import load_pipeline
from tools.device_check.tiny_artifacts import make_artifacts

REPO = Path(__file__).resolve().parents[1]
SMALL, LARGE = (256, 192), (384, 288)
# (x, y) image pixels, one per person, away from the box centre so a wrong window scale shows
SPOTS = [(150.0, 80.0), (455.0, 370.0)]
BOXES = [[120.0, 40.0, 120.0, 230.0], [380.0, 180.0, 100.0, 240.0]]  # COCO xywh around each spot


def _frame() -> np.ndarray:
    img = np.zeros((480, 640, 3), np.uint8)
    for x, y in SPOTS:
        cv2.circle(img, (int(x), int(y)), 5, (0, 0, 255), -1)  # BGR red
    return img


@pytest.fixture(scope="module")
def two_sizes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("two_sizes")
    make_artifacts(root, int8_router=False, input_hw={"small": SMALL, "large": LARGE}, spot=True)
    return root


def _cell_px(box: list[float], hw: tuple[int, int]) -> float:
    """1.5 heatmap cells in image pixels for this box's crop window: the decode's resolution plus
    the half cell between a pooled cell's centre and its corner (MMPose's alignment)."""
    return 1.5 * max(box[2], box[3] * hw[1] / hw[0]) * 1.25 / (hw[1] / 4)


@pytest.mark.parametrize("policy", ["small", "large", "dyn"])
def test_keypoints_land_on_the_spot_at_each_nets_size(two_sizes, policy):
    with load_pipeline(two_sizes, policy=policy) as pipe:
        assert pipe.input_hw == {"router": SMALL, "small": SMALL, "large": LARGE}
        assert pipe.decode_ctx["large"].input_hw == LARGE
        res = pipe(_frame(), BOXES)
    want = {"small": 0, "large": 1}.get(policy)
    if want is not None:
        assert (res.route == want).all()
    for i, (x, y) in enumerate(SPOTS):
        hw = LARGE if res.route[i] == 1 else SMALL
        err = np.abs(res.keypoints[i, :, :2] - [x, y]).max()
        assert err <= _cell_px(BOXES[i], hw), (policy, i, res.keypoints[i, 0])


def test_large_crops_are_made_only_for_the_rows_routed_to_it(two_sizes):
    with load_pipeline(two_sizes, policy="dyn") as pipe:
        made: list[tuple[tuple[int, int], int]] = []
        inner = pipe._make_crops

        def spy(hw, views, windows, rows, out=None):
            made.append((hw, len(windows.boxes) if rows is None else int(rows.sum())))
            return inner(hw, views, windows, rows, out)

        pipe._make_crops = spy
        res = pipe(_frame(), BOXES)
    n_large = int((res.route == 1).sum())
    assert made[0] == (SMALL, 2)  # router (and small net) crops: every box
    assert made[1:] == ([(LARGE, n_large)] if n_large else [])


def _image_and_dets(tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "000000000007.png"), _frame())
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"image_id": 7, "category_id": 1, "bbox": b, "score": 0.9} for b in BOXES]))
    return images, dets


def test_images_cli_maps_both_sizes_back(two_sizes, tmp_path):
    images, dets = _image_and_dets(tmp_path)
    for policy, hw in (("small", SMALL), ("large", LARGE)):
        out = tmp_path / policy
        r = subprocess.run(
            [sys.executable, "-m", "runtime.images", "--engines", str(two_sizes), "--images", str(images)]
            + ["--dets", str(dets), "--out", str(out), "--policy", policy],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr
        recs = json.loads((out / "results.json").read_text())
        assert len(recs) == 2
        for rec, (x, y), box in zip(recs, SPOTS, BOXES):
            kp = np.asarray(rec["keypoints"], np.float64).reshape(17, 3)
            assert np.abs(kp[:, :2] - [x, y]).max() <= _cell_px(box, hw), (policy, kp[0])


@pytest.mark.parametrize(
    "shape",
    [["N", 3, "H", "W"], ["N", 1, 256, 192], ["N", 3, 256], ["N", 3, 0, 192], "N,3,256,192"],
)
def test_an_unsupported_input_shape_is_one_line_naming_the_net_and_field(two_sizes, tmp_path, shape):
    bad = tmp_path / "bad"
    bad.mkdir()
    m = json.loads((two_sizes / "manifest.json").read_text())
    for f in ("router.onnx", "small.onnx", "large.onnx"):
        (bad / f).write_bytes((two_sizes / f).read_bytes())
    m["models"]["large"]["inputs"][0]["shape"] = shape
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError) as e:
        load_manifest(bad)
    msg = str(e.value)
    assert "\n" not in msg and "models.large.inputs[0].shape" in msg and "[N, 3, H, W]" in msg
    images, dets = _image_and_dets(tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "runtime.images", "--engines", str(bad), "--images", str(images)]
        + ["--dets", str(dets), "--out", str(tmp_path / "res")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1 and "models.large.inputs[0].shape" in err[0], r.stderr


def test_the_build_reads_each_nets_size(two_sizes, tmp_path):
    """TensorRT profiles, trtexec shapes, the cost timing and Triton configs take each net's own
    input size; the BLS model takes one crop tensor per size and says which feeds which net."""
    from build.costs import time_variants
    from build.triton_repo import RepoOptions, write_repo
    from build.trt.targets import TARGETS, engine_specs

    manifest = load_manifest(two_sizes)
    specs = {s.role: s for s in engine_specs(two_sizes, manifest, TARGETS["orin"])}
    assert specs["large"].input_chw == (3, *LARGE) and specs["small"].input_chw == (3, *SMALL)
    assert specs["large"].profile.shapes(specs["large"].input_chw)[-1] == (64, 3, *LARGE)
    entries, _ = time_variants(two_sizes, manifest, ("fp32",), batch=2, rounds=1, threads=1)
    assert set(entries["fp32"]["ms_per_crop"]) == {"router", "small", "large"}  # 384x288 ran at its size
    write_repo(two_sizes, tmp_path / "repo", RepoOptions(kind="python"))
    cfg = (tmp_path / "repo" / "large" / "config.pbtxt").read_text()
    assert "dims: [3, 384, 288]" in cfg, cfg
    bls = (tmp_path / "repo" / "dynpose" / "config.pbtxt").read_text()
    assert 'name: "crops"' in bls and "dims: [-1, 3, 256, 192]" in bls, bls
    assert 'name: "crops_384x288"' in bls and "dims: [-1, 3, 384, 288]" in bls, bls
    for role, name in (("router", "crops"), ("small", "crops"), ("large", "crops_384x288")):
        assert re.search(rf'key: "{role}_input"\s*value: {{\s*string_value: "{name}"', bls), (role, bls)
